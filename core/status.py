"""Batch and job statuses, and the only moves between them.

The names are the SDK's (`pasqal_cloud.BatchStatus` / `JobStatus`) so they go on the wire as they
are. The SDK has no PAUSED, and no TIMED_OUT for jobs: we never emit them.

Status changes happen inside Lua scripts (core/lua/), which get these same tables rendered by
`lua_tables()`. Both sides therefore enforce one table, and `check_job_transition` /
`check_batch_transition` are the Python guard for code paths that decide before calling Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from core.errors import InvalidTransition


class JobStatus(StrEnum):
    #: Waiting for its batch to hold a QPU, or dispatched and not yet picked up by a worker.
    PENDING = "PENDING"
    #: A worker claimed it and is emulating it.
    RUNNING = "RUNNING"
    #: Results are stored.
    DONE = "DONE"
    #: The job could not be built or emulated, or its worker was lost `max_attempts` times.
    ERROR = "ERROR"
    #: Cancelled by a user (alone, by filter, or with its batch).
    CANCELED = "CANCELED"


class BatchStatus(StrEnum):
    #: Queued for a QPU of its device type.
    PENDING = "PENDING"
    #: Holds a QPU: only its jobs run there.
    RUNNING = "RUNNING"
    #: Closed and every job terminal (even if some jobs ended ERROR, as on Pasqal Cloud).
    DONE = "DONE"
    #: A batch-level failure.
    ERROR = "ERROR"
    #: Cancelled by a user.
    CANCELED = "CANCELED"
    #: An open batch left idle past the open-batch timeout.
    TIMED_OUT = "TIMED_OUT"


class DeviceStatus(StrEnum):
    """A device type's status, shown on its batches as `device_status`."""

    #: Batches start and run.
    UP = "UP"
    #: Broken: nothing starts; a running batch pauses (its jobs wait, none is lost).
    DOWN = "DOWN"
    #: Planned work: as DOWN.
    MAINTENANCE = "MAINTENANCE"
    #: Inside a calibration window: as DOWN until the window ends.
    CALIBRATING = "CALIBRATING"


JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.CANCELED, JobStatus.ERROR}),
    # RUNNING -> PENDING: its worker was lost and the reconciler queues it again.
    JobStatus.RUNNING: frozenset(
        {JobStatus.DONE, JobStatus.ERROR, JobStatus.CANCELED, JobStatus.PENDING}
    ),
    JobStatus.DONE: frozenset(),
    JobStatus.ERROR: frozenset(),
    JobStatus.CANCELED: frozenset(),
}

BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.PENDING: frozenset(
        {BatchStatus.RUNNING, BatchStatus.DONE, BatchStatus.CANCELED, BatchStatus.ERROR}
    ),
    BatchStatus.RUNNING: frozenset(
        {BatchStatus.DONE, BatchStatus.CANCELED, BatchStatus.ERROR, BatchStatus.TIMED_OUT}
    ),
    BatchStatus.DONE: frozenset(),
    BatchStatus.ERROR: frozenset(),
    BatchStatus.CANCELED: frozenset(),
    BatchStatus.TIMED_OUT: frozenset(),
}

TERMINAL_JOB_STATUSES = frozenset(s for s, nxt in JOB_TRANSITIONS.items() if not nxt)
TERMINAL_BATCH_STATUSES = frozenset(s for s, nxt in BATCH_TRANSITIONS.items() if not nxt)
#: Jobs that still occupy their batch (it cannot finish while one is left).
ACTIVE_JOB_STATUSES = frozenset({JobStatus.PENDING, JobStatus.RUNNING})


def check_job_transition(job_id: str, current: str, requested: JobStatus) -> None:
    """Raises InvalidTransition unless `current -> requested` is in JOB_TRANSITIONS."""
    if requested not in JOB_TRANSITIONS.get(JobStatus(current), frozenset()):
        raise InvalidTransition("job", job_id, current, requested)


def check_batch_transition(batch_id: str, current: str, requested: BatchStatus) -> None:
    """Raises InvalidTransition unless `current -> requested` is in BATCH_TRANSITIONS."""
    if requested not in BATCH_TRANSITIONS.get(BatchStatus(current), frozenset()):
        raise InvalidTransition("batch", batch_id, current, requested)


E = TypeVar("E", JobStatus, BatchStatus)


def lua_tables() -> str:
    """The transition tables as Lua, prepended to every script (see core/scripts.py)."""

    def table(name: str, transitions: Mapping[E, frozenset[E]]) -> str:
        rows = []
        for src, targets in transitions.items():
            inner = ", ".join(f"{t.value} = true" for t in sorted(targets))
            rows.append(f"  {src.value} = {{{inner}}},")
        return f"local {name} = {{\n" + "\n".join(rows) + "\n}\n"

    return table("JOB_TRANSITIONS", JOB_TRANSITIONS) + table("BATCH_TRANSITIONS", BATCH_TRANSITIONS)
