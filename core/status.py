"""Batch and job statuses, and the only moves between them.

The names are the SDK's (`pasqal_cloud.BatchStatus` / `JobStatus`) so they go on the wire as they
are. The SDK has no PAUSED, and no TIMED_OUT for jobs: we never emit them.

Status changes happen only inside Lua scripts (core/lua/), which get these names, sets and
transition tables rendered by `lua_tables()`: no script spells a status itself
(tests/test_vocabulary.py checks), and a move the table does not allow reaches the caller as
`InvalidTransition` (core/replies.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar


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


class WebhookState(StrEnum):
    """Where the announcement of a finished batch to its webhook stands (scheduler/webhooks.py)."""

    #: Due, being made, or waiting to be tried again.
    PENDING = "PENDING"
    #: The receiver answered 2xx.
    DELIVERED = "DELIVERED"
    #: Every attempt failed until `webhook_retry_for_s` after the batch ended, or
    #: `webhook_max_attempts` were made: given up.
    FAILED = "FAILED"


class WebhookOutcome(StrEnum):
    """How one delivery attempt went (an entry of the batch's `webhook_deliveries`)."""

    #: Claimed, the request not answered yet. Recorded before anything is sent, so an attempt
    #: that kills its sender still counts towards the retry window and the cap on attempts.
    SENDING = "sending"
    #: The receiver answered 2xx.
    DELIVERED = "delivered"
    #: Refused before sending, no answer in time, or an answer other than 2xx.
    FAILED = "failed"
    #: Its sender stopped before the answer came (killed, or its claim ran out); the next
    #: claim of the delivery says so.
    LOST = "lost"


class AttemptEnd(StrEnum):
    """How a job's attempt ended when not with its job's own terminal status (DONE, ERROR,
    CANCELED): an entry of its `history`."""

    #: Its worker stopped heart-beating; the job was queued again.
    LOST = "LOST"


class HoldEnd(StrEnum):
    """Why an open batch's hold on its QPU ended (expire_open_batch.lua; the batch is
    TIMED_OUT)."""

    #: No job for the open-batch idle timeout.
    IDLE = "idle"
    #: No job for the shorter idle timeout that applies while another project waits.
    CONTENDED_IDLE = "contended_idle"
    #: Held its QPU for the longest hold while another project waits.
    MAX_HOLD = "max_hold"


class LoginStep(StrEnum):
    """The steps of a password login the backoff record hears of (login_backoff.lua)."""

    #: Before the password is checked: may this (user, address) try now?
    CHECK = "check"
    #: After: the password was wrong, or right.
    FAILED = "failed"
    SUCCEEDED = "succeeded"


#: Every move a job makes, and nothing else.
JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # PENDING -> RUNNING: a worker claimed it; -> CANCELED: cancelled before any worker did.
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.CANCELED}),
    # RUNNING -> PENDING: its worker was lost and the reconciler queues it again; -> ERROR: it
    # failed, or its worker was lost `max_attempts` times.
    JobStatus.RUNNING: frozenset(
        {JobStatus.DONE, JobStatus.ERROR, JobStatus.CANCELED, JobStatus.PENDING}
    ),
    JobStatus.DONE: frozenset(),
    JobStatus.ERROR: frozenset(),
    JobStatus.CANCELED: frozenset(),
}

#: Every move a batch makes. Nothing ends a batch ERROR: the SDK knows the status, but a closed
#: batch whose jobs failed ends DONE, as on Pasqal Cloud.
BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    # PENDING -> DONE: a closed batch whose every job was cancelled before it got a QPU.
    BatchStatus.PENDING: frozenset({BatchStatus.RUNNING, BatchStatus.DONE, BatchStatus.CANCELED}),
    # RUNNING -> TIMED_OUT: an open batch that held its QPU too long (core/lua/expire_open_batch).
    BatchStatus.RUNNING: frozenset({BatchStatus.DONE, BatchStatus.CANCELED, BatchStatus.TIMED_OUT}),
    BatchStatus.DONE: frozenset(),
    BatchStatus.ERROR: frozenset(),
    BatchStatus.CANCELED: frozenset(),
    BatchStatus.TIMED_OUT: frozenset(),
}

TERMINAL_JOB_STATUSES = frozenset(s for s, nxt in JOB_TRANSITIONS.items() if not nxt)
TERMINAL_BATCH_STATUSES = frozenset(s for s, nxt in BATCH_TRANSITIONS.items() if not nxt)


E = TypeVar("E", bound=StrEnum)

#: The wire words of the enums above by the name the Lua prelude gives them: scripts say
#: `JOB.PENDING` or `HOLD_END.IDLE`, never the word (tests/test_vocabulary.py greps them).
LUA_NAMES: dict[str, type[StrEnum]] = {
    "JOB": JobStatus,
    "BATCH": BatchStatus,
    "DEVICE": DeviceStatus,
    "WEBHOOK": WebhookState,
    "WEBHOOK_ATTEMPT": WebhookOutcome,
    "ATTEMPT": AttemptEnd,
    "HOLD_END": HoldEnd,
    "LOGIN": LoginStep,
}


def lua_tables() -> str:
    """The statuses as Lua, prepended to every script (see core/scripts.py): `JOB.PENDING`,
    `BATCH.DONE`, `DEVICE.UP`, `WEBHOOK.PENDING`, `WEBHOOK_ATTEMPT.SENDING`, `ATTEMPT.LOST`,
    `HOLD_END.IDLE` and `LOGIN.CHECK` name them,
    `TERMINAL_JOB[s]` / `TERMINAL_BATCH[s]` test them, `JOB_STATUSES` lists them, and the
    transition tables check every move."""

    def names(name: str, enum: type[StrEnum]) -> str:
        inner = ", ".join(f"{s.name} = '{s.value}'" for s in enum)
        return f"local {name} = {{{inner}}}\n"

    def members(name: str, statuses: frozenset[E]) -> str:
        return f"local {name} = {{{_set(statuses)}}}\n"

    def table(name: str, transitions: Mapping[E, frozenset[E]]) -> str:
        rows = [f"  {src.value} = {{{_set(targets)}}}," for src, targets in transitions.items()]
        return f"local {name} = {{\n" + "\n".join(rows) + "\n}\n"

    job_list = ", ".join(f"'{s.value}'" for s in JobStatus)
    return (
        "".join(names(name, enum) for name, enum in LUA_NAMES.items())
        + f"local JOB_STATUSES = {{{job_list}}}\n"
        + members("TERMINAL_JOB", TERMINAL_JOB_STATUSES)
        + members("TERMINAL_BATCH", TERMINAL_BATCH_STATUSES)
        + table("JOB_TRANSITIONS", JOB_TRANSITIONS)
        + table("BATCH_TRANSITIONS", BATCH_TRANSITIONS)
    )


def _set(statuses: frozenset[E]) -> str:
    return ", ".join(f"{s.value} = true" for s in sorted(statuses))
