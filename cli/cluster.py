"""`tweezer up`: the whole cluster on one machine, in the foreground.

Starts a redis-server of its own (unless given --redis-url), creates the default user, project
and token on first start, then supervises the API, the scheduler and one worker pool per QPU:
a child that dies is restarted with backoff; Ctrl-C / SIGTERM stops everything, workers first
(they hand back unfinished messages), Redis last. Writes `<data-dir>/cluster.json` so scripts
and the SDK can connect.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.redis_server import RedisServer
from core.accounts import Accounts
from core.device_types import qpu_names
from core.redis_client import connect
from core.roles import Role
from core.settings import Settings

DEFAULT_USER = "admin"
DEFAULT_PROJECT = "default"
#: Restart delays for a child that keeps dying: 1, 2, 4 … capped at 30 s.
MAX_BACKOFF_S = 30.0


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    failures: int = 0
    restart_at: float = 0.0
    started_at: float = field(default=0.0)


def bootstrap(
    settings: Settings, data_dir: Path, base_url: str, core_url: str, account_url: str
) -> dict[str, Any]:
    """Creates the admin user (with a password), a default project and an API token on first
    start; reuses them on later starts. A local dev cluster's credentials, in cluster.json."""
    accounts = Accounts(connect(settings), settings.namespace)
    info_path = data_dir / "cluster.json"
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
    info = {
        "core_url": core_url,
        "account_url": account_url,
        "token_url": base_url + "/oauth/token",
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
    }
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    info_path.chmod(0o600)  # it holds a token
    return info


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
    ) -> None:
        self.settings = settings
        #: Where each child's output goes (one file each); None: this terminal.
        self.log_dir = log_dir
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.redis_server = redis_server
        self.stop = threading.Event()
        tweezer = [sys.executable, "-m", "cli.main"]
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
        try:
            self.start()
            if not self.stop.is_set():
                self._print_ready()
            while not self.stop.wait(0.5):
                self.supervise()
        finally:
            self.shutdown()

    def start(self) -> Cluster:
        """Starts every child and waits for the API (without supervising: see run)."""
        for child in self.children:
            self._start(child)
        self._wait_for_api()
        return self

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.settings.to_env()}

    def _start(self, child: Child) -> None:
        output = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = open(self.log_dir / f"{child.name.replace(' ', '-')}.log", "ab")  # noqa: SIM115
        child.process = subprocess.Popen(
            child.argv, env=self._env(), stdout=output, stderr=subprocess.STDOUT if output else None
        )
        if output is not None:
            output.close()  # the child holds its own descriptor
        child.started_at = time.monotonic()

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

    def _wait_for_api(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base_url + "/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        if not self.stop.is_set():
            raise RuntimeError(f"the API did not answer on {self.base_url} within {timeout_s} s")

    def _print_ready(self) -> None:
        info = json.loads((self.data_dir / "cluster.json").read_text())
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

Try `tweezer demo --data-dir {self.data_dir}`. Ctrl-C stops the cluster.
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

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
