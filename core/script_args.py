"""What each Lua script of core/lua/ takes, by name: one frozen dataclass per script.

A script's arguments are its dataclass's fields, in order. The Python side builds the dataclass
(`scripts.run(DispatchArgs(now=..., qpu=..., ...), keys=...)`); `argv()` renders ARGV from it; the
Lua side reads the same names from the table `A` that core/scripts.py renders into the
script's prelude from the same fields (`A.now`, `A.qpu`, ...). A field typed as a tuple comes
last and takes the rest of ARGV (`A.job_ids` is then a Lua list). Each script's header lists its
fields as `-- A.<name>: ...` lines, in order; tests/test_vocabulary.py holds the header, the
script's uses of `A.*` and the dataclass to one another.

Values go to Redis as text: ints and strs as they are, floats by `repr`, None as '' (the Lua
side's "none"), JSON documents already encoded by the caller (their shape is documented on the
field).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, get_type_hints

#: Redis's own arguments; the script's follow it (core/scripts.py: NS is ARGV[1]).
FIRST_ARG = 2


@dataclass(frozen=True)
class ScriptArgs:
    """The arguments of the script named `SCRIPT`."""

    SCRIPT: ClassVar[str]

    def argv(self) -> list[str | int | float]:
        out: list[str | int | float] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                out.extend(_one(v) for v in value)
            else:
                out.append(_one(value))
        return out

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def rest(cls) -> str | None:
        """The field that takes the rest of ARGV, if any (a tuple, always the last field)."""
        hints = get_type_hints(cls)
        last = dataclasses.fields(cls)[-1:] if dataclasses.fields(cls) else []
        for f in last:
            if str(hints[f.name]).startswith("tuple"):
                return f.name
        return None

    @classmethod
    def lua(cls) -> str:
        """The prelude's `A` for this script: each field from its ARGV position."""
        lines = ["local A = {}"]
        rest = cls.rest()
        for index, name in enumerate(cls.names(), start=FIRST_ARG):
            if name == rest:
                lines.append(f"A.{name} = rest_argv({index})")
            else:
                lines.append(f"A.{name} = ARGV[{index}]")
        return "\n".join(lines) + "\n"


def _one(value: object) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, bool):  # redis-py refuses bools; say which script's field is wrong
        raise TypeError("a script argument is never a bool: pass 1/0 or a word")
    if isinstance(value, str | int | float):
        return value
    raise TypeError(f"a script argument is text or a number, not {type(value).__name__}")


# -- batches and jobs (the API) ---------------------------------------------------------------


@dataclass(frozen=True)
class CreateBatchArgs(ScriptArgs):
    SCRIPT = "create_batch"
    now: int
    #: JSON object: core/records.py Batch.creation_fields.
    batch: str
    #: JSON array of Job.creation_fields objects.
    jobs: str
    #: The Idempotency-Key's Redis key ('' for none), the request's fingerprint, its TTL (ms).
    idempotency_key: str
    fingerprint: str
    idempotency_ttl_ms: int
    #: core/audit.py Audit.arg().
    audit: str
    #: The jobs' own sequences, each once (JSON object: sha256 -> text).
    sequences: str
    #: The project's stored-bytes limit unless it has its own (0: none).
    max_stored_bytes: int


@dataclass(frozen=True)
class AddJobsArgs(ScriptArgs):
    SCRIPT = "add_jobs"
    now: int
    batch_id: str
    jobs: str
    idempotency_key: str
    fingerprint: str
    idempotency_ttl_ms: int
    audit: str
    sequences: str
    max_stored_bytes: int


@dataclass(frozen=True)
class CloseBatchArgs(ScriptArgs):
    SCRIPT = "close_batch"
    now: int
    batch_id: str
    audit: str


@dataclass(frozen=True)
class CancelBatchArgs(ScriptArgs):
    SCRIPT = "cancel_batch"
    now: int
    #: JSON array, in the order of KEYS.
    batch_ids: str
    audit: str


@dataclass(frozen=True)
class CancelJobsArgs(ScriptArgs):
    SCRIPT = "cancel_jobs"
    now: int
    batch_id: str
    #: JSON array.
    job_ids: str
    audit: str


@dataclass(frozen=True)
class SetTagsArgs(ScriptArgs):
    SCRIPT = "set_tags"
    now: int
    batch_id: str
    #: JSON array of strings.
    tags: str
    audit: str


@dataclass(frozen=True)
class IdempotencyCheckArgs(ScriptArgs):
    SCRIPT = "idempotency_check"
    fingerprint: str


@dataclass(frozen=True)
class QueryArgs(ScriptArgs):
    SCRIPT = "query"
    #: JSON object (core/store.py BatchQuery/JobQuery as query.lua's header describes).
    query: str


@dataclass(frozen=True)
class HashRowsArgs(ScriptArgs):
    SCRIPT = "hash_rows"
    #: JSON array of field names.
    fields: str


@dataclass(frozen=True)
class ReadSnapshotArgs(ScriptArgs):
    SCRIPT = "read_snapshot"
    device_type: str
    #: JSON array, highest first.
    priorities: str
    window: int


@dataclass(frozen=True)
class PurgeInputsArgs(ScriptArgs):
    SCRIPT = "purge_inputs"
    now: int
    cutoff_us: int
    most: int


@dataclass(frozen=True)
class MigrateArgs(ScriptArgs):
    SCRIPT = "migrate"


# -- QPUs (the scheduler) ---------------------------------------------------------------------


