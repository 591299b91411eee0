"""A run is a trace with its outcomes (from `tweezer simulate`, `tweezer load` or
`tweezer trace export`): the batches and, for each that started, when and on which QPU. Runs
of the same workload are what `tweezer report` compares.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lab.traces import TraceError, TraceHeader, read_records, sim_batch
from scheduling.simulator import Outcome, SimBatch


@dataclass(frozen=True)
class Run:
    name: str
    header: TraceHeader
    batches: list[SimBatch]
    outcomes: list[Outcome]
    #: QPUs per device type: the header's, else those the outcomes name.
    qpus: dict[str, int]

    @property
    def shares(self) -> dict[str, float]:
        return dict(self.header.shares or {})

    @property
    def policy(self) -> str:
        return self.header.policy or "unknown"


def read_run(path: Path) -> Run:
    """A trace with outcomes; a batch without `start_s`/`end_s` never started."""
    header, records = read_records(path)
    batches, outcomes = [], []
    for record in records:
        batch = sim_batch(record)
        batches.append(batch)
        if record.start_s is not None and record.end_s is not None:
            if record.end_s < record.start_s or record.start_s < record.submit_s:
                raise TraceError(
                    f"{path}: batch {record.id} ends before it starts or starts "
                    "before it was submitted"
                )
            outcomes.append(Outcome(batch, record.qpu or "", record.start_s, record.end_s))
    if not outcomes:
        raise TraceError(f"{path}: no batch has a start and an end: not a run to report on")
    outcomes.sort(key=lambda o: (o.start_s, o.batch.id))
    qpus = dict(header.qpus or {}) or _qpus_named(outcomes)
    name = path.parent.name if path.name == "trace.jsonl" else path.stem
    return Run(name, header, batches, outcomes, qpus)


def _qpus_named(outcomes: list[Outcome]) -> dict[str, int]:
    """QPUs per device type, as many as the outcomes name (at least one per type)."""
    named: dict[str, set[str]] = {}
    for o in outcomes:
        named.setdefault(o.batch.device_type, set()).add(o.qpu)
    return {device_type: len(names) for device_type, names in sorted(named.items())}


def segments(outcome: Outcome) -> Iterator[tuple[float, float, bool]]:
    """(from, to, computing) pieces of a batch's hold of its QPU: an open batch thinks, held
    idle, before each job it adds; every job then computes for its QPU seconds."""
    t = outcome.start_s
    for job in outcome.batch.jobs:
        if job.think_s > 0 and outcome.batch.open:
            yield t, t + job.think_s, False
            t += job.think_s
        yield t, t + job.qpu_s, True
        t += job.qpu_s
