"""`tweezer up`: the whole cluster on one machine, in the foreground.

Starts a redis-server of its own (unless given --redis-url), creates the default user, project
and token on first start, then supervises the API, the scheduler and one worker pool per QPU:
a child that dies is restarted with backoff; Ctrl-C / SIGTERM stops everything, workers first
(they hand back unfinished messages), Redis last. Once the API answers, a scheduler passed and
every QPU's worker pool announced itself, it writes `<data-dir>/cluster.json` (so a script that
waits for the file can connect at once) and prints its banner, the last thing at start-up:
each child's output goes to `<data-dir>/logs/<child>.log` (rotated), and to the terminal too
with --verbose.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import IO, Any

from core.accounts import Accounts
from core.device_types import qpu_names
from core.liveness import Liveness
from core.redis_client import connect
from core.roles import Role
from core.sessions import PASQAL_LOCAL_PREFIX
from core.settings import Settings
from core.timefmt import now_us
from launch.data_dir import INFO_FILE, write_cluster_info
from launch.redis_server import RedisServer
from launch.supervision import DataDirLock, die_with_parent

DEFAULT_USER = "admin"
DEFAULT_PROJECT = "default"
#: Restart delays for a child that keeps dying: 1, 2, 4 … capped at 30 s.
MAX_BACKOFF_S = 30.0


@dataclass
class Child:
    name: str
    argv: list[str]
    #: Environment of its own on top of the cluster's (a worker on another test host reaches
    #: Redis at another address).
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    failures: int = 0
    restart_at: float = 0.0
    started_at: float = field(default=0.0)


def bootstrap(
    settings: Settings, data_dir: Path, base_url: str, core_url: str, account_url: str
) -> dict[str, Any]:
    """Creates the admin user (with a password), a default project and an API token on first
    start; reuses them on later starts. A local dev cluster's credentials: what cluster.json
    will say once the cluster serves (Cluster.run)."""
    accounts = Accounts(connect(settings), settings.namespace)
    info_path = data_dir / INFO_FILE
    previous = json.loads(info_path.read_text()) if info_path.exists() else {}
    token, project_id = previous.get("token"), previous.get("project_id")
    password = previous.get("admin_password")
    caller = accounts.authenticate(token) if token else None
    if caller is None or project_id not in caller.project_ids:
        password = secrets.token_urlsafe(16)
        if accounts.get_user(DEFAULT_USER) is None:
            accounts.create_user(DEFAULT_USER, password, admin=True)
        else:  # cluster.json was lost: the password it records must be the real one
            accounts.set_password(DEFAULT_USER, password)
        project_id = accounts.create_project(DEFAULT_PROJECT).id
        accounts.add_member(project_id, DEFAULT_USER, Role.ADMIN)
        token = accounts.issue_token(DEFAULT_USER).token
    return {
        "api_url": base_url,
        "core_url": core_url,
        "account_url": account_url,
        "token_url": base_url + "/oauth/token",
        # qrmi's on-premises path: <RESOURCE>_QRMI_WARDEN_URL is this, then /<device type>.
        "pasqal_local_url": base_url + PASQAL_LOCAL_PREFIX,
        "token": token,
        "project_id": project_id,
        "user_id": DEFAULT_USER,
        "admin_username": DEFAULT_USER,
        "admin_password": password,
        "redis_url": settings.redis_url,
        # What admin commands with --data-dir need to know of the cluster they talk to.
        "namespace": settings.namespace,
        "qpus": settings.qpus,
        "policy": settings.policy,
        # What webhook receivers verify signatures with (README, "Webhooks").
        "webhook_secret": settings.webhook_secret,
    }


#: Files of a run's processes only, under the data dir: emptied at each start.
RUN_DIR = "run"


def clean_run_dir(data_dir: Path) -> Path:
    """`<data-dir>/run/`, emptied, with `metrics/` in it (the API's per-process metrics
    files). A run killed before it could clean up leaves files there; the next `tweezer up`,
    holding the data dir's lock, removes them and says so."""
    run = data_dir / RUN_DIR
    if run.exists():
        leftovers = sum(1 for path in run.rglob("*") if path.is_file())
        shutil.rmtree(run)
        if leftovers:
            print(
                f"tweezer: removed {leftovers} file(s) a previous run left in {run}",
                file=sys.stderr,
            )
    (run / "metrics").mkdir(mode=0o700, parents=True)
    return run


