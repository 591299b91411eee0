"""A cluster's stored history as a trace (`tweezer trace export`), so a lab can replay its own
last week under another policy, in `tweezer simulate` or against a cluster.

Each batch becomes a trace line: when it was submitted (seconds after the first batch
exported; the header keeps that origin), who submitted it, its priority and device type,
open or not, and its jobs: their shots, their QPU seconds and, in an open batch, how long after
the previous job's end each was added (its think time). A job's QPU seconds are its run time
(0 for a job that never ran) scaled so that the batch's jobs and think times add up to the time
it held its QPU: a replay keeps the batch's timing. What happened (start, end, QPU, status)
comes along.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from core.device_status import DeviceStatuses
from core.priorities import Priority
from core.records import Batch, Job
from core.status import BatchStatus
from core.store import BatchQuery, Page, Store
from core.timefmt import SECOND_US
from lab.traces import TraceBatch, TraceJob

PAGE = 500


def stored_batches(store: Store, since_us: int | None) -> Iterator[tuple[Batch, list[Job]]]:
    """Every batch created at or after `since_us`, oldest first, with its jobs in creation
    order; read a page at a time."""
    offset = 0
    while True:
        page = Page(offset=offset, limit=PAGE, desc=False)
        _, batches = store.query_batches(BatchQuery(start_us=since_us), page)
        for batch in batches:
            yield batch, store.batch_jobs(batch.id)
        if len(batches) < PAGE:
            return
        offset += PAGE


def trace_record(batch: Batch, jobs: list[Job], origin_us: int) -> TraceBatch:
    """One stored batch as a trace line, its times in seconds after `origin_us`."""
    trace_jobs = []
    previous_end: int | None = None
    for job in jobs:
        qpu_s = 0.0
        if job.start_us is not None and job.end_us is not None:
            qpu_s = (job.end_us - job.start_us) / SECOND_US
        think_s = 0.0
        if _added_later(batch, job) and previous_end is not None:
            think_s = max(0.0, (job.created_us - previous_end) / SECOND_US)
        trace_jobs.append(TraceJob(runs=max(1, job.runs), qpu_s=max(0.0, qpu_s), think_s=think_s))
        previous_end = job.end_us if job.end_us is not None else previous_end
    trace_jobs = _held(trace_jobs, batch)
    submit_s = (batch.created_us - origin_us) / SECOND_US
    # Creation times are the cluster's unique, increasing stamps, which a burst of jobs may
    # push a millisecond ahead of the clock that stamps starts: never let a start precede them.
    start_s = _relative(batch.start_us, origin_us)
    start_s = None if start_s is None else max(start_s, submit_s)
    end_s = _relative(batch.end_us, origin_us) if start_s is not None else None
    end_s = None if end_s is None or start_s is None else max(end_s, start_s)
    return TraceBatch(
        id=batch.id,
        submit_s=submit_s,
        project=batch.project_id,
        user=batch.user_id,
        priority=Priority(batch.queue_priority),
        device_type=batch.device_type,
        open=batch.open or any(j.think_s > 0 for j in trace_jobs),
        # A trace line has at least one job: a batch that got none is one of no QPU time.
        jobs=trace_jobs or [TraceJob(runs=1, qpu_s=0.0)],
        start_s=start_s,
        end_s=end_s,
        qpu=batch.qpu,
        status=batch.status.value,
    )


def down_intervals(
    devices: DeviceStatuses, device_types: Iterable[str], origin_us: int, until_us: int
) -> dict[str, list[tuple[float, float]]]:
    """When each device type was out of service, on the trace's clock (seconds after
    `origin_us`), for the trace header."""
    out = {}
    for device_type in device_types:
        spans = [
            (max(0.0, (a - origin_us) / SECOND_US), (b - origin_us) / SECOND_US)
            for a, b in devices.down_intervals(device_type, until_us)
            if b > origin_us
        ]
        if spans:
            out[device_type] = spans
    return out


def _held(jobs: list[TraceJob], batch: Batch) -> list[TraceJob]:
    """The jobs' QPU seconds scaled so that, with the think times, they add up to the time the
    batch held its QPU (start to end): what the simulator and fair share count. The runs alone
    leave out what the platform spends between them (dispatch, claim, commit), which a replay
    must keep to keep the timing."""
    if batch.start_us is None or batch.end_us is None or not jobs:
        return jobs
    computing = (batch.end_us - batch.start_us) / SECOND_US - sum(j.think_s for j in jobs)
    ran = sum(j.qpu_s or 0.0 for j in jobs)
    if computing <= 0:
        return jobs
    scale = computing / ran if ran else 0.0
    return [
        j.model_copy(update={"qpu_s": (j.qpu_s or 0.0) * scale if ran else computing / len(jobs)})
        for j in jobs
    ]


#: The jobs of the request that creates a batch get its creation time + 1 µs each
#: (`next_created` in _base.lua), and a request carries at most this many.
_CREATION_JOBS = 1000


def _added_later(batch: Batch, job: Job) -> bool:
    """A job added after its batch was created: the batch was open then (it may be closed
    now, so `open` alone does not tell)."""
    return job.created_us > batch.created_us + _CREATION_JOBS


def _relative(us: int | None, origin_us: int) -> float | None:
    return None if us is None else max(0.0, (us - origin_us) / SECOND_US)


# -- SWF ------------------------------------------------------------------------------------


def swf_lines(records: Iterable[TraceBatch], origin_s: float) -> Iterator[str]:
    """The trace as SWF 2.2: a closed batch is one SWF job with one processor per job; an open
    batch is a chain of SWF jobs, one per job, each naming the previous as its preceding job
    with the think time (what `tweezer simulate --swf` reads back as the same open batch; one
    of a single job has no chain, so it reads back closed)."""
    yield "; Version: 2.2"
    yield "; Computer: Tweezer (tweezer trace export --swf)"
    yield f"; UnixStartTime: {int(origin_s)}"
    yield "; Note: field 15 queue: 1 HIGH, 2 MEDIUM, 3 LOW; field 13 group: the project"
    users: dict[str, int] = {}
    groups: dict[str, int] = {}
    queue = {Priority.HIGH: 1, Priority.MEDIUM: 2, Priority.LOW: 3}
    number = 0
    for r in records:
        user = users.setdefault(r.user, len(users) + 1)
        group = groups.setdefault(r.project, len(groups) + 1)
        wait = -1.0 if r.start_s is None else r.start_s - r.submit_s
        # SWF status: 1 completed, 5 cancelled, 0 failed.
        status = {BatchStatus.DONE.value: 1, BatchStatus.CANCELED.value: 5}.get(r.status or "", 0)
        parts = [r.jobs] if not r.open else [[job] for job in r.jobs]
        previous = -1
        submit = r.submit_s
        for i, part in enumerate(parts):
            number += 1
            run = sum(job.qpu_s or 0.0 for job in part)
            think = part[0].think_s if i > 0 else -1
            fields = [
                number,
                round(submit),
                round(wait) if i == 0 else -1,
                round(run, 3),
                len(part),
                -1,
                -1,
                len(part),
                -1,
                -1,
                status,
                user,
                group,
                -1,
                queue[r.priority],
                1,
                previous,
                round(think, 3) if previous != -1 else -1,
            ]
            yield " ".join(str(f) for f in fields)
            previous = number
            submit += run + max(0.0, part[0].think_s)