@dataclass(frozen=True)
class AcquireQpuArgs(ScriptArgs):
    SCRIPT = "acquire_qpu"
    now: int
    qpu: str
    device_type: str
    #: The new lease's token.
    token: str
    ttl_ms: int
    #: The batch to grant ('' asks whether anything waits to be chosen).
    candidate: str
    #: JSON array, highest first.
    priorities: str


@dataclass(frozen=True)
class RenewLeaseArgs(ScriptArgs):
    SCRIPT = "renew_lease"
    token: str
    epoch: int
    ttl_ms: int


@dataclass(frozen=True)
class ReleaseQpuArgs(ScriptArgs):
    SCRIPT = "release_qpu"
    now: int
    token: str
    epoch: int
    half_life_s: float


@dataclass(frozen=True)
class DispatchArgs(ScriptArgs):
    SCRIPT = "dispatch"
    now: int
    qpu: str
    token: str
    epoch: int
    #: Jobs the QPU runs at once.
    pool: int
    timeout_ms: int
    #: Predicted seconds of work per message (0: one job per message).
    chunk_s: float
    #: Most jobs per message.
    max_chunk: int


@dataclass(frozen=True)
class ReconcileArgs(ScriptArgs):
    SCRIPT = "reconcile"
    now: int
    token: str
    epoch: int
    max_attempts: int


@dataclass(frozen=True)
class ExpireOpenBatchArgs(ScriptArgs):
    SCRIPT = "expire_open_batch"
    now: int
    token: str
    epoch: int
    idle_us: int
    #: The idle timeout while another project waits.
    contended_idle_us: int
    max_hold_us: int
    #: JSON array, highest first.
    priorities: str


@dataclass(frozen=True)
class DeviceStatusArgs(ScriptArgs):
    SCRIPT = "device_status"
    now: int
    device_types: tuple[str, ...]


@dataclass(frozen=True)
class OverviewArgs(ScriptArgs):
    SCRIPT = "overview"
    now: int
    #: JSON arrays: the device types served, the priorities (highest first), the configured
    #: QPUs.
    device_types: str
    priorities: str
    qpus: str
    window_s: float


# -- jobs (the workers) -----------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimJobsArgs(ScriptArgs):
    SCRIPT = "claim_jobs"
    now: int
    delivery: str
    ttl_ms: int
    #: host:pid, shown in the jobs' history.
    worker: str
    #: In the order they will run.
    job_ids: tuple[str, ...]


@dataclass(frozen=True)
class HeartbeatArgs(ScriptArgs):
    SCRIPT = "heartbeat"
    now: int
    delivery: str
    ttl_ms: int
    #: The job running now ('' for none) and its shots done so far.
    current: str
    shots_done: int
    #: The delivery's jobs not committed yet.
    job_ids: tuple[str, ...]


@dataclass(frozen=True)
class CommitJobsArgs(ScriptArgs):
    SCRIPT = "commit_jobs"
    now: int
    delivery: str
    #: Six per job (COMMIT_FIELDS): job id, DONE or ERROR, payload (the results document or
    #: the error message), started_us and seconds as measured by the worker ('' when not),
    #: and what the worker noted on the run (a JSON array of strings, '' for nothing).
    outcomes: tuple[str | int, ...]


#: The fields of each job in CommitJobsArgs.outcomes, in order.
COMMIT_FIELDS = ("job_id", "outcome", "payload", "started_us", "seconds", "warnings")


# -- webhooks, limits -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimWebhooksArgs(ScriptArgs):
    SCRIPT = "claim_webhooks"
    now: int
    lease_us: int
    most: int
    #: How long after its batch ended a delivery is tried.
    retry_for_us: int
    max_attempts: int
    #: The attempt to record (compact JSON whose outcome is WEBHOOK_ATTEMPT.SENDING).
    attempt: str


@dataclass(frozen=True)
class WebhookAttemptArgs(ScriptArgs):
    SCRIPT = "webhook_attempt"
    batch_id: str
    #: The attempt's index in the delivery's list (0-based) and the attempt (JSON).
    index: int
    attempt: str
    #: The delivery's state now (WEBHOOK.*) and when the next attempt is due (µs, or 0).
    state: str
    next_us: int


@dataclass(frozen=True)
class RateLimitArgs(ScriptArgs):
    SCRIPT = "rate_limit"
    now: int
    #: Between requests at the sustained rate.
    interval_us: int
    burst: int


@dataclass(frozen=True)
class LoginBackoffArgs(ScriptArgs):
    SCRIPT = "login_backoff"
    now: int
    #: LOGIN.* (core/status.py LoginStep).
    step: str
    free_failures: int
    max_delay_us: int


#: Every script's argument type, by script name.
ARGS: dict[str, type[ScriptArgs]] = {
    cls.SCRIPT: cls
    for cls in (
        CreateBatchArgs,
        AddJobsArgs,
        CloseBatchArgs,
        CancelBatchArgs,
        CancelJobsArgs,
        SetTagsArgs,
        IdempotencyCheckArgs,
        QueryArgs,
        HashRowsArgs,
        ReadSnapshotArgs,
        PurgeInputsArgs,
        MigrateArgs,
        AcquireQpuArgs,
        RenewLeaseArgs,
        ReleaseQpuArgs,
        DispatchArgs,
        ReconcileArgs,
        ExpireOpenBatchArgs,
        DeviceStatusArgs,
        OverviewArgs,
        ClaimJobsArgs,
        HeartbeatArgs,
        CommitJobsArgs,
        ClaimWebhooksArgs,
        WebhookAttemptArgs,
        RateLimitArgs,
        LoginBackoffArgs,
    )
}