def make_private(data_dir: Path) -> None:
    """Creates the data dir 0700 and takes group and other bits off whatever it already holds
    (a data dir from an older version, whose AOF and logs were world-readable)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in (data_dir, *data_dir.rglob("*")):
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & 0o700)


def secret(data_dir: Path, name: str) -> str:
    """A secret kept in the data dir (`results` and `auth` signing keys, the `redis` password),
    0600, so links, access tokens and the Redis password outlive a restart."""
    path = data_dir / f"{name}.key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


class Cluster:
    def __init__(
        self,
        settings: Settings,
        data_dir: Path,
        host: str,
        port: int,
        redis_server: RedisServer | None,
        log_dir: Path | None = None,
        info: dict[str, Any] | None = None,
        verbose: bool = False,
        lock: DataDirLock | None = None,
    ) -> None:
        self.settings = settings
        #: The data dir's lock: every child inherits it, so the data dir stays taken until the
        #: last of them is gone (launch/supervision.py).
        self.lock = lock
        #: Where each child's output goes (one rotated file each); None: this terminal.
        self.log_dir = log_dir
        #: Also copy children's output to this terminal (prefixed by who said it).
        self.verbose = verbose
        self.data_dir = data_dir
        #: What cluster.json says, written once the cluster serves (None: not written).
        self.info = info
        self.host = host
        self.port = port
        self.redis_server = redis_server
        self.stop = threading.Event()
        # -P: `python -m` would put the working directory first on sys.path, so a `cli/main.py`
        # in the directory `tweezer up` was started from would run with the cluster's secrets.
        tweezer = [sys.executable, "-P", "-m", "cli.main"]
        self.children = [
            Child("api", [*tweezer, "api", "--host", host, "--port", str(port)]),
            Child("scheduler", [*tweezer, "scheduler"]),
            *(
                Child(f"worker {qpu}", [*tweezer, "worker", "--qpu", qpu])
                for qpu in qpu_names(settings.qpus)
            ),
        ]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def run(self) -> None:
        """Starts everything and supervises it until SIGINT/SIGTERM."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop.set())
        if self.info is not None:  # a previous run's: scripts wait for the new one
            (self.data_dir / INFO_FILE).unlink(missing_ok=True)
        try:
            self.start()
            if not self.stop.is_set():
                if self.info is not None:
                    write_cluster_info(self.data_dir, self.info)
                self._print_ready()
            while not self.stop.wait(0.5):
                self.supervise()
        finally:
            self.shutdown()

    def start(self, timeout_s: float = 60.0) -> Cluster:
        """Starts every child and waits until the cluster serves: the API answers, a scheduler
        passed and every QPU's worker pool announced itself (without supervising: see run)."""
        started = now_us()
        for child in self.children:
            self._start(child)
        deadline = time.monotonic() + timeout_s
        self._wait_for_api(deadline)
        self._wait_for_pools(started, deadline)
        return self

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.settings.to_env()}

    def _start(self, child: Child) -> None:
        piped = self.log_dir is not None
        child.process = subprocess.Popen(
            child.argv,
            env={**self._env(), **child.env},
            stdout=subprocess.PIPE if piped else None,
            stderr=subprocess.STDOUT if piped else None,
            # However this process dies, the child dies with it (launch/supervision.py).
            preexec_fn=die_with_parent(),
            pass_fds=() if self.lock is None or self.lock.fd is None else (self.lock.fd,),
        )
        child.started_at = time.monotonic()
        if piped:
            assert self.log_dir is not None and child.process.stdout is not None
            threading.Thread(
                target=pump_output,
                args=(child.process.stdout, self.log_dir, child.name, self.verbose),
                name=f"tweezer-log-{child.name}",
                daemon=True,
            ).start()

    def supervise(self) -> None:
        """One supervision step: restarts children that died, with backoff."""
        now = time.monotonic()
        for child in self.children:
            process = child.process
            if process is not None and process.poll() is None:
                if now - child.started_at > 60:
                    child.failures = 0  # it ran a minute: the next death starts afresh
                continue
            if process is not None:
                child.failures += 1
                delay = min(2.0 ** (child.failures - 1), MAX_BACKOFF_S)
                print(
                    f"tweezer: {child.name} exited ({process.returncode}); "
                    f"restarting in {delay:g} s",
                    file=sys.stderr,
                    flush=True,
                )
                child.process = None
                child.restart_at = now + delay
            elif now >= child.restart_at:
                self._start(child)

    def _wait_for_api(self, deadline: float) -> None:
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base_url + "/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        if not self.stop.is_set():
            raise RuntimeError(f"the API did not answer on {self.base_url} in time")

    def _wait_for_pools(self, since: int, deadline: float) -> None:
        """Until a scheduler passed and every QPU's pool announced itself since `since` (ready
        to consume: workers announce once Celery says so)."""
        liveness = Liveness(connect(self.settings), self.settings.namespace)
        qpus = qpu_names(self.settings.qpus)
        while not self.stop.is_set():
            readiness = liveness.readiness(qpus, now_us(), since=since, ours=self._ours())
            if readiness.ready:
                return
            if time.monotonic() >= deadline:
                raise RuntimeError("not ready in time: " + "; ".join(readiness.missing()))
            time.sleep(0.2)

    def _ours(self) -> Callable[[str], bool]:
        """Whether a process named host:pid is one of this cluster's children: readiness
        counts only them (never a leftover of another run announcing itself)."""
        host = socket.gethostname()
        names = {f"{host}:{c.process.pid}" for c in self.children if c.process is not None}
        return names.__contains__

    def _print_ready(self) -> None:
        info = self.info
        if info is None:
            return
        print(
            f"""
Tweezer is up: API {self.base_url}, QPUs {", ".join(qpu_names(self.settings.qpus))}.
Connection details: {self.data_dir / "cluster.json"}

    from pasqal_cloud.authentication import TokenProvider
    from pasqal_cloud.endpoints import Endpoints
    from pasqal_cloud.sdk import SDK

    class Token(TokenProvider):
        def get_token(self): return "{info["token"]}"

    sdk = SDK(project_id="{info["project_id"]}", token_provider=Token(),
              endpoints=Endpoints(core="{info["core_url"]}", account="{info["account_url"]}"))

Try `tweezer demo --data-dir {self.data_dir}` and `tweezer status --data-dir {self.data_dir}`.
Logs: {self.log_dir}/ (--verbose shows them here). Ctrl-C stops the cluster.
""",
            flush=True,
        )

    def terminate(self) -> None:
        """Asks every child to stop (SIGTERM), workers first: a warm shutdown hands unfinished
        messages back. Does not wait (see shutdown)."""
        for child in reversed(self.children):
            if child.process is not None and child.process.poll() is None:
                child.process.terminate()

    def shutdown(self) -> None:
        self.terminate()
        deadline = time.monotonic() + 30
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        if self.redis_server is not None:
            self.redis_server.stop()
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


#: Each child's log file is rotated at this size, keeping this many older files.
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5


def pump_output(
    stream: IO[bytes], log_dir: Path, name: str, echo: bool, max_bytes: int = LOG_MAX_BYTES
) -> None:
    """Copies a child's output, line by line, to its log file, rotated past `max_bytes` (and
    to stderr when `echo`), until the child closes it (it exited)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(
        log_dir / f"{name.replace(' ', '-')}.log", maxBytes=max_bytes, backupCount=LOG_BACKUPS
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            handler.emit(logging.makeLogRecord({"msg": line}))
            if echo:
                print(f"[{name}] {line}", file=sys.stderr, flush=True)
    finally:
        handler.close()
        stream.close()
