"""Batches and jobs in Redis: every mutation is one Lua script (one atomic commit), every read a
pipeline. The API is this module's main caller; the scheduler and workers use core/qpu.py and
core/execution.py, which share its scripts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core import replies
from core.audit import Audit
from core.db import Db
from core.decay import decayed
from core.errors import TweezerError
from core.forecasts import ForecastBook
from core.records import Batch, Job, creation_rows
from core.script_args import (
    AddJobsArgs,
    CancelBatchArgs,
    CancelJobsArgs,
    CloseBatchArgs,
    CreateBatchArgs,
    IdempotencyCheckArgs,
    MigrateArgs,
    PurgeInputsArgs,
    QueryArgs,
    SetTagsArgs,
)
from core.status import BatchStatus, JobStatus
from core.timefmt import to_us

#: Batches that have a forecast: waiting ones, and running ones (their expected end).
_FORECAST_STATUSES = (BatchStatus.PENDING, BatchStatus.RUNNING)


@dataclass(frozen=True)
class Idempotency:
    """An Idempotency-Key as stored: its Redis key, the request's fingerprint, a lifetime."""

    key: str
    fingerprint: str
    ttl_s: int

    def args(self) -> tuple[str, str, int]:
        return self.key, self.fingerprint, self.ttl_s * 1000


NO_IDEMPOTENCY = ("", "", 0)


@dataclass
class Page:
    """`offset`/`limit` of a list; `desc` is newest first (the API's default order)."""

    offset: int = 0
    limit: int = 100
    desc: bool = True


@dataclass
class BatchQuery:
    """Filters of GET /batches (each list: the value is one of them; all filters: AND)."""

    id: list[str] = field(default_factory=list)
    project_id: list[str] = field(default_factory=list)
    user_id: list[str] = field(default_factory=list)
    device_type: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    queue_priority: list[str] = field(default_factory=list)
    open: bool | None = None
    tag: str | None = None
    start_us: int | None = None
    end_us: int | None = None


@dataclass
class JobQuery:
    """Filters of GET /jobs, and of rebatch and cancel-jobs within one batch."""

    id: list[str] = field(default_factory=list)
    project_id: list[str] = field(default_factory=list)
    user_id: list[str] = field(default_factory=list)
    batch_id: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    min_runs: int | None = None
    max_runs: int | None = None
    errors: bool | None = None
    start_us: int | None = None
    end_us: int | None = None


