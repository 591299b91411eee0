"""`tweezer chaos`: a soak that throws faults at a cluster under load, then proves from the whole
history that nothing was lost (lab/checker.py).

It starts a cluster of its own (redis-server with its AOF, the API, two schedulers, three QPUs
of synthetic devices: EMU_FREE-0 here, EMU_FREE-1 and FRESNEL-0 on two other hosts made of
network namespaces where the machine allows it), a webhook receiver, and client threads that
submit closed and open batches, add jobs, close and cancel, every POST with an Idempotency-Key
and retried until answered (some sent twice on purpose). Meanwhile the fault schedule
(lab/faults.py, from `--seed`) kills and pauses workers, pool processes, schedulers and
API processes, kills Redis and starts it again from its AOF, cuts the worker hosts' links and
flips device statuses. Then the faults are undone, the clients finish, the cluster drains,
and the checker reads every acknowledged request, every record and every delivery.

Here: the run (`Soak`); the users in lab/soak_clients.py, the faults in lab/soak_injector.py,
the schedule and the checker in lab/faults.py and lab/checker.py; the command line in
cli/chaos.py.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import redis

from core.accounts import Accounts
from core.costs import Costs
from core.db import Db
from core.keys import Keys
from core.settings import Settings
from core.status import TERMINAL_BATCH_STATUSES
from core.store import Store
from lab.checker import Verdict, check, observe
from lab.faults import Fault
from lab.load import with_qpu_seconds
from lab.soak_clients import Account, Clients, Receiver
from lab.soak_injector import Injector
from lab.workload import Workload, plan
from launch.cluster import Child, Cluster
from launch.netns import Hosts, free_net
from launch.redis_server import RedisServer, free_port
from launch.supervision import DataDirLock

#: QPU -> the namespace host its worker pool runs on (when namespaces can be made).
REMOTE_QPUS = {"EMU_FREE-1": "b", "FRESNEL-0": "c"}
#: How long the cluster may take to finish everything once the faults stop.
DRAIN_S = 240.0


class Soak:
    """One soak: its cluster (set up by `running`), then `run`: clients, faults, drain,
    verdict. Every process is started from the main thread (lab/soak_injector.py)."""

    def __init__(self, out: Path, seed: int, hosts: bool) -> None:
        self.out, self.seed = out, seed
        self.hosts = Hosts(f"c{os.getpid() % 10000}", free_net()) if hosts else None
        #: When the progress line was last shown (seconds into the run).
        self.shown_at = -1e9

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
            # Supervised like `tweezer up`'s: it dies with this process.
            self.redis_server = RedisServer(
                root / "redis",
                password=secrets.token_hex(16),
                bind=bind,
                supervised_by=DataDirLock(root).acquire(),
            ).start()
            self.receiver = Receiver.start()
            self.settings = _settings(self.redis_server.url)
            self.cluster = Cluster(
                self.settings,
                root,
                "127.0.0.1",
                free_port(),
                self.redis_server,
                log_dir=root / "logs",
            )
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
            cut = sorted(REMOTE_QPUS.values()) if self.hosts is not None else []
            self.injector = Injector(
                self.cluster, self.redis_server, self.client, self.settings, self.hosts, cut
            )
            yield self
        finally:
            if hasattr(self, "injector"):
                self.injector.undo_all()
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
        self.injector.tend()

    def run(
        self,
        faults: list[Fault],
        duration_s: float,
        clients: int,
        workload: Workload | None = None,
        speedup: float = 1.0,
    ) -> Verdict:
        planned = None
        if workload is not None:
            costs = Costs(self.client, self.settings)
            planned = with_qpu_seconds(plan(workload), costs)
        self.clients = Clients(
            self.cluster.base_url + "/core-fast",
            self.settings,
            self.receiver.url,
            self.seed,
            planned,
            speedup,
        )
        self.clients.accounts = self._accounts(clients, workload)
        started = time.monotonic()
        threads = [
            threading.Thread(target=self.clients.run, args=(i,), daemon=True)
            for i in range(clients)
        ]
        for thread in threads:
            thread.start()
        log = self.out / "injected.log"
        injecting = threading.Thread(
            target=self.injector.inject, args=(faults, started, log), daemon=True
        )
        injecting.start()
        while time.monotonic() - started < duration_s or injecting.is_alive():
            self._tend()
            self._progress(started, duration_s)
            time.sleep(0.2)
        self.injector.undo_all()
        self.clients.stop.set()
        print(
            f"\ntweezer chaos: faults stopped ({sum(self.injector.injected.values())} "
            "injected); clients finishing, cluster draining",
            flush=True,
        )
        deadline = time.monotonic() + DRAIN_S
        for thread in threads:
            while thread.is_alive() and time.monotonic() < deadline:
                self._tend()
                thread.join(0.5)
        self._drain(deadline)
        return self._verdict(time.monotonic() - started)

    def _accounts(self, clients: int, workload: Workload | None) -> dict[tuple[str, str], Account]:
        """A workload's projects (priority, share) and users, each with a token, keyed by
        (project, user); without one, a user and token per client in three projects, keyed
        by ("", client index)."""
        accounts = Accounts(self.client, self.settings.namespace)
        made = {}
        if workload is not None:
            for spec in workload.projects:
                project = accounts.create_project(f"chaos-{spec.name}", spec.priority.value)
                if spec.share != 1.0:
                    accounts.update_project(project.id, [], share=spec.share)
                for name in spec.users:
                    user = accounts.create_user(f"chaos-{spec.name}-{name}")
                    accounts.add_member(project.id, user)
                    made[(spec.name, name)] = Account(project.id, accounts.issue_token(user).token)
            return made
        projects = [accounts.create_project(f"chaos-{p}").id for p in range(min(3, clients))]
        for i in range(clients):
            user = accounts.create_user(f"chaos-user-{i}")
            project_id = projects[i % len(projects)]
            accounts.add_member(project_id, user)
            made[("", str(i))] = Account(project_id, accounts.issue_token(user).token)
        return made

    def _verdict(self, elapsed_s: float) -> Verdict:
        acks = self.clients.told()
        projects = sorted({a.project_id for a in self.clients.accounts.values()})
        seen = observe(
            self.client,
            self.settings.namespace,
            projects,
            dict(self.receiver.deliveries),
        )
        verdict = check(acks, seen, self.settings.max_attempts)
        jobs = sum(len(js) for js in seen.jobs.values())
        injected = self.injector.injected
        report = {
            "seed": self.seed,
            "elapsed_s": round(elapsed_s, 1),
            "faults": dict(injected),
            "faults_total": sum(injected.values()),
            "batches": len(seen.batches),
            "jobs": jobs,
            "acknowledged_requests": len(acks),
            "refused_requests": dict(self.clients.refusals),
            **verdict.to_json(),
        }
        (self.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (self.out / "acks.jsonl").write_text("".join(a.to_json() + "\n" for a in acks))
        print(
            f"tweezer chaos: {report['faults_total']} faults, {len(seen.batches)} batches, "
            f"{jobs} jobs, {len(acks)} acknowledged requests in {elapsed_s:.0f} s"
        )
        refusals = self.clients.refusals
        if refusals:
            print("refused requests: " + ", ".join(f"{k}: {n}" for k, n in refusals.items()))
        return verdict

    def _progress(self, started: float, duration_s: float) -> None:
        """One line, redrawn on a terminal; a line every 10 s into a file or a pipe."""
        elapsed = time.monotonic() - started
        tty = sys.stdout.isatty()
        if not tty and elapsed - self.shown_at < 10:
            return
        self.shown_at = elapsed
        print(
            f"{chr(13) if tty else ''}{elapsed:6.0f}/{duration_s:.0f} s  faults "
            f"{sum(self.injector.injected.values()):4}  acknowledged requests "
            f"{len(self.clients.told()):6}",
            end="" if tty else "\n",
            flush=True,
        )

    def _drain(self, deadline: float) -> None:
        """Until every batch has ended and every webhook is delivered (or the deadline: then
        it says what is still going on, and the checker reports it)."""
        store, keys = (
            Store(Db.of(self.client, self.settings.namespace)),
            Keys(self.settings.namespace),
        )
        unfinished: list[str] = []
        owed = 0
        while time.monotonic() < deadline:
            self._tend()
            with suppress(redis.exceptions.RedisError):
                ids = list({a.batch_id for a in self.clients.told()})
                unfinished = [
                    f"{b.id} {b.status.value}{' open' if b.open else ''}"
                    for b in store.get_batches(ids)
                    if b.status not in TERMINAL_BATCH_STATUSES
                ]
                owed = self.client.zcard(keys.webhooks())
                if not unfinished and not owed:
                    return
            time.sleep(0.5)
        print(
            f"tweezer chaos: unfinished after the drain: {len(unfinished)} batches "
            f"({', '.join(unfinished[:5])}), {owed} webhook deliveries",
            flush=True,
        )


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
