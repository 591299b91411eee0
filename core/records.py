"""Batch and job records, and how they sit in Redis hashes.

A hash holds only present fields: a missing field is None. Times are integer microseconds (see
core/timefmt.py); JSON-valued fields (variables, errors, tags, configuration) are JSON strings.
Every record carries `user_id` and `project_id`, the two things access control is decided on.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from core.forecasts import Forecast
from core.roles import Role
from core.status import BatchStatus, JobStatus

#: Every field a batch's hash may hold. The Lua scripts read records by these names
#: (`read_record(K.batch(id), 'batch', 'status', 'open')` -> `b.status`, `b.open`), checked
#: against this list as they run; a name missing here is an error, not a silent nil.
BATCH_FIELDS = (
    "id",
    "project_id",
    "user_id",
    "device_type",
    "status",
    "open",
    "queue_priority",
    "tags",
    "sequence_builder",
    "configuration",
    "backend_configuration",
    "webhook",
    "parent_id",
    "predicted_qpu_s",
    "created_us",
    "updated_us",
    #: When it started on a QPU (RUNNING), which QPU, when it ended.
    "start_us",
    "qpu",
    "end_us",
    #: The last time it took a job or ran one (an open batch's idle timeout counts from it).
    "activity_us",
    "jobs_total",
    "runs_total",
    "runs_done",
    #: Bytes of its stored inputs (sequences), and when retention purged them.
    "input_bytes",
    "inputs_purged_us",
    "webhook_state",
)

#: Every field a job's hash may hold (read by name in Lua as BATCH_FIELDS are).
JOB_FIELDS = (
    "id",
    "batch_id",
    "project_id",
    "user_id",
    "status",
    "runs",
    "variables",
    #: Its own sequence, stored once per batch under this sha (`sequence`: records written
    #: before sequences were shared).
    "sequence_sha",
    "sequence",
    "parent_id",
    "warnings",
    "atoms",
    "duration_ns",
    "qpu_s",
    "cost_scale",
    "created_us",
    "updated_us",
    "start_us",
    "end_us",
    "attempts",
    "progress",
    "reserved_bytes",
    "errors",
    "history",
    #: The message it was last handed out in (the fence of claims and commits), and its QPU.
    "delivery",
    "qpu",
)

#: Every field of a project's record the scripts read (core/accounts.py writes it).
PROJECT_FIELDS = ("max_queued_jobs", "max_open_batches", "max_stored_bytes")

#: A (username, address) pair's wrong-password record (login_backoff.lua).
LOGIN_FIELDS = ("failures", "next_us")

#: Records by the name the scripts give them.
RECORD_FIELDS = {
    "batch": BATCH_FIELDS,
    "job": JOB_FIELDS,
    "project": PROJECT_FIELDS,
    "login": LOGIN_FIELDS,
}


def lua_fields() -> str:
    """`FIELDS.<record>`: each record's field names as a set, for `read_record` (core/lua)."""
    records = ", ".join(
        f"{record} = {{{', '.join(f'{name} = true' for name in names)}}}"
        for record, names in RECORD_FIELDS.items()
    )
    return f"local FIELDS = {{{records}}}\n"


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


def _json(value: str | None) -> Any:
    return None if value is None else json.loads(value)


