"""Scheduling policies: which waiting batch a free QPU runs next.

A policy is a plain object: given an immutable `Snapshot` of the batches waiting for one device
type, the batches holding its other QPUs, each project's recent QPU usage and share, and `now`,
it chooses a batch (or none). It knows nothing of Redis, Celery or wall time, so the live
scheduler (scheduler/loop.py, which then grants the choice with one fenced compare-and-set in
Redis) and the simulator (scheduling/simulator.py, on a virtual clock) run the very same objects.

Built in (README, "Scheduling policies"): `fifo`, `priority`, `fair-share` (the default) and
`shortest-first`. A lab adds its own by naming `module:Class` (`--policy mylab.policies:Deadline`):
a class built without arguments that has `name`, `window` and `choose` as below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import ClassVar, Protocol

from core.errors import ConfigurationError
from scheduling.snapshot import Snapshot, Waiting


class Policy(Protocol):
    """What the scheduler and the simulator call."""

    #: Shown in logs, `tweezer queue` and the simulator's summary.
    name: str
    #: How many of each project's oldest waiting batches per priority level it needs to see:
    #: 1 for policies that only ever pick a queue's head.
    window: int

    def choose(self, snapshot: Snapshot) -> Waiting | None:
        """The batch the free QPU runs next; None leaves it idle."""


# A policy may also say, cheaply, in which order it would start every batch of a long queue
# if nothing more arrived: `backlog_order(snapshot) -> list[Waiting]`, where `snapshot.waiting`
# holds all of them (not a window). Forecasts use it past their exact positions
# (scheduling/forecast.py): one sort instead of one `choose` per batch. A policy without it is
# taken to start its backlog by priority level, then submission.


# A policy may also rank batches one at a time: `rank(batch, usage_per_share) -> tuple of
# numbers`, least first, where `usage_per_share` is the batch's project's decayed QPU usage
# per share at a moment common to every batch ranked together (not counting the time its
# batches hold QPUs now). Its promise: of batches whose projects hold no QPU of the type,
# `choose` would pick the one of least (rank, id). The live scheduler then keeps the waiting
# batches ranked (scheduling/ranked.py) and calls `choose` with only that one and the batches of
# projects holding QPUs: a grant costs the same with ten projects waiting or a thousand. A
# policy without `rank` gets every project's window each time.


def _by_level_then_age(b: Waiting) -> tuple[int, float, str]:
    return (b.level, b.submitted_s, b.id)


def backlog_order(policy: Policy, snapshot: Snapshot) -> list[Waiting]:
    """Every batch of `snapshot.waiting` in the order `policy` is expected to start them."""
    own: Callable[[Snapshot], list[Waiting]] | None = getattr(policy, "backlog_order", None)
    if own is not None:
        return own(snapshot)
    return sorted(snapshot.waiting, key=_by_level_then_age)


def _by_rank(policy: Fifo | PriorityFirst | ShortestFirst, snapshot: Snapshot) -> list[Waiting]:
    """Every waiting batch by the policy's rank: its backlog order when the rank does not
    depend on usage."""
    return sorted(snapshot.waiting, key=lambda b: (*policy.rank(b, 0.0), b.id))


def _oldest(batches: tuple[Waiting, ...] | list[Waiting]) -> Waiting | None:
    return min(batches, key=lambda b: (b.submitted_s, b.id), default=None)


class Fifo:
    """Submission order, nothing else."""

    name: ClassVar[str] = "fifo"
    window: ClassVar[int] = 1

    def choose(self, snapshot: Snapshot) -> Waiting | None:
        return _oldest(snapshot.waiting)

    def rank(self, batch: Waiting, usage_per_share: float) -> tuple[float, ...]:
        return (batch.submitted_s,)

    def backlog_order(self, snapshot: Snapshot) -> list[Waiting]:
        # Exact: the oldest head is the oldest batch.
        return _by_rank(self, snapshot)


class PriorityFirst:
    """HIGH before MEDIUM before LOW; submission order within a level."""

    name: ClassVar[str] = "priority"
    window: ClassVar[int] = 1

    def choose(self, snapshot: Snapshot) -> Waiting | None:
        return min(snapshot.waiting, key=_by_level_then_age, default=None)

    def rank(self, batch: Waiting, usage_per_share: float) -> tuple[float, ...]:
        return (batch.level, batch.submitted_s)

    def backlog_order(self, snapshot: Snapshot) -> list[Waiting]:
        # Exact, as for fifo.
        return _by_rank(self, snapshot)


class FairShare:
    """Priority levels first; within a level, the project furthest below its share of QPU
    time: the least usage per share (QPU seconds, decayed by the cluster's half-life, plus
    what its running batches have held so far), then its oldest batch. Ties go to the project
    whose oldest batch is oldest."""

    name: ClassVar[str] = "fair-share"
    window: ClassVar[int] = 1

    def choose(self, snapshot: Snapshot) -> Waiting | None:
        if not snapshot.waiting:
            return None
        level = min(b.level for b in snapshot.waiting)
        heads: dict[str, Waiting] = {}
        for batch in snapshot.waiting:
            if batch.level == level:
                head = heads.get(batch.project)
                if head is None or (batch.submitted_s, batch.id) < (head.submitted_s, head.id):
                    heads[batch.project] = batch
        ratio = snapshot.usage_per_share(heads)
        return min(heads.values(), key=lambda h: (ratio[h.project], h.submitted_s, h.id))

    def rank(self, batch: Waiting, usage_per_share: float) -> tuple[float, ...]:
        # Usage decays by the same factor for every project, so projects that hold no QPU
        # keep their order by usage per share as time passes: ranked once, until it changes.
        return (batch.level, usage_per_share, batch.submitted_s)

    def backlog_order(self, snapshot: Snapshot) -> list[Waiting]:
        """Level by level; within one, as fair queuing does: each project's batches in
        submission order, each keyed by the project's usage per share before it starts (its
        usage now, plus the predicted QPU time of its batches ahead of it). Close to `choose`
        run batch by batch, not equal: usage decays meanwhile, and with several QPUs `choose`
        counts a running batch's time as it passes, this its whole prediction at its start."""
        ratio = snapshot.usage_per_share({b.project for b in snapshot.waiting})
        keyed = []
        for b in sorted(snapshot.waiting, key=_by_level_then_age):
            keyed.append(((b.level, ratio[b.project], b.submitted_s, b.id), b))
            ratio[b.project] += b.predicted_qpu_s / max(snapshot.share(b.project), 1e-9)
        keyed.sort(key=lambda pair: pair[0])
        return [b for _, b in keyed]


