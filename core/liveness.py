"""Who is alive: schedulers say so on every pass, workers every few seconds (workers/presence.py),
and readiness (`GET /readyz`, `tweezer` probes) asks whether a cluster can run a batch now: its
Redis answers, a scheduler passed recently, and every configured QPU has a live worker.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis

from core.keys import Keys
from core.qpu import PRESENCE_TTL_S
from core.timefmt import SECOND_US, to_us

#: A scheduler silent this long is forgotten (its entry is dropped by the next one's pass).
FORGET_AFTER_S = 3600.0


def alive_since(now: int) -> int:
    """Who announced itself at or after this (µs) is alive at `now`: within PRESENCE_TTL_S."""
    return now - to_us(PRESENCE_TTL_S)


def process_name() -> str:
    """This process, as schedulers and job histories name it: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_name(qpu: str) -> str:
    """A worker process of `qpu`, as worker presence names it: QPU/host:pid."""
    return f"{qpu}/{process_name()}"


def qpu_of_worker(worker: str) -> str:
    return worker.split("/", 1)[0]


@dataclass(frozen=True)
class Readiness:
    schedulers: int
    #: Configured QPU -> whether one of its workers announced itself within PRESENCE_TTL_S.
    qpus: dict[str, bool]

    @property
    def ready(self) -> bool:
        return self.schedulers > 0 and all(self.qpus.values())

    def missing(self) -> list[str]:
        out = [] if self.schedulers else ["no scheduler passed in the last 30 s"]
        out += [
            f"no worker of {q} announced itself in the last 30 s"
            for q, alive in self.qpus.items()
            if not alive
        ]
        return out


class Liveness:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis = client
        self.keys = Keys(namespace)

    def scheduler_passed(self, scheduler_id: str, now: int, leases: Iterable[str] = ()) -> None:
        """A scheduler made a pass holding the leases of `leases` (QPU names); schedulers and
        workers silent for FORGET_AFTER_S are dropped."""
        forget = now - FORGET_AFTER_S * SECOND_US
        presence, workers = self.keys.scheduler_presence(), self.keys.worker_presence()
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(presence)
        pipe.hgetall(workers)
        schedulers_seen, workers_seen = pipe.execute()
        stale = [s for s, at in schedulers_seen.items() if int(at) < forget]
        lost = [w for w, at in workers_seen.items() if int(at) < forget]
        pipe.hset(presence, scheduler_id, now)
        pipe.hset(self.keys.scheduler_leases(), scheduler_id, " ".join(sorted(leases)))
        if stale:
            pipe.hdel(presence, *stale)
            pipe.hdel(self.keys.scheduler_leases(), *stale)
        if lost:
            pipe.hdel(workers, *lost)
        pipe.execute()

    def readiness(
        self,
        qpus: Iterable[str],
        now: int,
        since: int | None = None,
        ours: Callable[[str], bool] | None = None,
    ) -> Readiness:
        """Who is alive at `now`: announced within PRESENCE_TTL_S, and not before `since` when
        given (a cluster starting on a Redis that remembers its previous run). With `ours`,
        only processes it accepts count (by their host:pid): `tweezer up` waits for its own
        children, not for whatever else announces itself on the same Redis."""
        since = max(alive_since(now), since or 0)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.scheduler_presence())
        pipe.hgetall(self.keys.qpu_presence() if ours is None else self.keys.worker_presence())
        schedulers, announced = pipe.execute()
        alive = sum(
            1
            for name, at in schedulers.items()
            if int(at) >= since and (ours is None or ours(name))
        )
        if ours is None:
            return Readiness(alive, {q: int(announced.get(q, 0)) >= since for q in qpus})
        live = {
            qpu_of_worker(worker)
            for worker, at in announced.items()
            if int(at) >= since and ours(worker.split("/", 1)[-1])
        }
        return Readiness(alive, {q: q in live for q in qpus})