@dataclass
class Batch:
    id: str
    project_id: str
    user_id: str
    device_type: str
    status: BatchStatus
    open: bool
    queue_priority: str
    created_us: int
    updated_us: int
    sequence_builder: str | None = None
    configuration: dict[str, Any] | None = None
    backend_configuration: str | None = None
    tags: list[str] = field(default_factory=list)
    webhook: str | None = None
    parent_id: str | None = None
    start_us: int | None = None
    end_us: int | None = None
    #: The QPU serving the batch, once it started.
    qpu: str | None = None
    #: When its sequences were dropped, `Settings.input_retention_s` after it finished.
    inputs_purged_us: int | None = None
    #: How long it is expected to hold its QPU (core/costs.py): what it holds before any job,
    #: given at creation, plus each job's share, added as jobs are stored.
    predicted_qpu_s: float = 0.0
    #: When it is expected to start and end, while it waits or runs (core/forecasts.py).
    forecast: Forecast | None = None
    #: Shots its jobs ask for, and shots of its DONE jobs.
    runs_total: int = 0
    runs_done: int = 0
    #: Where the announcement of its end to its webhook stands (WebhookState), once it ended.
    webhook_state: str | None = None
    #: Job count per status (all five keys), from `batch:{id}:counts`.
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, h: dict[str, str], counts: dict[str, str] | None = None) -> Batch:
        return cls(
            id=h["id"],
            project_id=h["project_id"],
            user_id=h["user_id"],
            device_type=h["device_type"],
            status=BatchStatus(h["status"]),
            open=h["open"] == "1",
            queue_priority=h["queue_priority"],
            created_us=int(h["created_us"]),
            updated_us=int(h["updated_us"]),
            sequence_builder=h.get("sequence_builder"),
            configuration=_json(h.get("configuration")),
            backend_configuration=h.get("backend_configuration"),
            tags=_json(h.get("tags")) or [],
            webhook=h.get("webhook"),
            parent_id=h.get("parent_id"),
            start_us=_int(h.get("start_us")),
            end_us=_int(h.get("end_us")),
            qpu=h.get("qpu"),
            inputs_purged_us=_int(h.get("inputs_purged_us")),
            predicted_qpu_s=float(h.get("predicted_qpu_s", 0.0)),
            webhook_state=h.get("webhook_state"),
            runs_total=int(h.get("runs_total", 0)),
            runs_done=int(h.get("runs_done", 0)),
            counts={s.value: int((counts or {}).get(s.value, 0)) for s in JobStatus},
        )

    def creation_fields(self) -> dict[str, str]:
        """Fields written at creation; the script adds created_us/updated_us itself."""
        fields = {
            "id": self.id,
            "project_id": self.project_id,
            "user_id": self.user_id,
            "device_type": self.device_type,
            "status": self.status.value,
            "open": "1" if self.open else "0",
            "queue_priority": self.queue_priority,
            "tags": json.dumps(self.tags),
        }
        optional = {
            "sequence_builder": self.sequence_builder,
            "configuration": None if self.configuration is None else json.dumps(self.configuration),
            "backend_configuration": self.backend_configuration,
            "webhook": self.webhook,
            "parent_id": self.parent_id,
            "predicted_qpu_s": repr(self.predicted_qpu_s) if self.predicted_qpu_s else None,
        }
        fields.update({k: v for k, v in optional.items() if v is not None})
        return fields

    @property
    def jobs_count(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class JobAttempt:
    """One start of a job on a worker, as its `history` field keeps it (core/lua/_statuses.lua)."""

    attempt: int
    qpu: str | None
    #: The worker process that ran it: host:pid.
    worker: str | None
    started_us: int
    ended_us: int | None
    #: DONE, ERROR, CANCELED, or LOST (its worker stopped heart-beating; run again); None
    #: while it runs.
    outcome: str | None

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> JobAttempt:
        return cls(
            attempt=int(item["attempt"]),
            qpu=item.get("qpu") or None,
            worker=item.get("worker") or None,
            started_us=int(item["started_us"]),
            ended_us=_int(item.get("ended_us")),
            outcome=item.get("outcome"),
        )


@dataclass
class Job:
    id: str
    batch_id: str
    project_id: str
    user_id: str
    status: JobStatus
    runs: int
    created_us: int
    updated_us: int
    variables: dict[str, Any] | None = None
    #: The job's own sequence; None means it uses its batch's `sequence_builder`.
    sequence: str | None = None
    errors: list[str] = field(default_factory=list)
    parent_id: str | None = None
    start_us: int | None = None
    end_us: int | None = None
    #: How many times a worker started it (bounded by Settings.max_attempts).
    attempts: int = 0
    #: Shots done so far, as the running worker last reported.
    progress: int = 0
    #: Bytes counted against its project's storage for its results until they are stored
    #: (core/quotas.py predicted_result_bytes).
    reserved_bytes: int = 0
    #: What the API noted at submission without refusing the job (ignored variables...).
    warnings: list[str] = field(default_factory=list)
    #: Its register's atom count and its built sequence's duration, as checked at submission:
    #: what its cost is predicted from and, once it ran, fitted on (core/costs.py).
    atoms: int | None = None
    duration_ns: int | None = None
    #: Predicted seconds it adds to its batch's hold of the QPU.
    qpu_s: float = 0.0
    #: Its run time over the same job's at its engine's default settings (core/engines.py):
    #: the cost fit folds its run divided by it.
    cost_scale: float = 1.0
    #: Every start on a worker, oldest first.
    history: list[JobAttempt] = field(default_factory=list)

    @classmethod
    def pending(
        cls,
        batch: Batch,
        runs: int,
        variables: dict[str, Any] | None,
        sequence: str | None,
        parent_id: str | None = None,
        reserved_bytes: int = 0,
    ) -> Job:
        """A new job of `batch`, not yet stored (the store stamps its creation time)."""
        return cls(
            id=str(uuid.uuid4()),
            batch_id=batch.id,
            project_id=batch.project_id,
            user_id=batch.user_id,
            status=JobStatus.PENDING,
            runs=runs,
            created_us=0,
            updated_us=0,
            variables=variables,
            sequence=sequence,
            parent_id=parent_id,
            reserved_bytes=reserved_bytes,
        )

    @classmethod
    def from_hash(cls, h: dict[str, str], sequence: str | None = None) -> Job:
        """The job of hash `h`; `sequence` is the text its `sequence_sha` names (the store
        keeps each distinct sequence once per batch, see sequence_sha())."""
        return cls(
            id=h["id"],
            batch_id=h["batch_id"],
            project_id=h["project_id"],
            user_id=h["user_id"],
            status=JobStatus(h["status"]),
            runs=int(h["runs"]),
            created_us=int(h["created_us"]),
            updated_us=int(h["updated_us"]),
            variables=_json(h.get("variables")),
            # Records written before sequences were shared keep their own copy.
            sequence=sequence if sequence is not None else h.get("sequence"),
            errors=_json(h.get("errors")) or [],
            parent_id=h.get("parent_id"),
            start_us=_int(h.get("start_us")),
            end_us=_int(h.get("end_us")),
            attempts=int(h.get("attempts", 0)),
            progress=int(h.get("progress", 0)),
            reserved_bytes=int(h.get("reserved_bytes", 0)),
            warnings=_json(h.get("warnings")) or [],
            atoms=_int(h.get("atoms")),
            duration_ns=_int(h.get("duration_ns")),
            qpu_s=float(h.get("qpu_s", 0.0)),
            cost_scale=float(h.get("cost_scale", 1.0)),
            history=[JobAttempt.from_json(a) for a in _json(h.get("history")) or []],
        )

    def creation_fields(self) -> dict[str, str]:
        """Fields written at creation; the job's own sequence is stored once per batch under
        its hash (`sequence_sha`), however many jobs carry the same text."""
        fields = {
            "id": self.id,
            "batch_id": self.batch_id,
            "project_id": self.project_id,
            "user_id": self.user_id,
            "status": self.status.value,
            "runs": str(self.runs),
            "attempts": "0",
            "reserved_bytes": str(self.reserved_bytes),
        }
        optional = {
            "variables": None if self.variables is None else json.dumps(self.variables),
            "sequence_sha": None if self.sequence is None else sequence_sha(self.sequence),
            "parent_id": self.parent_id,
            "warnings": json.dumps(self.warnings) if self.warnings else None,
            "atoms": None if self.atoms is None else str(self.atoms),
            "duration_ns": None if self.duration_ns is None else str(self.duration_ns),
            "qpu_s": repr(self.qpu_s) if self.qpu_s else None,
            "cost_scale": repr(self.cost_scale) if self.cost_scale != 1.0 else None,
        }
        fields.update({k: v for k, v in optional.items() if v is not None})
        return fields


def sequence_sha(text: str) -> str:
    """The name a sequence is stored under in its batch (`batch:{id}:sequences`)."""
    return hashlib.sha256(text.encode()).hexdigest()


def creation_rows(jobs: list[Job]) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The jobs' creation fields, and sha -> text of their own sequences, each once (every
    sequence hashed once: they can be large)."""
    rows, sequences = [], {}
    for job in jobs:
        row = job.creation_fields()
        if job.sequence is not None:
            sequences[row["sequence_sha"]] = job.sequence
        rows.append(row)
    return rows, sequences


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user, the projects they belong to and their role in each."""

    user_id: str
    project_ids: frozenset[str]
    #: project id -> Role value
    roles: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    #: A cluster administrator: may use the admin routes (membership still decides what
    #: batches they see, like anyone).
    admin: bool = False
    #: SHA-256 of the credential used, the key of its rate limit ("" outside a request).
    token_hash: str = ""

    def may_act_on(self, record: Batch | Job) -> bool:
        """Whether the caller may change `record` (cancel, close, add jobs, tags): its owner, or
        an ADMIN of its project. Seeing it only takes membership."""
        return record.user_id == self.user_id or self.roles.get(record.project_id) == Role.ADMIN
