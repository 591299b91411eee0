"""`tweezer chaos`: a soak that throws faults at a cluster under load, then proves from the whole
history that nothing was lost (scheduler/checker.py).

It starts a cluster of its own (redis-server with its AOF, the API, two schedulers, three QPUs
of synthetic devices: EMU_FREE-0 here, EMU_FREE-1 and FRESNEL-0 on two other hosts made of
network namespaces where the machine allows it), a webhook receiver, and client threads that
submit closed and open batches, add jobs, close and cancel, every POST with an Idempotency-Key
and retried until answered (some sent twice on purpose). Meanwhile the fault schedule
(scheduler/chaos.py, from `--seed`) kills and pauses workers, pool processes, schedulers and
API processes, kills Redis and starts it again from its AOF, cuts the worker hosts' links and
flips device statuses. Then the faults are undone, the clients finish, the cluster drains,
and the checker reads every acknowledged request, every record and every delivery.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import redis
import requests

from cli.cluster import Child, Cluster
from cli.load import sequence_for
from cli.netns import Hosts, can_make_namespaces, free_net
from cli.redis_server import RedisServer, free_port
from cli.supervision import DataDirLock
from core.accounts import Accounts
from core.device_status import DeviceStatuses
from core.errors import ConfigurationError
from core.hints import QPU_SECONDS_VARIABLE
from core.keys import Keys
from core.settings import Settings
from core.status import TERMINAL_BATCH_STATUSES, DeviceStatus
from core.store import Store
from core.timefmt import now_us
from core.webhooks import BATCH_HEADER
from scheduler.chaos import Fault, FaultKind, parse_kinds, schedule
from scheduler.checker import Ack, Verdict, check, observe

#: QPU -> the namespace host its worker pool runs on (when namespaces can be made).
REMOTE_QPUS = {"EMU_FREE-1": "b", "FRESNEL-0": "c"}
#: How long the cluster may take to finish everything once the faults stop.
DRAIN_S = 240.0
TERMINAL = {s.value for s in TERMINAL_BATCH_STATUSES}


def add_chaos_command(commands: argparse._SubParsersAction) -> None:
    chaos = commands.add_parser(
        "chaos",
        help="soak a cluster of its own with faults under load, then check nothing was lost",
    )
    chaos.add_argument("--duration", type=float, default=90.0, metavar="S",
                       help="seconds of load and faults (default 90)")  # fmt: skip
    chaos.add_argument("--seed", type=int, default=0, help="seed of the faults and the load")
    chaos.add_argument("--faults", default="all", metavar="KINDS",
                       help="fault kinds, comma-separated, or all: "
                       + ", ".join(k.value for k in FaultKind))  # fmt: skip
    chaos.add_argument("--every", type=float, default=3.0, metavar="S",
                       help="mean seconds between faults (default 3)")  # fmt: skip
    chaos.add_argument("--clients", type=int, default=6, help="client threads (default 6)")
    chaos.add_argument("--out", type=Path, default=None,
                       help="where the report, faults, acknowledgements and logs go "
                       "(default chaos-<seed>/)")  # fmt: skip
    chaos.add_argument(
        "--no-hosts",
        action="store_true",
        help="run every process here (no network namespaces, no link cuts)",
    )


def run_chaos(args: argparse.Namespace) -> int:
    if args.duration <= 0 or args.every <= 0 or not 1 <= args.clients <= 64:
        raise ConfigurationError("--duration and --every must be > 0, --clients 1 to 64")
    try:
        kinds = parse_kinds(args.faults)
    except ValueError as exc:
        raise ConfigurationError(f"--faults: {exc}") from None
    out = (args.out or Path(f"chaos-{args.seed}")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    why_local = "--no-hosts" if args.no_hosts else can_make_namespaces()
    if why_local and FaultKind.LINK_CUT in kinds:
        kinds = tuple(k for k in kinds if k is not FaultKind.LINK_CUT)
        print(f"tweezer chaos: no link cuts: {why_local}", flush=True)
    faults = schedule(args.seed, args.duration, kinds, args.every)
    (out / "faults.jsonl").write_text("".join(json.dumps(f.to_json()) + "\n" for f in faults))
    print(
        f"tweezer chaos: seed {args.seed}, {args.duration:g} s, {len(faults)} faults planned "
        f"({', '.join(f'{k}: {n}' for k, n in Counter(f.kind.value for f in faults).items())}),"
        f" {args.clients} clients -> {out}/",
        flush=True,
    )
    with Soak(out, args.seed, hosts=not why_local).running() as soak:
        verdict = soak.run(faults, args.duration, args.clients)
    for line in verdict.lines():
        print(line)
    return 0 if verdict.ok else 1


@dataclass
class Receiver:
    """The webhook receiver: counts deliveries per batch."""

    server: ThreadingHTTPServer
    deliveries: Counter[str] = field(default_factory=Counter)

    @classmethod
    def start(cls) -> Receiver:
        counts: Counter[str] = Counter()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                counts[self.headers.get(BATCH_HEADER, "")] += 1
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return cls(server, counts)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


class Soak:
    """One soak: its cluster, clients, faults and what the clients were told."""

    def __init__(self, out: Path, seed: int, hosts: bool) -> None:
        self.out, self.seed = out, seed
        self.hosts = Hosts(f"c{os.getpid() % 10000}", free_net()) if hosts else None
        self.acks: list[Ack] = []
        self.acks_lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.stop_load = threading.Event()
        self.paused: set[int] = set()
        #: What undoes each lasting fault (run again at the end: undoing twice is harmless).
        self.undos: list[Callable[[], None]] = []
        #: When the progress line was last shown (seconds into the run).
        self.shown_at = -1e9
        #: When the main thread starts Redis again after a REDIS_KILL (time.monotonic).
        self.redis_restart_at: float | None = None

    @contextmanager
    def running(self) -> Iterator[Soak]:
        root = self.out / "cluster"
        root.mkdir(parents=True, exist_ok=True)
        try:
            if self.hosts is not None:
                self.hosts.create()
            # The worker hosts reach Redis at this (root) namespace's end of the bridge.
            bridge = None if self.hosts is None else self.hosts.address("client")
            bind = ("127.0.0.1",) if bridge is None else ("127.0.0.1", bridge)
            # Supervised like `tweezer up`'s: it dies with this process. Every process is
            # started (and Redis restarted) from the main thread, whose end is the process's.
            self.redis_server = RedisServer(
                root / "redis", password=secrets.token_hex(16), bind=bind,
                supervised_by=DataDirLock(root).acquire(),
            ).start()  # fmt: skip
            self.receiver = Receiver.start()
            self.settings = _settings(self.redis_server.url)
            self.cluster = Cluster(
                self.settings, root, "127.0.0.1", free_port(), self.redis_server,
                log_dir=root / "logs",
            )  # fmt: skip
            scheduler = self.cluster.child("scheduler").argv
            self.cluster.children.append(Child("scheduler 2", scheduler))
            if self.hosts is not None:
                assert bridge is not None
                remote_url = self.redis_server.url.replace("127.0.0.1", bridge)
                for qpu, host in REMOTE_QPUS.items():
                    child = self.cluster.child(f"worker {qpu}")
                    child.argv = self.hosts.exec_argv(host, child.argv)
                    child.env = {"TWEEZER_REDIS_URL": remote_url}
            self.cluster.start(timeout_s=120)
            self.client = redis.Redis.from_url(self.redis_server.url, decode_responses=True)
            yield self
        finally:
            self._undo_all()
            if hasattr(self, "cluster"):
                self.cluster.shutdown()
            elif hasattr(self, "redis_server"):
                self.redis_server.stop()
            if hasattr(self, "receiver"):
                self.receiver.server.shutdown()
            if self.hosts is not None:
                self.hosts.destroy()

    def _tend(self) -> None:
        """The main thread's round: restart dead children, and Redis when its outage ends."""
        self.cluster.supervise()
        due = self.redis_restart_at
        if due is not None and time.monotonic() >= due:
            self.redis_restart_at = None
            self.redis_server.start(timeout_s=60)

    # -- the run ------------------------------------------------------------------------------

    def run(self, faults: list[Fault], duration_s: float, clients: int) -> Verdict:
        accounts = self._accounts(clients)
        started = time.monotonic()
        threads = [
            threading.Thread(target=self._client, args=(i, account), daemon=True)
            for i, account in enumerate(accounts)
        ]
        for thread in threads:
            thread.start()
        injector = threading.Thread(target=self._inject, args=(faults, started), daemon=True)
        injector.start()
        while time.monotonic() - started < duration_s or injector.is_alive():
            self._tend()
            self._progress(started, duration_s)
            time.sleep(0.2)
        self._undo_all()
        self.stop_load.set()
        print(f"\ntweezer chaos: faults stopped ({sum(self.injected.values())} injected); "
              "clients finishing, cluster draining", flush=True)  # fmt: skip
        deadline = time.monotonic() + DRAIN_S
        for thread in threads:
            while thread.is_alive() and time.monotonic() < deadline:
                self._tend()
                thread.join(0.5)
        self._drain(deadline)
        return self._verdict(accounts, time.monotonic() - started)

    def _verdict(self, accounts: list[_Account], elapsed_s: float) -> Verdict:
        with self.acks_lock:
            acks = list(self.acks)
        seen = observe(
            self.client, self.settings.namespace, [a.project_id for a in accounts],
            dict(self.receiver.deliveries),
        )  # fmt: skip
        verdict = check(acks, seen, self.settings.max_attempts)
        jobs = sum(len(js) for js in seen.jobs.values())
        report = {
            "seed": self.seed,
            "elapsed_s": round(elapsed_s, 1),
            "faults": dict(self.injected),
            "faults_total": sum(self.injected.values()),
            "batches": len(seen.batches),
            "jobs": jobs,
            "acknowledged_requests": len(acks),
            "refused_requests": dict(self.refusals),
            **verdict.to_json(),
        }
        (self.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (self.out / "acks.jsonl").write_text("".join(a.to_json() + "\n" for a in acks))
        print(
            f"tweezer chaos: {report['faults_total']} faults, {len(seen.batches)} batches, "
            f"{jobs} jobs, {len(acks)} acknowledged requests in {elapsed_s:.0f} s"
        )
        if self.refusals:
            print("refused requests: " + ", ".join(f"{k}: {n}" for k, n in self.refusals.items()))
        return verdict

    def _progress(self, started: float, duration_s: float) -> None:
        """One line, redrawn on a terminal; a line every 10 s into a file or a pipe."""
        elapsed = time.monotonic() - started
        tty = sys.stdout.isatty()
        if not tty and elapsed - self.shown_at < 10:
            return
        self.shown_at = elapsed
        with self.acks_lock:
            acks = len(self.acks)
        print(
            f"{chr(13) if tty else ''}{elapsed:6.0f}/{duration_s:.0f} s  faults "
            f"{sum(self.injected.values()):4}  acknowledged requests {acks:6}",
            end="" if tty else "\n", flush=True,
        )  # fmt: skip

    def _drain(self, deadline: float) -> None:
        """Until every batch has ended and every webhook is delivered (or the deadline: then
        it says what is still going on, and the checker reports it)."""
        store, keys = Store(self.client, self.settings.namespace), Keys(self.settings.namespace)
        unfinished: list[str] = []
        owed = 0
        while time.monotonic() < deadline:
            self._tend()
            with suppress(redis.exceptions.RedisError):
                with self.acks_lock:
                    ids = list({a.batch_id for a in self.acks})
                unfinished = [
                    f"{b.id} {b.status.value}{' open' if b.open else ''}"
                    for b in store.get_batches(ids)
                    if b.status not in TERMINAL_BATCH_STATUSES
                ]
                owed = self.client.zcard(keys.webhooks())
                if not unfinished and not owed:
                    return
            time.sleep(0.5)
        print(f"tweezer chaos: unfinished after the drain: {len(unfinished)} batches "
              f"({', '.join(unfinished[:5])}), {owed} webhook deliveries", flush=True)  # fmt: skip

    # -- clients ------------------------------------------------------------------------------

    def _accounts(self, clients: int) -> list[_Account]:
        accounts = Accounts(self.client, self.settings.namespace)
        made = []
        projects = [accounts.create_project(f"chaos-{p}").id for p in range(min(3, clients))]
        for i in range(clients):
            user = accounts.create_user(f"chaos-user-{i}")
            project = projects[i % len(projects)]
            accounts.add_member(project, user)
            made.append(_Account(project, accounts.issue_token(user).token))
        return made

    def _ack(self, ack: Ack) -> None:
        with self.acks_lock:
            self.acks.append(ack)

    def _client(self, index: int, account: _Account) -> None:
        rng = random.Random(f"{self.seed}:client:{index}")
        http = _Http(self.cluster.base_url + "/core-fast", account.token, self.refusals)
        sequences = {t: sequence_for(t, 2, 100, self.settings) for t in ("EMU_FREE", "FRESNEL")}
        while not self.stop_load.is_set():
            device_type = rng.choice(("EMU_FREE", "EMU_FREE", "FRESNEL"))
            opened = rng.random() < 0.25
            webhook = rng.random() < 0.3
            jobs = _jobs(rng, rng.randint(1, 6))
            key = f"{index}-{secrets.token_hex(8)}"
            body = {
                "sequence_builder": sequences[device_type], "jobs": jobs,
                "device_type": device_type, "open": opened, "project_id": account.project_id,
                "webhook": self.receiver.url if webhook else None,
            }  # fmt: skip
            reply = http.until_answered("POST", "/api/v1/batches", body, key)
            if reply is None:
                continue  # refused (a 4xx): nothing was created
            batch_id = reply["id"]
            runs = tuple(j["runs"] for j in jobs)
            self._ack(Ack("create", batch_id, key, runs, opened, webhook))
            if rng.random() < 0.1:  # the same request again, as a client whose reply was lost
                again = http.until_answered("POST", "/api/v1/batches", body, key)
                if again is not None:
                    self._ack(Ack("create", again["id"], key, runs, opened, webhook))
            if opened:
                self._open_rounds(rng, http, batch_id, index)
            if rng.random() < 0.15:
                time.sleep(rng.uniform(0, 1.5))
                if http.until_answered("PATCH", f"/api/v2/batches/{batch_id}/cancel") is not None:
                    self._ack(Ack("cancel", batch_id))
            # As a user with `wait=True`: the next batch once this one ended (what the
            # cluster can do, not an ever longer queue, sets the pace).
            while not self.stop_load.is_set():
                state = http.until_answered("GET", f"/api/v2/batches/{batch_id}")
                if state is None or state["status"] in TERMINAL:
                    break
                time.sleep(0.3)

    def _open_rounds(self, rng: random.Random, http: _Http, batch_id: str, index: int) -> None:
        for _ in range(rng.randint(1, 3)):
            time.sleep(rng.uniform(0.05, 1.0))
            jobs = _jobs(rng, rng.randint(1, 3))
            key = f"{index}-{secrets.token_hex(8)}"
            path = f"/api/v2/batches/{batch_id}/jobs"
            if http.until_answered("POST", path, jobs, key) is None:
                return  # closed meanwhile (timed out): nothing was added
            self._ack(Ack("add", batch_id, key, tuple(j["runs"] for j in jobs)))
        if http.until_answered("PATCH", f"/api/v2/batches/{batch_id}/complete") is not None:
            self._ack(Ack("close", batch_id))

    # -- faults -------------------------------------------------------------------------------

    def _inject(self, faults: list[Fault], started: float) -> None:
        log = (self.out / "injected.log").open("w")
        for fault in faults:
            wait = fault.at_s - (time.monotonic() - started)
            if wait > 0:
                time.sleep(wait)
            try:
                what = self._strike(fault)
            except Exception as exc:  # a target gone meanwhile: noted, the soak goes on
                what = f"not injected: {type(exc).__name__}: {exc}"
            else:
                self.injected[fault.kind.value] += 1
            log.write(f"{fault.describe()}  {what}\n")
            log.flush()
        log.close()

    def _strike(self, fault: Fault) -> str:
        kind = fault.kind
        if kind in (FaultKind.WORKER_KILL, FaultKind.WORKER_PAUSE, FaultKind.POOL_KILL):
            child = _pick([c for c in self.cluster.children if c.name.startswith("worker")],
                          fault.target)  # fmt: skip
            process = _process(child)
            if kind is FaultKind.POOL_KILL:
                pool = process.children()
                if not pool:
                    raise LookupError(f"{child.name} has no pool process now")
                victim = pool[fault.target % len(pool)]
                victim.kill()
                return f"killed pool process {victim.pid} of {child.name}"
            if kind is FaultKind.WORKER_KILL:
                process.kill()
                return f"killed {child.name} ({process.pid})"
            return self._pause([process, *process.children()], fault.for_s, child.name)
        if kind in (FaultKind.SCHEDULER_KILL, FaultKind.SCHEDULER_PAUSE):
            child = _pick([c for c in self.cluster.children if c.name.startswith("scheduler")],
                          fault.target)  # fmt: skip
            process = _process(child)
            if kind is FaultKind.SCHEDULER_KILL:
                process.kill()
                return f"killed {child.name} ({process.pid})"
            return self._pause([process], fault.for_s, child.name)
        if kind is FaultKind.API_KILL:
            arbiter = _process(self.cluster.child("api"))
            workers = arbiter.children()
            victim = workers[fault.target % len(workers)] if workers else arbiter
            victim.kill()
            return f"killed API process {victim.pid}"
        if kind is FaultKind.API_PAUSE:
            arbiter = _process(self.cluster.child("api"))
            return self._pause([arbiter, *arbiter.children()], fault.for_s, "the API")
        if kind is FaultKind.REDIS_KILL:
            server = self.redis_server.process
            if server is None or server.poll() is not None or self.redis_restart_at:
                raise LookupError("redis-server is down already")
            server.kill()
            server.wait()
            self.redis_restart_at = time.monotonic() + fault.for_s  # the main thread's job
            return f"killed redis-server ({server.pid}), to start again from its AOF"
        if kind is FaultKind.LINK_CUT:
            assert self.hosts is not None
            host = sorted(REMOTE_QPUS.values())[fault.target % len(REMOTE_QPUS)]
            self.hosts.link(host, "down")
            self._later(fault.for_s, lambda: self.hosts.link(host, "up"))  # type: ignore[union-attr]
            return f"cut host {host}'s link"
        if kind is FaultKind.DEVICE_FLIP:
            device_type = sorted(self.settings.qpus)[fault.target % len(self.settings.qpus)]
            devices = DeviceStatuses(self.client, self.settings.namespace)
            devices.set(device_type, DeviceStatus(fault.detail), "chaos", now_us())
            self._later(fault.for_s, lambda: devices.set(device_type, DeviceStatus.UP, "chaos",
                                                         now_us()))  # fmt: skip
            return f"{device_type} {fault.detail}"
        raise ValueError(f"unknown fault {kind}")

    def _pause(self, processes: list[psutil.Process], for_s: float, name: str) -> str:
        for process in processes:
            process.suspend()
            self.paused.add(process.pid)

        def resume() -> None:
            for process in processes:
                with suppress(psutil.Error):
                    process.resume()
                self.paused.discard(process.pid)

        self._later(for_s, resume)
        return f"paused {name} ({', '.join(str(p.pid) for p in processes)})"

    def _later(self, delay_s: float, undo: Callable[[], None]) -> None:
        """Undoes a lasting fault after `delay_s` (and at the end of the run at the latest)."""

        def run() -> None:
            time.sleep(delay_s)
            for _ in range(60):  # Redis may be down just then (a device flip's undo)
                try:
                    undo()
                    return
                except Exception:
                    time.sleep(0.5)

        threading.Thread(target=run, daemon=True).start()
        self.undos.append(undo)

    def _undo_all(self) -> None:
        """Every lasting fault undone now: paused processes go on, links come up, devices are
        UP, Redis runs."""
        for undo in list(self.undos):
            with suppress(Exception):
                undo()
        for pid in list(self.paused):
            with suppress(psutil.Error):
                psutil.Process(pid).resume()
        server = getattr(self, "redis_server", None)
        if server is not None and self.redis_restart_at is not None:
            self.redis_restart_at = None
            with suppress(Exception):
                server.start(timeout_s=60)


@dataclass(frozen=True)
class _Account:
    project_id: str
    token: str


class _Http:
    """A client of the core API that retries a request until it is answered: a connection
    error, a 5xx or a 429 is tried again (with the same Idempotency-Key), a 2xx is the answer,
    any other 4xx means the request was refused (None)."""

    def __init__(self, base: str, token: str, refusals: Counter[str]) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        #: "<status> <method> <route>" -> how many: a 409 (closing a batch that ended) is
        #: expected, a 400 is a bug of this client or of the API.
        self.refusals = refusals

    def until_answered(
        self, method: str, path: str, body: Any = None, key: str = "", give_up_s: float = 600.0
    ) -> dict[str, Any] | None:
        headers = {"Idempotency-Key": key} if key else {}
        deadline = time.monotonic() + give_up_s
        delay = 0.1
        while time.monotonic() < deadline:
            try:
                reply = self.session.request(
                    method, self.base + path, json=body, headers=headers, timeout=20
                )
            except requests.RequestException:
                reply = None
            if reply is not None and reply.status_code < 300:
                data: dict[str, Any] = reply.json()["data"]
                return data
            if reply is not None and reply.status_code < 500 and reply.status_code != 429:
                route = "/".join("{id}" if len(p) == 36 else p for p in path.split("/"))
                self.refusals[f"{reply.status_code} {method} {route}"] += 1
                return None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise TimeoutError(f"{method} {path}: no answer in {give_up_s:g} s")


def _jobs(rng: random.Random, count: int) -> list[dict[str, Any]]:
    return [
        {"runs": rng.randint(1, 50), "variables": {QPU_SECONDS_VARIABLE: rng.uniform(0.01, 0.3)}}
        for _ in range(count)
    ]


def _pick(children: list[Child], index: int) -> Child:
    if not children:
        raise LookupError("no such process")
    return children[index % len(children)]


def _process(child: Child) -> psutil.Process:
    if child.process is None or child.process.poll() is not None:
        raise LookupError(f"{child.name} is not running (being restarted)")
    return psutil.Process(child.process.pid)


def _settings(redis_url: str) -> Settings:
    """A cluster whose timers are short enough for faults to be noticed within seconds."""
    return Settings.from_env(
        {},
        redis_url=redis_url,
        namespace="chaos",
        results_secret=secrets.token_hex(16),
        auth_secret=secrets.token_hex(32),
        webhook_secret=secrets.token_hex(32),
        webhook_allow="127.0.0.1",
        webhook_timeout_s=3.0,
        qpus={"EMU_FREE": 2, "FRESNEL": 1},
        synthetic_devices=True,
        worker_concurrency=2,
        lease_ttl_s=3.0,
        scheduler_tick_s=0.2,
        dispatch_timeout_s=5.0,
        job_heartbeat_ttl_s=3.0,
        open_batch_timeout_s=60.0,
        rate_limit_per_s=0,
        login_attempts_per_min=600,
    )
