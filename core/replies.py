"""What the Lua scripts answer, declared once and decoded in one place.

Every script replies with a list whose first item is a `Reply` code (rendered into the Lua
prelude as `R.*`, so no script spells one itself), followed by that code's values. The
`decode_*` functions below turn a script's reply into a typed result for its caller, and every
refusal into the `TweezerError` the API renders as a 4xx: a caller never compares a reply
string. A script that finds a status move its transition table forbids aborts with an error
reply `TWEEZER invalid_transition ...` (`raise_transition`), which `Scripts.run` turns into
`InvalidTransition` (409) the same way.

The few scripts that answer data rather than an outcome (query, device_status, purge_inputs,
overview, hash_rows, read_snapshot) document their reply in their header and are decoded by
their single caller.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from core import quotas
from core.errors import BatchClosed, Conflict, InvalidTransition, NotFound, TweezerError
from core.status import HoldEnd


class Reply(StrEnum):
    """The first item of a script's reply."""

    #: Done as asked.
    OK = "ok"
    #: create_batch: the batch is stored; its and its jobs' creation times follow.
    CREATED = "created"
    #: An earlier request with the same Idempotency-Key did it; the batch id follows.
    REPLAY = "replay"
    #: The Idempotency-Key was used for a different request.
    KEY_REUSED = "key_reused"
    #: A project quota refuses it: name, limit, in use[, needed].
    QUOTA = "quota"
    #: No such batch: its id follows.
    NOT_FOUND = "not_found"
    #: The record's status forbids it: entity, id, current status, requested status.
    INVALID_TRANSITION = "invalid_transition"
    #: The batch is closed and takes no jobs: its id and status follow.
    CLOSED = "closed"
    #: acquire_qpu: the QPU is granted; batch id and fencing epoch follow.
    ACQUIRED = "acquired"
    #: acquire_qpu: another lease holds the QPU.
    HELD = "held"
    #: Nothing to do: no batch waits for the QPU (acquire_qpu), none runs on it (dispatch).
    NOTHING = "nothing"
    #: acquire_qpu: the QPU is free and batches wait: the policy chooses, then asks again.
    CHOOSE = "choose"
    #: acquire_qpu / dispatch: the device is not UP; its status follows.
    PAUSED = "paused"
    #: A scheduler write whose lease or epoch is no longer current: nothing was written.
    FENCED = "fenced"
    #: release_qpu: the batch still needs the QPU (not finished, or jobs in flight).
    BUSY = "busy"
    #: No longer current: a worker's claim, heartbeat or commit whose delivery no longer owns
    #: the job (its status follows), or a policy's choice that no longer waits (its id).
    STALE = "stale"
    #: expire_open_batch: the batch ended TIMED_OUT; its id and why follow.
    TIMED_OUT = "timed_out"
    #: A rate or login limit: the µs to wait follow.
    LIMITED = "limited"


#: What a script aborts with when a status move is not in the transition table; the Lua side
#: raises it through `raise_transition` in _statuses.lua.
TRANSITION_ERROR_PREFIX = "TWEEZER " + Reply.INVALID_TRANSITION


def lua_replies() -> str:
    """`R.OK`, `R.CREATED`, ... and TRANSITION_ERROR_PREFIX for the Lua prelude
    (core/scripts.py)."""
    inner = ", ".join(f"{code.name} = '{code.value}'" for code in Reply)
    return f"local R = {{{inner}}}\nlocal TRANSITION_ERROR_PREFIX = '{TRANSITION_ERROR_PREFIX}'\n"


def transition_error(message: str) -> InvalidTransition | None:
    """The typed error of a script's `TWEEZER invalid_transition entity id from to` error reply
    (Redis appends where the script failed); None for any other error."""
    if not message.startswith(TRANSITION_ERROR_PREFIX):
        return None
    entity, entity_id, current, requested = message.split()[2:6]
    return InvalidTransition(entity, entity_id, current, requested)


