"""A discrete-event simulation of the QPUs: the live scheduling policy on a virtual clock.

No Redis, no Celery, no sleeping: batches arrive at their submission times, each free QPU asks
the policy (scheduling/policies.py, the very objects the live scheduler runs) which waiting batch
it runs next, and that batch holds the QPU for its jobs' QPU seconds, back to back, plus, for
an open batch (a variational loop), the think time before each job it adds. Usage for fair share
is counted when a batch lets go of its QPU and decays with the same half-life rule as the live
cluster's.

A device type may be out of service (`down`: the trace header's maintenance and calibration
windows), with the live rule (docs/design.md, "Devices and the bridge"): no batch starts on it,
and a batch holding one of its QPUs lets the job in progress finish, then waits, holding the
QPU, until the device is back. (Live, a dispatched chunk of jobs finishes, not only one job:
at most `dispatch_chunk_s` of predicted work more; docs/traces.md.)

Deterministic: events at the same time are handled in a fixed order (QPUs freed, by name; then
arrivals, in submission order, then by id; then devices back in service), and all of them
before any QPU is granted, so the same input and policy always give the same outcome.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from itertools import chain, islice

from core.decay import DecayedUsage, decayed
from core.device_types import device_type_of_qpu, qpu_name
from scheduling.policies import Policy, backlog_order
from scheduling.snapshot import Holding, Snapshot, Waiting


@dataclass(frozen=True)
class SimJob:
    #: QPU seconds the job computes.
    qpu_s: float
    #: Shots (shown to policies as the batch's runs).
    runs: int = 1
    #: For an open batch: seconds the QPU waits, held, before this job is added (the previous
    #: round's results are being looked at); 0 for a closed batch.
    think_s: float = 0.0


#: What separates batches submitted at the same instant, in their order (the live clock's µs).
TIE_S = 1e-6


@dataclass(frozen=True)
class SimBatch:
    id: str
    project: str
    user: str
    priority: str
    device_type: str
    submit_s: float
    open: bool
    jobs: tuple[SimJob, ...]
    #: What the policy is told it will take (default: what it really takes).
    predicted_qpu_s: float | None = None
    #: The live batch it stands for (a forecast): what the policy sees of it.
    live: Waiting | None = field(default=None, compare=False, repr=False)
    #: How many batches of the run were submitted at the same instant before it (in the order
    #: given): the live store's clock makes each submission's time unique and increasing, so
    #: the policy sees it TIE_S later per batch before it, never a tie broken by id.
    tie: int = field(default=0, compare=False)

    @property
    def computing_s(self) -> float:
        return sum(job.qpu_s for job in self.jobs)

    @property
    def thinking_s(self) -> float:
        return sum(job.think_s for job in self.jobs) if self.open else 0.0

    @property
    def hold_s(self) -> float:
        """How long it holds its QPU once granted."""
        return self.computing_s + self.thinking_s

    @classmethod
    def of_waiting(cls, w: Waiting) -> SimBatch:
        """A live waiting batch as the simulator's: one job of its predicted QPU time."""
        job = SimJob(qpu_s=w.predicted_qpu_s, runs=w.runs)
        return cls(
            w.id, w.project, w.user, w.priority, w.device_type, w.submitted_s, False, (job,), live=w
        )

    def waiting(self) -> Waiting:
        if self.live is not None:
            return self.live
        predicted = self.hold_s if self.predicted_qpu_s is None else self.predicted_qpu_s
        return Waiting(
            id=self.id,
            project=self.project,
            user=self.user,
            priority=self.priority,
            device_type=self.device_type,
            submitted_s=self.submit_s + self.tie * TIE_S,
            open=self.open,
            jobs=len(self.jobs),
            runs=sum(job.runs for job in self.jobs),
            predicted_qpu_s=predicted,
        )


@dataclass(frozen=True)
class Outcome:
    """What happened to one batch."""

    batch: SimBatch
    qpu: str
    start_s: float
    end_s: float

    @property
    def wait_s(self) -> float:
        return self.start_s - self.batch.submit_s


@dataclass(frozen=True)
class Busy:
    """A QPU already held when the simulation starts (a forecast from a live cluster)."""

    qpu: str
    until_s: float
    holding: Holding


@dataclass
class _Type:
    """The state of one device type's QPUs and queue."""

    free: list[str]
    #: (priority level, project) -> its waiting batches, in submission order.
    queues: dict[tuple[int, str], deque[tuple[SimBatch, Waiting]]] = field(default_factory=dict)
    #: (priority level, project) -> the first `window` of them, as the policy sees them (kept
    #: up to date as the queue changes, so a snapshot costs no more than joining these).
    heads: dict[tuple[int, str], tuple[Waiting, ...]] = field(default_factory=dict)
    holding: dict[str, Holding] = field(default_factory=dict)
    #: project -> (QPU seconds, when counted)
    usage: dict[str, tuple[float, float]] = field(default_factory=dict)
    waiting_count: int = 0