class ShortestFirst:
    """The batch with the least predicted QPU time first, aged: a batch's score is its
    predicted QPU seconds minus the time it has waited divided by `aging` (10). So once a batch
    has waited `aging` times its own predicted QPU time, no batch submitted after it starts
    before it: nothing starves, and short batches still overtake long ones that just came."""

    name: ClassVar[str] = "shortest-first"
    #: It compares every batch it sees: 20 per project and level (deeper ones wait their turn
    #: to come into view), which keeps a choice cheap on a long queue.
    window: ClassVar[int] = 20
    aging: ClassVar[float] = 10.0

    def choose(self, snapshot: Snapshot) -> Waiting | None:
        now = snapshot.now_s

        def key(b: Waiting) -> tuple[float, float, str]:
            return (b.predicted_qpu_s - (now - b.submitted_s) / self.aging, b.submitted_s, b.id)

        return min(snapshot.waiting, key=key, default=None)

    def rank(self, batch: Waiting, usage_per_share: float) -> tuple[float, ...]:
        # `choose`'s score x aging, less `now`, which is the same for every batch.
        return (batch.predicted_qpu_s * self.aging + batch.submitted_s, batch.submitted_s)

    def backlog_order(self, snapshot: Snapshot) -> list[Waiting]:
        # Of batches that all wait, the aged score orders them the same at any moment: score x
        # aging = predicted x aging + submitted - now. Unlike `choose`, this sees every batch of
        # a project, not its first `window`.
        return _by_rank(self, snapshot)


BUILT_IN: dict[str, type] = {p.name: p for p in (Fifo, PriorityFirst, FairShare, ShortestFirst)}
DEFAULT_POLICY = FairShare.name


def load_policy(name: str) -> Policy:
    """A built-in policy by name, or a user's class named `module:Class` (built without
    arguments). Raises ConfigurationError naming what is wrong."""
    if name in BUILT_IN:
        policy: Policy = BUILT_IN[name]()
        return policy
    module_name, sep, class_name = name.partition(":")
    if not sep:
        raise ConfigurationError(
            f"unknown policy {name!r}: use one of {', '.join(BUILT_IN)} or module:Class"
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
        policy = cls()
    except (ImportError, AttributeError, TypeError) as exc:
        raise ConfigurationError(f"policy {name!r} cannot be loaded: {exc}") from None
    for attribute in ("name", "window", "choose"):
        if not hasattr(policy, attribute):
            raise ConfigurationError(f"policy {name!r} has no {attribute!r}")
    if not isinstance(policy.window, int) or policy.window < 1:
        raise ConfigurationError(f"policy {name!r}: window must be an int >= 1")
    return policy