def refusal(reply: Sequence[str]) -> TweezerError | None:
    """The error a refusal reply stands for (None for any other reply)."""
    code, args = reply[0], reply[1:]
    if code == Reply.NOT_FOUND:
        return NotFound(f"Batch {args[0]} not found")
    if code == Reply.INVALID_TRANSITION:
        return InvalidTransition(*args[:4])
    if code == Reply.CLOSED:
        return BatchClosed(args[0], args[1])
    if code == Reply.KEY_REUSED:
        return Conflict(KEY_REUSED)
    if code == Reply.QUOTA:
        return quotas.refusal(args)
    return None


KEY_REUSED = "This Idempotency-Key was already used for a different request"


def ok(reply: Sequence[str]) -> None:
    """A reply that is `ok` or a refusal (raised)."""
    _raise_refusal(reply)


def _raise_refusal(reply: Sequence[str]) -> None:
    error = refusal(reply)
    if error is not None:
        raise error


# -- batches and jobs (core/store.py) ---------------------------------------------------------


@dataclass(frozen=True)
class Created:
    """create_batch: the batch's creation time and its jobs' (µs), in order."""

    created_us: int
    job_created_us: list[int]


@dataclass(frozen=True)
class Replayed:
    """An earlier request with the same Idempotency-Key made (or filled) this batch."""

    batch_id: str


def decode_created(reply: Sequence[str]) -> Created | Replayed:
    """create_batch: refusals (quota, key reused) raise."""
    _raise_refusal(reply)
    if reply[0] == Reply.REPLAY:
        return Replayed(reply[1])
    return Created(int(reply[1]), [int(t) for t in reply[2:]])


def decode_added(reply: Sequence[str]) -> list[int] | Replayed:
    """add_jobs: the new jobs' creation times; refusals (not found, closed, quota, key reused)
    raise."""
    _raise_refusal(reply)
    if reply[0] == Reply.REPLAY:
        return Replayed(reply[1])
    return [int(t) for t in reply[1:]]


def decode_outcomes(
    batch_ids: Sequence[str], reply: Sequence[str]
) -> dict[str, TweezerError | None]:
    """cancel_batch: one reply per batch (JSON: `ok` or a refusal), in the order asked; for each
    batch id, None (cancelled) or the refusal that kept it."""
    return {
        batch_id: refusal(json.loads(item)) for batch_id, item in zip(batch_ids, reply, strict=True)
    }


@dataclass(frozen=True)
class JobsCancelled:
    """cancel_jobs: the jobs it could not cancel, with why."""

    refused: dict[str, str]


def decode_jobs_cancelled(reply: Sequence[str]) -> JobsCancelled:
    """cancel_jobs: `ok` and the refused jobs (a JSON object); a missing batch raises."""
    _raise_refusal(reply)
    refused = json.loads(reply[1])
    # cjson writes an empty table as `{}` and `[]` alike: only the object form has entries.
    return JobsCancelled(refused if isinstance(refused, dict) else {})


def decode_idempotent(reply: Sequence[str]) -> str | None:
    """idempotency_check: the batch an earlier request made under the key, or None; a key used
    for another request raises."""
    _raise_refusal(reply)
    return reply[1] if reply[0] == Reply.REPLAY else None


# -- QPU leases (core/qpu.py) ------------------------------------------------------------------


@dataclass(frozen=True)
class Granted:
    """acquire_qpu: the batch the QPU now runs, and the fencing epoch of the new lease."""

    batch_id: str
    epoch: int


@dataclass(frozen=True)
class Choose:
    """acquire_qpu: the QPU is free and batches wait: the policy chooses, then asks again."""


@dataclass(frozen=True)
class Refused:
    """acquire_qpu: no grant now: the QPU is held, its device paused, nothing waits, or the
    candidate no longer waits here (`why` is the reply code)."""

    why: Reply


def decode_acquired(reply: Sequence[str]) -> Granted | Choose | Refused:
    """acquire_qpu's reply, typed."""
    if reply[0] == Reply.ACQUIRED:
        return Granted(reply[1], int(reply[2]))
    if reply[0] == Reply.CHOOSE:
        return Choose()
    return Refused(Reply(reply[0]))