class Store:
    """Record-level operations on one cluster's Redis."""

    def __init__(self, db: Db, max_stored_bytes: int = 0) -> None:
        self.db = db
        self.redis = db.client
        self.keys = db.keys
        self.scripts = db.scripts
        self.forecasts = ForecastBook(db.client, db.namespace)
        #: A project's stored-bytes limit unless it has its own (0: none).
        self.max_stored_bytes = max_stored_bytes

    # -- writes -----------------------------------------------------------------------------

    def create_batch(
        self,
        batch: Batch,
        jobs: list[Job],
        now: int,
        idempotency: Idempotency | None = None,
        audit: Audit | None = None,
    ) -> str:
        """Commits a new batch and its jobs and fills in their creation times; returns its id,
        or the id of the batch an earlier request with the same Idempotency-Key created.
        Refuses it (QuotaExceeded) if its project's counted quotas do not leave room.
        `audit` defaults to "the batch's user created it"."""
        audit = audit or Audit(batch.user_id, "batch.create", {"jobs": len(jobs)})
        rows, sequences = creation_rows(jobs)
        args = CreateBatchArgs(
            now,
            json.dumps(batch.creation_fields()),
            json.dumps(rows),
            *(idempotency.args() if idempotency else NO_IDEMPOTENCY),
            audit=audit.arg(),
            sequences=json.dumps(sequences),
            max_stored_bytes=self.max_stored_bytes,
        )
        reply = self.scripts.run(args, keys=[self.keys.batch(batch.id)])
        created = replies.decode_created(reply)
        if isinstance(created, replies.Replayed):
            return created.batch_id
        batch.created_us = batch.updated_us = created.created_us
        _stamp(jobs, created.job_created_us)
        batch.counts = {status.value: 0 for status in JobStatus}
        batch.counts[JobStatus.PENDING] = len(jobs)
        return batch.id

    def add_jobs(
        self,
        batch_id: str,
        jobs: list[Job],
        now: int,
        audit: Audit,
        idempotency: Idempotency | None = None,
    ) -> None:
        """Commits jobs into an open batch (once per Idempotency-Key); BatchClosed if it is
        closed."""
        rows, sequences = creation_rows(jobs)
        args = AddJobsArgs(
            now,
            batch_id,
            json.dumps(rows),
            *(idempotency.args() if idempotency else NO_IDEMPOTENCY),
            audit=audit.arg(),
            sequences=json.dumps(sequences),
            max_stored_bytes=self.max_stored_bytes,
        )
        reply = self.scripts.run(args, keys=[self.keys.batch(batch_id)])
        added = replies.decode_added(reply)
        if not isinstance(added, replies.Replayed):
            _stamp(jobs, added)

    def close_batch(self, batch_id: str, now: int, actor: str) -> None:
        audit = Audit(actor, "batch.close")
        args = CloseBatchArgs(now, batch_id, audit.arg())
        reply = self.scripts.run(args, keys=[self.keys.batch(batch_id)])
        replies.ok(reply)

    def cancel_batch(self, batch_id: str, now: int, actor: str) -> None:
        outcome = self.cancel_batches([batch_id], now, actor)[batch_id]
        if outcome is not None:
            raise outcome

    def cancel_batches(
        self, batch_ids: Sequence[str], now: int, actor: str
    ) -> dict[str, TweezerError | None]:
        """Cancels the batches in one commit; for each id, None (cancelled) or why not."""
        ids = list(batch_ids)
        args = CancelBatchArgs(now, json.dumps(ids), Audit(actor, "batch.cancel").arg())
        reply = self.scripts.run(args, keys=[self.keys.batch(batch_id) for batch_id in ids])
        return replies.decode_outcomes(ids, reply)

    def cancel_jobs(
        self, batch_id: str, job_ids: Sequence[str], now: int, actor: str
    ) -> dict[str, str]:
        """Cancels the jobs it can; returns {job id: reason} for those it could not."""
        ids = list(job_ids)
        audit = Audit(actor, "batch.cancel_jobs", {"jobs": ids[:100], "count": len(ids)})
        args = CancelJobsArgs(now, batch_id, json.dumps(ids), audit.arg())
        reply = self.scripts.run(args, keys=[self.keys.batch(batch_id)])
        return replies.decode_jobs_cancelled(reply).refused

    def set_tags(self, batch_id: str, tags: list[str], now: int, actor: str) -> None:
        audit = Audit(actor, "batch.set_tags", {"tags": tags})
        args = SetTagsArgs(now, batch_id, json.dumps(tags), audit.arg())
        reply = self.scripts.run(args, keys=[self.keys.batch(batch_id)])
        replies.ok(reply)

    # -- reads ------------------------------------------------------------------------------

    def idempotent_batch(self, idempotency: Idempotency) -> str | None:
        """The batch an earlier request with this Idempotency-Key made, if any (a cheap check
        before validating; the commit checks again atomically)."""
        reply = self.scripts.run(
            IdempotencyCheckArgs(idempotency.fingerprint), keys=[idempotency.key]
        )
        return replies.decode_idempotent(reply)

    def get_batch(self, batch_id: str) -> Batch | None:
        found = self.get_batches([batch_id])
        return found[0] if found else None

    def get_batches(self, batch_ids: Iterable[str]) -> list[Batch]:
        """The batches that exist among `batch_ids`, in the given order."""
        ids = list(batch_ids)
        pipe = self.redis.pipeline(transaction=False)
        for batch_id in ids:
            pipe.hgetall(self.keys.batch(batch_id))
            pipe.hgetall(self.keys.batch_counts(batch_id))
        replies = pipe.execute()
        return [
            Batch.from_hash(h, counts)
            for h, counts in zip(replies[::2], replies[1::2], strict=True)
            if h
        ]

    def batch_statuses(self, batch_ids: Iterable[str]) -> list[str | None]:
        """Each batch's status (None where there is none): one field each, for a progress line
        that follows thousands of batches every second."""
        pipe = self.redis.pipeline(transaction=False)
        for batch_id in batch_ids:
            pipe.hget(self.keys.batch(batch_id), "status")
        return list(pipe.execute())

    def with_forecasts(self, batches: list[Batch]) -> list[Batch]:
        """`batches`, those waiting or running given their forecast (one round trip): for the
        responses that show it, not for every read of a batch."""
        live = [(b.device_type, b.id) for b in batches if b.status in _FORECAST_STATUSES]
        forecasts = self.forecasts.read(live)
        for batch in batches:
            batch.forecast = forecasts.get(batch.id)
        return batches

    def forecast_queue(self, device_type: str, offset: int = 0, limit: int = 100) -> list[Batch]:
        """A page of the batches waiting for `device_type`, in the order the policy is
        expected to start them (the latest forecast; empty before the first)."""
        return self.waiting_batches(self.forecasts.order(device_type, offset, limit)[0])

    def waiting_batches(self, batch_ids: list[str]) -> list[Batch]:
        """Those of `batch_ids` still waiting, in order, with their forecasts (a batch that
        started since the forecast is left out)."""
        batches = [b for b in self.get_batches(batch_ids) if b.status is BatchStatus.PENDING]
        return self.with_forecasts(batches)

    def get_job(self, job_id: str) -> Job | None:
        found = self.get_jobs([job_id])
        return found[0] if found else None

    def get_jobs(self, job_ids: Iterable[str]) -> list[Job]:
        """The jobs that exist among `job_ids`, in the given order, with their sequences."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys.job(job_id))
        hashes = [h for h in pipe.execute() if h]
        for h in hashes:
            if "sequence_sha" in h:
                pipe.hget(self.keys.batch_sequences(h["batch_id"]), h["sequence_sha"])
        # One text per job that has its own sequence, in the same order.
        texts = iter(pipe.execute() if any("sequence_sha" in h for h in hashes) else [])
        return [Job.from_hash(h, next(texts) if "sequence_sha" in h else None) for h in hashes]

    def migrate(self) -> int:
        """Brings records of an earlier version up to date (core/lua/migrate.lua); returns how
        many changed. Idempotent: every scheduler runs it at start."""
        changed: int = self.scripts.run(MigrateArgs(), keys=[self.keys.projects()])
        return changed

    def purge_inputs(self, retention_s: float, now: int, most: int = 100) -> int:
        """Drops the sequences of batches finished more than `retention_s` ago (at most `most`
        of them); returns how many."""
        cutoff = now - to_us(retention_s)
        args = PurgeInputsArgs(now, cutoff, most)
        purged: int = self.scripts.run(args, keys=[self.keys.retention()])
        return purged

    def stored_bytes(self, project_id: str) -> int:
        """What the project stores, as its quota counts it."""
        used = self.redis.hget(self.keys.project_usage(project_id), "stored_bytes")
        return int(used or 0)

    def usage(
        self, project_ids: list[str], device_types: list[str], half_life_s: float, now: int
    ) -> list[dict[str, Any]]:
        """Per project: unfinished jobs, stored bytes, open batches, and QPU seconds per device
        type decayed to `now` (what the fair-share policy weighs), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for project_id in project_ids:
            pipe.hgetall(self.keys.project_usage(project_id))
            pipe.scard(self.keys.project_open_batches(project_id))
        for device_type in device_types:
            pipe.hgetall(self.keys.device_usage(device_type))
            pipe.hgetall(self.keys.device_usage_at(device_type))
        replies = pipe.execute()
        n = 2 * len(project_ids)
        used = {t: (replies[n + 2 * i], replies[n + 2 * i + 1]) for i, t in enumerate(device_types)}
        out = []
        for i, project_id in enumerate(project_ids):
            counts, open_batches = replies[2 * i], replies[2 * i + 1]
            qpu_s = {
                t: round(
                    decayed(
                        float(values.get(project_id, 0.0)),
                        int(at.get(project_id, now)) / 1e6,
                        now / 1e6,
                        half_life_s,
                    ),
                    3,
                )
                for t, (values, at) in used.items()
            }
            out.append(
                {
                    "unfinished_jobs": int(counts.get("unfinished_jobs", 0)),
                    "stored_bytes": int(counts.get("stored_bytes", 0)),
                    "open_batches": open_batches,
                    "qpu_seconds": qpu_s,
                }
            )
        return out

    def webhook_deliveries(self, batch_id: str) -> list[dict[str, Any]]:
        """The attempts to announce the batch's end to its webhook, oldest first."""
        return [json.loads(a) for a in self.redis.lrange(self.keys.batch_webhook(batch_id), 0, -1)]

    def batch_job_ids(self, batch_id: str) -> list[str]:
        """Ids of a batch's jobs in creation order."""
        ids: list[str] = self.redis.zrange(self.keys.batch_jobs(batch_id), 0, -1)
        return ids

    def batch_jobs(self, batch_id: str) -> list[Job]:
        return self.get_jobs(self.batch_job_ids(batch_id))

    def get_results(self, job_ids: list[str]) -> list[str | None]:
        """The results documents of `job_ids` (None for a job without one), in order."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.get(self.keys.job_result(job_id))
        results: list[str | None] = pipe.execute()
        return results

    def get_result(self, job_id: str) -> str | None:
        """The results document of a DONE job (JSON text), else None."""
        result: str | None = self.redis.get(self.keys.job_result(job_id))
        return result

    # -- filtered lists ---------------------------------------------------------------------

    def query_batches(self, query: BatchQuery, page: Page) -> tuple[int, list[Batch]]:
        k = self.keys
        groups = [
            [k.batch_index(name, value) for value in values]
            for name, values in (
                ("project_id", query.project_id),
                ("user_id", query.user_id),
                ("device_type", query.device_type),
                ("status", query.status),
                ("queue_priority", query.queue_priority),
            )
            if values
        ]
        if query.open is not None:
            groups.append([k.batch_index("open", "1" if query.open else "0")])
        if query.tag is not None:
            groups.append([k.batch_index("tag", query.tag)])
        # The SDK's usual list (its projects, some statuses): the exact total is the sum of
        # the projects' counts per status, whatever the number of matches.
        only_projects_and_status = not (
            query.id
            or query.user_id
            or query.device_type
            or query.queue_priority
            or query.open is not None
            or query.tag is not None
            or query.start_us is not None
            or query.end_us is not None
        )
        counts = (
            [[k.project_batch_counts(p), s] for p in query.project_id for s in query.status]
            if only_projects_and_status and query.project_id and query.status
            else None
        )
        total, ids = self._query(
            k.all_batches(), groups, query.id, None, query.start_us, query.end_us, page, counts
        )
        return total, self.get_batches(ids)

    def query_job_ids(self, query: JobQuery, page: Page) -> tuple[int, list[str]]:
        k = self.keys
        groups = [
            [k.job_index(name, value) for value in values]
            for name, values in (
                ("project_id", query.project_id),
                ("user_id", query.user_id),
                ("status", query.status),
            )
            if values
        ]
        if query.batch_id:
            groups.append([k.batch_jobs(batch_id) for batch_id in query.batch_id])
        if query.errors is not None:
            groups.append([k.job_index("errors", "1" if query.errors else "0")])
        runs = None
        if query.min_runs is not None or query.max_runs is not None:
            low = "-inf" if query.min_runs is None else str(query.min_runs)
            high = "+inf" if query.max_runs is None else str(query.max_runs)
            runs = [low, high]
        return self._query(k.all_jobs(), groups, query.id, runs, query.start_us, query.end_us, page)

    def query_jobs(self, query: JobQuery, page: Page) -> tuple[int, list[Job]]:
        total, ids = self.query_job_ids(query, page)
        return total, self.get_jobs(ids)

    def _query(
        self,
        base: str,
        groups: list[list[str]],
        ids: list[str],
        runs: list[str] | None,
        start_us: int | None,
        end_us: int | None,
        page: Page,
        counts: list[list[str]] | None = None,
    ) -> tuple[int, list[str]]:
        spec: dict[str, Any] = {
            "base": base,
            "groups": groups,
            "min": "-inf" if start_us is None else str(start_us),
            "max": "+inf" if end_us is None else str(end_us),
            "offset": page.offset,
            "limit": page.limit,
            "desc": page.desc,
            "tmp": self.keys.tmp(uuid.uuid4().hex),
            "runs_key": self.keys.jobs_by_runs(),
        }
        if ids:
            spec["ids"] = ids
        if runs:
            spec["runs"] = runs
        if counts:
            spec["counts"] = counts
        total, *ids = self.scripts.run(QueryArgs(json.dumps(spec)))
        return int(total), ids


def _stamp(jobs: list[Job], stamps: Sequence[int]) -> None:
    for job, stamp in zip(jobs, stamps, strict=True):
        job.created_us = job.updated_us = stamp
