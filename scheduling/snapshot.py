"""What a scheduling policy sees: the batches waiting for a device type, those holding its other
QPUs, and each project's usage and share. Plain values: the live scheduler reads them from Redis
(scheduler/reader.py), the simulator builds them from its own state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from core.priorities import PRIORITIES

_LEVELS = {priority.value: level for level, priority in enumerate(PRIORITIES)}


@dataclass(frozen=True)
class Waiting:
    """A batch waiting for a QPU of its device type."""

    id: str
    project: str
    user: str
    priority: str
    device_type: str
    #: When it was submitted, in seconds (the live scheduler's clock: Unix time).
    submitted_s: float
    open: bool
    jobs: int
    runs: int
    #: How long it is expected to hold a QPU (core/costs.py; a trace's own figure in simulation).
    predicted_qpu_s: float

    @cached_property
    def level(self) -> int:
        """0 for HIGH, 1 for MEDIUM, 2 for LOW."""
        return _LEVELS.get(self.priority, 1)


@dataclass(frozen=True)
class Holding:
    """A batch holding another QPU of the device type right now."""

    id: str
    project: str
    started_s: float
    #: How long it was expected to hold its QPU (forecasts: what is left of it).
    predicted_qpu_s: float = 0.0


@dataclass(frozen=True)
class Snapshot:
    """What a policy sees when a QPU of `device_type` is free."""

    now_s: float
    device_type: str
    #: The waiting batches, in no particular order (policies compare their own keys and break
    #: ties by id): of each project and priority level, its oldest `window` ones (the policy's
    #: own window), which keeps a pass cheap on a long queue.
    waiting: tuple[Waiting, ...]
    #: Batches on the type's other QPUs (their QPU time so far counts as usage).
    holding: tuple[Holding, ...] = ()
    #: Each project's QPU seconds on this device type, decayed to `now_s` (fair share).
    usage: Mapping[str, float] = field(default_factory=dict)
    #: Each project's share (absent: 1).
    shares: Mapping[str, float] = field(default_factory=dict)

    def share(self, project: str) -> float:
        return self.shares.get(project, 1.0)

    def usage_now(self, project: str) -> float:
        """The project's decayed usage plus the time its batches have held QPUs so far."""
        return self.usage.get(project, 0.0) + max(0.0, self._held.get(project, 0.0))

    def usage_per_share(self, projects: Iterable[str]) -> dict[str, float]:
        """`usage_now / share` of each of `projects` (fair share's measure), in one loop: a
        choice asks it of every waiting project, for every grant."""
        usage, held, shares = self.usage.get, self._held.get, self.shares.get
        return {
            p: (usage(p, 0.0) + max(0.0, held(p, 0.0))) / max(shares(p, 1.0), 1e-9)
            for p in projects
        }

    @cached_property
    def _held(self) -> dict[str, float]:
        # Summed once per snapshot: a fair-share choice asks for every waiting project's
        # usage, and with 32 QPUs a sum over the holders each time cost 32 steps a project.
        held: dict[str, float] = {}
        for h in self.holding:
            held[h.project] = held.get(h.project, 0.0) + self.now_s - h.started_s
        return held
