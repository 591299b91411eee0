"""Workload traces: Tweezer's own JSONL format (docs/traces.md) and the Standard Workload Format
of the Parallel Workloads Archive (SWF 2.2), both read into the simulator's batches.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.priorities import DEFAULT_PRIORITY, Priority
from scheduling.simulator import Outcome, SimBatch, SimJob

FORMAT: Literal["tweezer-trace"] = "tweezer-trace"
VERSION: Literal[1] = 1

#: Bounds on what a trace may ask for (docs/traces.md, "Limits"): a trace is a file someone
#: sent, and each of these numbers turns into work or memory of the simulator and the load
#: driver. Times are on the trace's clock.
MAX_SECONDS = 1e9  # ~31 years: any time or duration
MAX_JOBS_PER_BATCH = 100_000  # jobs of one batch (an SWF job's processors)
MAX_TRACE_JOBS = 5_000_000  # jobs of a whole trace
MAX_RUNS = 10**9
#: SWF job and reference numbers, user, group and queue numbers.
MAX_SWF_NUMBER = 2**53

Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
M = TypeVar("M", bound=BaseModel)


class TraceError(ValueError):
    """A trace line that cannot be read; the message names the file and line."""


class TraceJob(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    runs: Annotated[int, Field(ge=1, le=MAX_RUNS)] = 1
    #: QPU seconds the job took (or takes); absent: `default_qpu_s` of the reader.
    qpu_s: Seconds | None = None
    #: Open batches: seconds between the previous job's results and this job being added.
    think_s: Seconds = 0.0


class TraceBatch(BaseModel):
    """One line of a trace: a batch as submitted, and (in recorded traces) what happened."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: Annotated[str, Field(min_length=1, max_length=200)]
    submit_s: Seconds
    project: str
    user: str
    priority: Priority = DEFAULT_PRIORITY
    device_type: str = "EMU_FREE"
    open: bool = False
    jobs: Annotated[list[TraceJob], Field(min_length=1, max_length=MAX_JOBS_PER_BATCH)]
    # Recorded by `tweezer load` / `tweezer trace export` (the next issue); ignored here.
    start_s: Seconds | None = None
    end_s: Seconds | None = None
    qpu: str | None = None
    status: str | None = None


class TraceHeader(BaseModel):
    """The optional first line: what the trace is, and what produced it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    format: Literal["tweezer-trace"] = FORMAT
    version: Literal[1] = VERSION
    #: `simulate`, `load` or `export`: where the outcomes (start_s, end_s, qpu) come from.
    source: str | None = None
    #: The policy and the cluster's QPUs per device type and shares, when known.
    policy: str | None = None
    qpus: dict[str, Annotated[int, Field(ge=0, le=1000)]] | None = None
    shares: dict[str, Annotated[float, Field(gt=0, le=1e6)]] | None = None
    #: The Unix time `submit_s` 0 stands for, when the trace comes from a real cluster.
    origin_s: Annotated[float, Field(ge=0, le=1e11, allow_inf_nan=False)] | None = None
    #: When each device type was out of service (not UP, or calibrating): [from_s, to_s]
    #: intervals on the trace's clock (recorded runs only).
    down: dict[str, list[tuple[Seconds, Seconds]]] | None = None


def read_records(path: Path) -> tuple[TraceHeader, list[TraceBatch]]:
    """A JSONL trace's header (a default one if the file has none) and its lines."""
    header = TraceHeader()
    records = []
    jobs = 0
    for number, line in _lines(path):
        data = _json(path, number, line)
        if number == 1 and isinstance(data, dict) and "format" in data:
            header = _model(TraceHeader, data, path, number)
            continue
        records.append(_model(TraceBatch, data, path, number))
        jobs += len(records[-1].jobs)
        if jobs > MAX_TRACE_JOBS:
            raise TraceError(f"{path}:{number}: more than {MAX_TRACE_JOBS:,} jobs in the trace")
    return header, records


def read_trace(path: Path, default_qpu_s: float = 1.0) -> list[SimBatch]:
    """The batches of a JSONL trace, in file order (the first line may be the header)."""
    return read_trace_with_header(path, default_qpu_s)[1]


