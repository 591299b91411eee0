"""The soak's faults, struck at their times (`tweezer chaos`, lab/faults.py's schedule):
each kind acted out on the cluster's processes, Redis, the test hosts' links or the devices,
and every lasting fault undone when it expires and again when the faults stop.

Processes are only ever started from the main thread (`tend`): a child's parent-death signal
follows the thread that started it, and the injector's thread ends before the soak does.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import psutil
import redis

from core.db import Db
from core.device_status import DeviceStatuses
from core.settings import Settings
from core.status import DeviceStatus
from core.timefmt import now_us
from lab.faults import Fault, FaultKind
from launch.cluster import Child, Cluster
from launch.netns import Hosts
from launch.redis_server import RedisServer


class Injector:
    def __init__(
        self,
        cluster: Cluster,
        redis_server: RedisServer,
        client: redis.Redis,
        settings: Settings,
        hosts: Hosts | None,
        cut_hosts: list[str],
    ) -> None:
        self.cluster, self.redis_server, self.client = cluster, redis_server, client
        self.settings, self.hosts, self.cut_hosts = settings, hosts, cut_hosts
        #: Faults struck, by kind.
        self.injected: Counter[str] = Counter()
        self.paused: set[int] = set()
        #: What undoes each lasting fault (run again when the faults stop: undoing twice is
        #: harmless).
        self.undos: list[Callable[[], None]] = []
        #: When the main thread starts Redis again after a REDIS_KILL (time.monotonic).
        self.redis_restart_at: float | None = None

    def inject(self, faults: list[Fault], started: float, log: Path) -> None:
        """Strikes each fault at its time (seconds after `started`); writes what it did."""
        with log.open("w") as out:
            for fault in faults:
                wait = fault.at_s - (time.monotonic() - started)
                if wait > 0:
                    time.sleep(wait)
                try:
                    what = self.strike(fault)
                except Exception as exc:  # a target gone meanwhile: noted, the soak goes on
                    what = f"not injected: {type(exc).__name__}: {exc}"
                else:
                    self.injected[fault.kind.value] += 1
                out.write(f"{fault.describe()}  {what}\n")
                out.flush()

    def tend(self) -> None:
        """The main thread's part: start Redis again once its outage is over."""
        due = self.redis_restart_at
        if due is not None and time.monotonic() >= due:
            self.redis_restart_at = None
            self.redis_server.start(timeout_s=60)

    def strike(self, fault: Fault) -> str:
        kind = fault.kind
        if kind in (FaultKind.WORKER_KILL, FaultKind.WORKER_PAUSE, FaultKind.POOL_KILL):
            child = _pick(self.cluster.children, "worker", fault.target)
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
            child = _pick(self.cluster.children, "scheduler", fault.target)
            process = _process(child)
            if kind is FaultKind.SCHEDULER_KILL:
                process.kill()
                return f"killed {child.name} ({process.pid})"
            return self._pause([process], fault.for_s, child.name)
        if kind in (FaultKind.API_KILL, FaultKind.API_PAUSE):
            arbiter = _process(self.cluster.child("api"))
            workers = arbiter.children()
            if kind is FaultKind.API_PAUSE:
                return self._pause([arbiter, *workers], fault.for_s, "the API")
            victim = workers[fault.target % len(workers)] if workers else arbiter
            victim.kill()
            return f"killed API process {victim.pid}"
        if kind is FaultKind.REDIS_KILL:
            server = self.redis_server.process
            if server is None or server.poll() is not None or self.redis_restart_at:
                raise LookupError("redis-server is down already")
            server.kill()
            server.wait()
            self.redis_restart_at = time.monotonic() + fault.for_s  # the main thread's job
            return f"killed redis-server ({server.pid}), to start again from its AOF"
        if kind is FaultKind.LINK_CUT:
            hosts = self.hosts
            if hosts is None or not self.cut_hosts:
                raise LookupError("no test hosts to cut off")
            host = self.cut_hosts[fault.target % len(self.cut_hosts)]
            hosts.link(host, "down")
            self._later(fault.for_s, lambda: hosts.link(host, "up"))
            return f"cut host {host}'s link"
        if kind is FaultKind.DEVICE_FLIP:
            device_type = sorted(self.settings.qpus)[fault.target % len(self.settings.qpus)]
            devices = DeviceStatuses(Db.of(self.client, self.settings.namespace))
            devices.set(device_type, DeviceStatus(fault.detail), "chaos", now_us())

            def up() -> None:
                devices.set(device_type, DeviceStatus.UP, "chaos", now_us())

            self._later(fault.for_s, up)
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
        """Undoes a lasting fault after `delay_s` (and when the faults stop, at the latest)."""

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

    def undo_all(self) -> None:
        """Every lasting fault undone now (from the main thread): paused processes go on,
        links come up, devices are UP, Redis runs."""
        for undo in list(self.undos):
            with suppress(Exception):
                undo()
        for pid in list(self.paused):
            with suppress(psutil.Error):
                psutil.Process(pid).resume()
        if self.redis_restart_at is not None:
            self.redis_restart_at = None
            with suppress(Exception):
                self.redis_server.start(timeout_s=60)


def _pick(children: list[Child], kind: str, index: int) -> Child:
    """The `index`-th (modulo) of the cluster's children whose name starts with `kind`."""
    found = [c for c in children if c.name.startswith(kind)]
    if not found:
        raise LookupError(f"no {kind} process")
    return found[index % len(found)]


def _process(child: Child) -> psutil.Process:
    if child.process is None or child.process.poll() is not None:
        raise LookupError(f"{child.name} is not running (being restarted)")
    return psutil.Process(child.process.pid)