_END, _ARRIVE, _UP = 0, 1, 2


class SimulationError(ValueError):
    """Batches the simulator cannot run (a time that is not a finite number); the message
    names the batch."""


def _merged(device_type: str, spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """A device type's out-of-service intervals, sorted, overlapping ones merged; each must be
    finite with its end after its start."""
    merged: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if not (math.isfinite(a) and math.isfinite(b) and a < b):
            raise SimulationError(f"{device_type}: a down interval must be finite, from < to")
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _check(batch: SimBatch) -> SimBatch:
    """`batch`, if every time in it is finite: NaN never equals itself, so a NaN time would
    never leave the event loop, and an infinite one never end."""
    times = (batch.submit_s, *(t for j in batch.jobs for t in (j.qpu_s, j.think_s)))
    if not all(math.isfinite(t) for t in times):
        raise SimulationError(f"batch {batch.id}: its times must be finite numbers")
    return batch


class Simulation:
    def __init__(
        self,
        policy: Policy,
        qpus: Mapping[str, int],
        half_life_s: float = 7 * 86_400.0,
        shares: Mapping[str, float] | None = None,
        usage: Mapping[str, Mapping[str, float]] | None = None,
        start_s: float = 0.0,
        down: Mapping[str, Iterable[tuple[float, float]]] | None = None,
    ) -> None:
        """`qpus`: QPU count per device type; `usage`: per device type, each project's QPU
        seconds counted at `start_s` (a forecast starts from the live cluster's); `down`: per
        device type, the [from, to) intervals it is out of service."""
        self.policy = policy
        self.half_life_s = half_life_s
        self.shares = dict(shares or {})
        self.start_s = start_s
        self.types = {
            device_type: _Type(free=[qpu_name(device_type, i) for i in range(count)])
            for device_type, count in qpus.items()
        }
        for device_type, projects in (usage or {}).items():
            if device_type in self.types:
                self.types[device_type].usage = {p: (v, start_s) for p, v in projects.items()}
        self.down = {t: _merged(t, spans) for t, spans in (down or {}).items()}

    def run(
        self,
        batches: Iterable[SimBatch],
        busy: Iterable[Busy] = (),
        present_s: float | None = None,
        exact_starts: int | None = None,
    ) -> list[Outcome]:
        """Every batch's outcome, in the order they started. Batches of a device type with no
        QPU never start (they are left out). With `present_s`, batches submitted before it
        arrive then (a forecast: they are waiting already). With `exact_starts`, once that many
        batches started and none is still to arrive, the rest are placed in the policy's
        `backlog_order` (one sort, not a `choose` each: forecasts of long queues)."""
        # (time, kind, order within the kind, payload): ends by QPU name, arrivals in
        # submission order (several arrive at once when a forecast starts from the present).
        events: list[tuple[float, int, tuple[float, str], object]] = []
        for b in busy:
            state = self.types[device_type_of_qpu(b.qpu)]
            state.free.remove(b.qpu)
            state.holding[b.qpu] = b.holding
            events.append((b.until_s, _END, (0.0, b.qpu), None))
        ties: dict[float, int] = {}
        for batch in map(_check, batches):
            if (tie := ties.get(batch.submit_s, 0)) and batch.live is None:
                batch = replace(batch, tie=tie)
            ties[batch.submit_s] = tie + 1
            if batch.device_type in self.types:
                arrival = batch.submit_s if present_s is None else max(batch.submit_s, present_s)
                order = (batch.submit_s + batch.tie * TIE_S, batch.id)  # a project's queue order
                events.append((arrival, _ARRIVE, order, batch))
        for device_type, spans in self.down.items():
            if device_type in self.types:  # back in service: what waited may start
                events += [(b, _UP, (0.0, device_type), None) for _, b in spans]
        heapq.heapify(events)
        arrivals = sum(1 for event in events if event[1] == _ARRIVE)
        outcomes: list[Outcome] = []
        while events:
            now = events[0][0]
            touched: set[str] = set()
            while events and events[0][0] == now:
                _, kind, (_, key), payload = heapq.heappop(events)
                if kind == _END:
                    touched.add(self._release(key, now))
                elif kind == _UP:
                    touched.add(key)
                else:
                    assert isinstance(payload, SimBatch)
                    arrivals -= 1
                    self._arrive(payload)
                    touched.add(payload.device_type)
            for device_type in sorted(touched):
                self._grant(device_type, now, events, outcomes)
            if exact_starts is not None and len(outcomes) >= exact_starts and not arrivals:
                self._place_backlog(now, events, outcomes)
                break
        return outcomes

    def _place_backlog(
        self,
        now: float,
        events: list[tuple[float, int, tuple[float, str], object]],
        outcomes: list[Outcome],
    ) -> None:
        """Every batch still waiting at `now`, started in the policy's backlog order, each on
        the type's QPU that frees first (ties: by name). Nothing more arrives (the caller
        checked) and usage is no longer followed."""
        for device_type, state in sorted(self.types.items()):
            if not state.waiting_count:
                continue
            free = [(now, qpu) for qpu in state.free]
            free += [
                (t, qpu) for t, kind, (_, qpu), _ in events if kind == _END and qpu in state.holding
            ]
            heapq.heapify(free)
            batches = {w.id: b for queue in state.queues.values() for b, w in queue}
            every = tuple(w for queue in state.queues.values() for _, w in queue)
            snapshot = replace(self.snapshot(device_type, now), waiting=every)
            order = backlog_order(self.policy, snapshot)
            if sorted(w.id for w in order) != sorted(batches):
                raise ValueError(
                    f"policy {self.policy.name}: backlog_order must return each waiting batch once"
                )
            for waiting in order:
                start, qpu = heapq.heappop(free)
                batch = batches[waiting.id]
                outcomes.append(Outcome(batch, qpu, start, start + batch.hold_s))
                heapq.heappush(free, (start + batch.hold_s, qpu))
            state.queues.clear()
            state.heads.clear()
            state.waiting_count = 0

    def _up_from(self, device_type: str, t: float) -> float:
        """The first time from `t` the device type is in service."""
        for a, b in self.down.get(device_type, ()):
            if a <= t < b:
                t = b  # intervals are merged and sorted: the next one starts after b
            elif a > t:
                break
        return t

    def _end(self, batch: SimBatch, start: float) -> float:
        """When a batch granted at `start` lets go of its QPU: each job after its think time
        (an open batch's user thinks whatever the device does), once the device is in
        service; a job in progress when it goes out finishes."""
        if batch.device_type not in self.down:
            return start + batch.hold_s
        t = start
        for job in batch.jobs:
            if batch.open:
                t += job.think_s
            t = self._up_from(batch.device_type, t) + job.qpu_s
        return t

    def _arrive(self, batch: SimBatch) -> None:
        state = self.types[batch.device_type]
        waiting = batch.waiting()
        key = (waiting.level, batch.project)
        queue = state.queues.setdefault(key, deque())
        queue.append((batch, waiting))
        if len(queue) <= self.policy.window:
            state.heads[key] = (*state.heads.get(key, ()), waiting)
        state.waiting_count += 1

    def _release(self, qpu: str, now: float) -> str:
        device_type = device_type_of_qpu(qpu)
        state = self.types[device_type]
        holding = state.holding.pop(qpu)
        value, since = state.usage.get(holding.project, (0.0, now))
        value = decayed(value, since, now, self.half_life_s) + (now - holding.started_s)
        state.usage[holding.project] = (value, now)
        state.free.append(qpu)
        state.free.sort()
        return device_type

    def snapshot(self, device_type: str, now: float) -> Snapshot:
        state = self.types[device_type]
        waiting = tuple(chain.from_iterable(state.heads.values()))
        usage = DecayedUsage(state.usage, now, self.half_life_s)
        return Snapshot(
            now_s=now,
            device_type=device_type,
            waiting=waiting,
            holding=tuple(state.holding.values()),
            usage=usage,
            shares=self.shares,
        )

    def _grant(
        self,
        device_type: str,
        now: float,
        events: list[tuple[float, int, tuple[float, str], object]],
        outcomes: list[Outcome],
    ) -> None:
        state = self.types[device_type]
        if self._up_from(device_type, now) > now:
            return  # out of service: its _UP event grants what waits
        while state.free and state.waiting_count:
            chosen = self.policy.choose(self.snapshot(device_type, now))
            if chosen is None:
                return
            key = (chosen.level, chosen.project)
            queue = state.queues.get(key, deque())
            item = next((item for item in queue if item[1].id == chosen.id), None)
            if item is None:
                raise ValueError(
                    f"policy {self.policy.name} chose {chosen.id}, which is not waiting"
                )
            queue.remove(item)
            batch = item[0]
            if queue:
                state.heads[key] = tuple(w for _, w in islice(queue, self.policy.window))
            else:
                del state.queues[key], state.heads[key]
            state.waiting_count -= 1
            qpu = state.free.pop(0)
            state.holding[qpu] = Holding(batch.id, batch.project, now)
            end = self._end(batch, now)
            outcomes.append(Outcome(batch, qpu, now, end))
            heapq.heappush(events, (end, _END, (0.0, qpu), None))