def read_trace_with_header(
    path: Path, default_qpu_s: float = 1.0
) -> tuple[TraceHeader, list[SimBatch]]:
    """A JSONL trace's header (a default one if it has none) and its batches, in file order."""
    header, records = read_records(path)
    batches = [sim_batch(record, default_qpu_s) for record in records]
    _unique(batches, path)
    return header, batches


def sim_batch(record: TraceBatch, default_qpu_s: float = 1.0) -> SimBatch:
    """A trace line as the simulator's batch."""
    jobs = tuple(
        SimJob(
            qpu_s=default_qpu_s if job.qpu_s is None else job.qpu_s,
            runs=job.runs,
            think_s=job.think_s if record.open else 0.0,
        )
        for job in record.jobs
    )
    return SimBatch(
        id=record.id,
        project=record.project,
        user=record.user,
        priority=record.priority.value,
        device_type=record.device_type,
        submit_s=record.submit_s,
        open=record.open,
        jobs=jobs,
    )


def record_of(batch: SimBatch, outcome: Outcome | None, status: str | None) -> TraceBatch:
    """A simulated batch, and what happened to it, as a trace line."""
    return TraceBatch(
        id=batch.id,
        submit_s=batch.submit_s,
        project=batch.project,
        user=batch.user,
        priority=Priority(batch.priority),
        device_type=batch.device_type,
        open=batch.open,
        jobs=[TraceJob(runs=j.runs, qpu_s=j.qpu_s, think_s=j.think_s) for j in batch.jobs],
        start_s=None if outcome is None else outcome.start_s,
        end_s=None if outcome is None else outcome.end_s,
        qpu=None if outcome is None else outcome.qpu,
        status=status,
    )


def trace_lines(header: TraceHeader, records: Iterable[TraceBatch]) -> Iterator[str]:
    """The trace as JSONL lines: the header, then one per batch (fields sorted: the same
    records always give the same bytes)."""
    yield json.dumps(header.model_dump(exclude_none=True), sort_keys=True)
    for record in records:
        yield json.dumps(record.model_dump(mode="json", exclude_none=True), sort_keys=True)


def write_trace(path: Path, header: TraceHeader, records: Iterable[TraceBatch]) -> None:
    path.write_text("".join(line + "\n" for line in trace_lines(header, records)))


# -- SWF ------------------------------------------------------------------------------------

#: SWF queue number (field 15) -> priority; anything else is MEDIUM.
SWF_QUEUES = {1: Priority.HIGH, 2: Priority.MEDIUM, 3: Priority.LOW}


@dataclass
class _SwfJob:
    number: int
    submit_s: float
    run_s: float
    processors: int
    user: str
    group: str
    priority: str
    preceding: int
    think_s: float


def read_swf(path: Path, device_type: str) -> list[SimBatch]:
    """The batches of an SWF file (docs/traces.md, "SWF"): each job is a closed batch holding
    its QPU for its run time, with one job per processor; a job naming a preceding job (fields
    17-18) is added to that job's batch, which becomes open, after the think time. Jobs whose
    submit or run time is unknown (-1) are skipped: there is nothing to simulate."""
    jobs: dict[int, _SwfJob] = {}
    total = 0
    for number, line in _lines(path):
        if line.startswith(";"):
            continue  # header comments
        fields = line.split()
        if len(fields) != 18:
            raise TraceError(f"{path}:{number}: an SWF line has 18 fields, this one {len(fields)}")
        values = [_swf_number(path, number, i, text) for i, text in enumerate(fields)]
        submit, run = values[1], values[3]
        if submit < 0 or run < 0:
            continue
        processors = int(values[4]) if values[4] > 0 else int(values[7]) if values[7] > 0 else 1
        if processors > MAX_JOBS_PER_BATCH:
            field = SWF_FIELDS[4 if values[4] > 0 else 7]
            raise TraceError(
                f"{path}:{number}: field {field}: {processors} processors, more than the "
                f"{MAX_JOBS_PER_BATCH:,} jobs a batch may hold"
            )
        total += processors
        if total > MAX_TRACE_JOBS:
            raise TraceError(f"{path}:{number}: more than {MAX_TRACE_JOBS:,} jobs in the trace")
        job = _SwfJob(
            number=int(values[0]),
            submit_s=submit,
            run_s=run,
            processors=processors,
            user=_id(values[11]),
            group=_id(values[12]),
            priority=SWF_QUEUES.get(int(values[14]), Priority.MEDIUM).value,
            preceding=int(values[16]),
            think_s=max(0.0, values[17]),
        )
        jobs[job.number] = job
    return _swf_batches(jobs, device_type)


