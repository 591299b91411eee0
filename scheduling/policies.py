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


def _oldest(batches: tuple[Waiting, ...] | list[Waiting]) -> Waiting | None:
    return min(batches, key=lambda b: (b.submitted_s, b.id), default=None)


class Fifo:
    """Submission order, nothing else."""

    name: ClassVar[str] = "fifo"
    window: ClassVar[int] = 1

    def choose(self, snapshot: Snapshot) -> Waiting | None:
        return _oldest(snapshot.waiting)


class PriorityFirst:
    """HIGH before MEDIUM before LOW; submission order within a level."""

    name: ClassVar[str] = "priority"
    window: ClassVar[int] = 1

    def choose(self, snapshot: Snapshot) -> Waiting | None:
        return min(snapshot.waiting, key=lambda b: (b.level, b.submitted_s, b.id), default=None)


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

        def key(head: Waiting) -> tuple[float, float, str]:
            ratio = snapshot.usage_now(head.project) / max(snapshot.share(head.project), 1e-9)
            return (ratio, head.submitted_s, head.id)

        return min(heads.values(), key=key)


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
