"""The soak's fault schedule (`tweezer chaos`): which fault strikes when, drawn before the run
from its seed alone, so a run is reproduced by its seed (and printed before it starts).

A fault names a kind and a target *index* (which worker, which scheduler...), taken modulo the
candidates alive when it strikes: the schedule does not depend on process ids.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    #: SIGKILL a worker pool's main process (the supervisor restarts it).
    WORKER_KILL = "worker-kill"
    #: SIGKILL one process of a worker's pool (Celery replaces it).
    POOL_KILL = "pool-kill"
    #: SIGSTOP a worker pool (main process and pool) for `for_s`, then SIGCONT.
    WORKER_PAUSE = "worker-pause"
    SCHEDULER_KILL = "scheduler-kill"
    #: SIGSTOP a scheduler for `for_s`: past the lease TTL, another one takes its QPUs over.
    SCHEDULER_PAUSE = "scheduler-pause"
    #: SIGKILL one of the API's gunicorn workers (its arbiter starts another).
    API_KILL = "api-kill"
    #: SIGSTOP the API's processes for `for_s`: clients time out and try again.
    API_PAUSE = "api-pause"
    #: SIGKILL redis-server; it starts again from its AOF after `for_s`.
    REDIS_KILL = "redis-kill"
    #: Cut a worker host's network link for `for_s` (network namespaces only).
    LINK_CUT = "link-cut"
    #: Set a device type DOWN or MAINTENANCE for `for_s`, then UP again.
    DEVICE_FLIP = "device-flip"


#: How often each kind strikes, relative to the others.
WEIGHTS: dict[FaultKind, float] = {
    FaultKind.WORKER_KILL: 3,
    FaultKind.POOL_KILL: 3,
    FaultKind.WORKER_PAUSE: 2,
    FaultKind.SCHEDULER_KILL: 2,
    FaultKind.SCHEDULER_PAUSE: 2,
    FaultKind.API_KILL: 2,
    FaultKind.API_PAUSE: 1,
    FaultKind.REDIS_KILL: 1,
    FaultKind.LINK_CUT: 2,
    FaultKind.DEVICE_FLIP: 1,
}
#: (shortest, longest) seconds a fault lasts, for kinds that last. Pauses and cuts reach past
#: the 10 s lease TTL and the 15 s job heartbeat TTL: takeovers and lost jobs happen.
DURATIONS: dict[FaultKind, tuple[float, float]] = {
    FaultKind.WORKER_PAUSE: (0.5, 20.0),
    FaultKind.SCHEDULER_PAUSE: (0.5, 15.0),
    FaultKind.API_PAUSE: (0.5, 10.0),
    FaultKind.REDIS_KILL: (0.2, 3.0),
    FaultKind.LINK_CUT: (1.0, 20.0),
    FaultKind.DEVICE_FLIP: (1.0, 8.0),
}


@dataclass(frozen=True)
class Fault:
    at_s: float
    kind: FaultKind
    #: Which of the candidates alive when it strikes (taken modulo their number).
    target: int
    for_s: float = 0.0
    #: DOWN or MAINTENANCE, for a device flip.
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v not in ("", 0.0) or k == "at_s"}

    def describe(self) -> str:
        lasting = f" for {self.for_s:.1f} s" if self.for_s else ""
        detail = f" {self.detail}" if self.detail else ""
        return f"{self.at_s:8.2f} s  {self.kind}{detail} #{self.target}{lasting}"


def parse_kinds(text: str) -> tuple[FaultKind, ...]:
    """`worker-kill,redis-kill` (or `all`) as fault kinds; ValueError naming an unknown one."""
    if text.strip() == "all":
        return tuple(FaultKind)
    kinds = []
    for word in filter(None, (w.strip() for w in text.split(","))):
        try:
            kinds.append(FaultKind(word))
        except ValueError:
            allowed = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"unknown fault kind {word!r}; known: {allowed}, all") from None
    if not kinds:
        raise ValueError("no fault kind given")
    return tuple(dict.fromkeys(kinds))


def schedule(
    seed: int, duration_s: float, kinds: tuple[FaultKind, ...], every_s: float
) -> list[Fault]:
    """Faults at Poisson times, `every_s` apart on average, over `duration_s`, of `kinds`
    weighted by WEIGHTS: the same for the same arguments."""
    rng = random.Random(seed)
    weights = [WEIGHTS[k] for k in kinds]
    faults = []
    t = rng.expovariate(1 / every_s)
    while t < duration_s:
        kind = rng.choices(kinds, weights)[0]
        low, high = DURATIONS.get(kind, (0.0, 0.0))
        faults.append(
            Fault(
                at_s=round(t, 3),
                kind=kind,
                target=rng.randrange(1_000_000),
                for_s=round(rng.uniform(low, high), 3) if high else 0.0,
                detail=rng.choice(("DOWN", "MAINTENANCE")) if kind is FaultKind.DEVICE_FLIP else "",
            )
        )
        t += rng.expovariate(1 / every_s)
    return faults