#: The 18 SWF fields, by position, as error messages name them.
SWF_FIELDS = (
    "1 (job number)",
    "2 (submit time)",
    "3 (wait time)",
    "4 (run time)",
    "5 (allocated processors)",
    "6 (average CPU time)",
    "7 (used memory)",
    "8 (requested processors)",
    "9 (requested time)",
    "10 (requested memory)",
    "11 (status)",
    "12 (user id)",
    "13 (group id)",
    "14 (executable)",
    "15 (queue)",
    "16 (partition)",
    "17 (preceding job)",
    "18 (think time)",
)
#: Fields that are times in seconds (bounded by MAX_SECONDS); the others are counts or ids.
_SWF_TIMES = frozenset({1, 2, 3, 5, 8, 17})


def _swf_number(path: Path, number: int, index: int, text: str) -> float:
    """SWF field `index` (0-based) of line `number`: a finite number within its bounds
    (-1 is SWF's "unknown"); TraceError naming the line and the field otherwise."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    bound = MAX_SECONDS if index in _SWF_TIMES else MAX_SWF_NUMBER
    if not math.isfinite(value) or not -1 <= value <= bound:
        raise TraceError(
            f"{path}:{number}: field {SWF_FIELDS[index]}: {text!r} is not a number from -1 "
            f"to {bound:g}"
        )
    return value


def _swf_batches(jobs: dict[int, _SwfJob], device_type: str) -> list[SimBatch]:
    """Chains of preceding jobs become one open batch, rooted at the first job of the chain."""
    root: dict[int, int] = {}
    members: dict[int, list[_SwfJob]] = {}
    for number in sorted(jobs):
        # A preceding job comes earlier in the file (a smaller number); any other reference
        # (unknown, skipped, or later) starts a chain of its own.
        preceding = jobs[number].preceding
        root[number] = root[preceding] if 0 < preceding < number and preceding in root else number
        members.setdefault(root[number], []).append(jobs[number])
    batches = []
    for first, chain in members.items():
        head = jobs[first]
        chain.sort(key=lambda j: (j.submit_s, j.number))
        sim_jobs: list[SimJob] = []
        for i, job in enumerate(chain):
            share = job.run_s / job.processors
            think = job.think_s if i > 0 else 0.0
            sim_jobs.append(SimJob(qpu_s=share, think_s=think))
            sim_jobs.extend(SimJob(qpu_s=share) for _ in range(job.processors - 1))
        batches.append(
            SimBatch(
                id=str(first),
                project=head.group,
                user=head.user,
                priority=head.priority,
                device_type=device_type,
                submit_s=head.submit_s,
                open=len(chain) > 1,
                jobs=tuple(sim_jobs),
            )
        )
    batches.sort(key=lambda b: (b.submit_s, int(b.id)))
    return batches


def _id(value: float) -> str:
    """An SWF user or group number as a name; -1 (unknown) is `unknown`."""
    return "unknown" if value < 0 else str(int(value))


# -- shared -----------------------------------------------------------------------------------


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if line:
                yield number, line


def _json(path: Path, number: int, line: str) -> object:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise TraceError(f"{path}:{number}: not JSON: {exc}") from None


def _model(model: type[M], data: object, path: Path, number: int) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'line'}: {e['msg']}" for e in exc.errors()
        )
        raise TraceError(f"{path}:{number}: {problems}") from None


def _unique(batches: Iterable[SimBatch], path: Path) -> None:
    seen: set[str] = set()
    for batch in batches:
        if batch.id in seen:
            raise TraceError(f"{path}: batch id {batch.id!r} appears twice")
        seen.add(batch.id)