def decode_fenced_ok(reply: Sequence[str]) -> bool:
    """renew_lease / release_qpu: True when done; False when fenced or (release) still busy."""
    return reply[0] == Reply.OK


@dataclass(frozen=True)
class Dispatch:
    """One dispatch: a chunk of one batch's jobs, which one Celery message carries."""

    #: The delivery id: the fence the worker's claim, heartbeats and commit are checked against.
    delivery_id: str
    #: In the order they are to run.
    job_ids: tuple[str, ...]


def decode_dispatched(reply: Sequence[str]) -> list[Dispatch]:
    """dispatch: the chunks handed out (none when fenced, paused or nothing is left)."""
    if reply[0] != Reply.OK:
        return []
    chunks, rest = [], list(reply[2:])
    while rest:
        delivery, count, rest = rest[0], int(rest[1]), rest[2:]
        chunks.append(Dispatch(delivery, tuple(rest[:count])))
        rest = rest[count:]
    return chunks


@dataclass(frozen=True)
class Reconciled:
    """reconcile: jobs queued again, and jobs ended ERROR after `max_attempts` lost workers."""

    requeued: int = 0
    failed: int = 0


def decode_reconciled(reply: Sequence[str]) -> Reconciled:
    return Reconciled(int(reply[1]), int(reply[2])) if reply[0] == Reply.OK else Reconciled()


def decode_timed_out(reply: Sequence[str]) -> HoldEnd | None:
    """expire_open_batch: why the batch's hold ended (it is TIMED_OUT), or None."""
    return HoldEnd(reply[2]) if reply[0] == Reply.TIMED_OUT else None


# -- workers (core/execution.py) ---------------------------------------------------------------


@dataclass(frozen=True)
class Stale:
    """The delivery no longer owns the job (superseded, duplicate, or the job was cancelled);
    the job's status, or MISSING."""

    status: str


@dataclass(frozen=True)
class ClaimedJob:
    """A job a worker now runs, with its own inputs as stored (core/execution.py reads them)."""

    id: str
    #: How many times the job has started, this claim included.
    attempt: int
    runs: int
    #: JSON, or "" for none.
    variables: str
    #: Its sequence: in its batch's sequences under this hash, or its own copy (older records).
    sequence_sha: str
    sequence: str
    atoms: int
    qpu_s: float


@dataclass(frozen=True)
class Claimed:
    """claim_jobs: the jobs claimed, in order, what their batch and sequences hold, and the
    jobs the delivery no longer owns."""

    jobs: list[ClaimedJob]
    #: The batch's sequence_builder, configuration and backend_configuration ("" for none).
    batch: dict[str, str]
    #: Sequence texts by hash.
    sequences: dict[str, str]
    stale: dict[str, Stale]


def decode_claimed(reply: Sequence[str]) -> Claimed:
    document = json.loads(reply[1])
    # cjson writes an empty table as {}: an empty list here.
    jobs = [
        ClaimedJob(
            id=job["id"],
            attempt=int(job["attempt"]),
            runs=int(job["runs"]),
            variables=job["variables"],
            sequence_sha=job["sequence_sha"],
            sequence=job["sequence"],
            atoms=int(job["atoms"]),
            qpu_s=float(job["qpu_s"]),
        )
        for job in document["claimed"] or []
    ]
    stale = {job_id: Stale(status) for job_id, status in document["stale"] or []}
    return Claimed(jobs, document["batch"] or {}, document["sequences"] or {}, stale)


def decode_stale(reply: Sequence[str]) -> dict[str, Stale]:
    """heartbeat / commit_jobs: the jobs the delivery no longer owns (a heartbeat extended the
    others, a commit stored their outcomes)."""
    items = list(reply[1:])
    return {items[i]: Stale(items[i + 1]) for i in range(0, len(items), 2)}


# -- limits (core/ratelimit.py) ----------------------------------------------------------------


def decode_limited(reply: Sequence[str]) -> int:
    """rate_limit / login_backoff: µs to wait before trying again (0: go ahead)."""
    return int(reply[1]) if reply[0] == Reply.LIMITED else 0
