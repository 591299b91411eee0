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

import redis

from core import quotas
from core.audit import Audit
from core.errors import Conflict, InvalidTransition, NotFound
from core.keys import Keys
from core.records import Batch, Job, creation_rows
from core.scripts import Scripts
from core.status import BatchStatus, JobStatus


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

    def __init__(self, client: redis.Redis, namespace: str, max_stored_bytes: int = 0) -> None:
        self.redis = client
        self.keys = Keys(namespace)
        self.scripts = Scripts(client, namespace)
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
        reply = self.scripts.call(
            "create_batch",
            now,
            json.dumps(batch.creation_fields()),
            json.dumps(rows),
            *(idempotency.args() if idempotency else NO_IDEMPOTENCY),
            audit.arg(),
            json.dumps(sequences),
            self.max_stored_bytes,
        )
        if reply[0] == "quota":
            raise quotas.refusal(batch.project_id, reply)
        if reply[0] != "created":
            return _replayed(reply)
        batch.created_us = batch.updated_us = int(reply[1])
        _stamp(jobs, reply[2:])
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
        """Commits jobs into an open, unfinished batch (once per Idempotency-Key)."""
        rows, sequences = creation_rows(jobs)
        reply = self.scripts.call(
            "add_jobs",
            now,
            batch_id,
            json.dumps(rows),
            *(idempotency.args() if idempotency else NO_IDEMPOTENCY),
            audit.arg(),
            json.dumps(sequences),
            self.max_stored_bytes,
        )
        if reply[0] in ("replay", "key_reused"):
            _replayed(reply)
            return
        if reply[0] == "quota":
            raise quotas.refusal(jobs[0].project_id, reply)
        if reply[0] == "not_found":
            raise NotFound(f"Batch {batch_id} not found")
        if reply[0] == "conflict":
            status, is_open = reply[1], reply[2] == "1"
            state = status if is_open else f"closed ({status})"
            raise Conflict(f"Batch {batch_id} is {state}: it does not accept new jobs")
        _stamp(jobs, reply[1:])

    def close_batch(self, batch_id: str, now: int, actor: str) -> None:
        audit = Audit(actor, "batch.close")
        self._status_change("close_batch", batch_id, BatchStatus.DONE, now, audit)

    def cancel_batch(self, batch_id: str, now: int, actor: str) -> None:
        outcome = self.cancel_batches([batch_id], now, actor)[batch_id]
        if outcome is not None:
            raise outcome

    def cancel_batches(
        self, batch_ids: Sequence[str], now: int, actor: str
    ) -> dict[str, NotFound | InvalidTransition | None]:
        """Cancels the batches in one commit; for each id, None (cancelled) or why not."""
        reply = self.scripts.call(
            "cancel_batch", now, json.dumps(list(batch_ids)), Audit(actor, "batch.cancel").arg()
        )
        outcomes: dict[str, NotFound | InvalidTransition | None] = {}
        for batch_id, outcome in zip(reply[::2], reply[1::2], strict=True):
            if outcome == "ok":
                outcomes[batch_id] = None
            elif outcome == "not_found":
                outcomes[batch_id] = NotFound(f"Batch {batch_id} not found")
            else:
                outcomes[batch_id] = InvalidTransition(
                    "batch", batch_id, outcome, BatchStatus.CANCELED
                )
        return outcomes

    def _status_change(
        self, script: str, batch_id: str, target: BatchStatus, now: int, audit: Audit
    ) -> None:
        reply = self.scripts.call(script, now, batch_id, audit.arg())
        if reply[0] == "not_found":
            raise NotFound(f"Batch {batch_id} not found")
        if reply[0] == "conflict":
            raise InvalidTransition("batch", batch_id, reply[1], target)

    def cancel_jobs(
        self, batch_id: str, job_ids: Sequence[str], now: int, actor: str
    ) -> dict[str, str]:
        """Cancels the jobs it can; returns {job id: reason} for those it could not."""
        ids = list(job_ids)
        audit = Audit(actor, "batch.cancel_jobs", {"jobs": ids[:100], "count": len(ids)})
        reply = self.scripts.call("cancel_jobs", now, batch_id, json.dumps(ids), audit.arg())
        if reply[0] == "not_found":
            raise NotFound(f"Batch {batch_id} not found")
        errors: dict[str, str] = json.loads(reply[2]) if reply[2] != "[]" else {}
        return errors

    def set_tags(self, batch_id: str, tags: list[str], now: int, actor: str) -> None:
        audit = Audit(actor, "batch.set_tags", {"tags": tags})
        reply = self.scripts.call("set_tags", now, batch_id, json.dumps(tags), audit.arg())
        if reply[0] == "not_found":
            raise NotFound(f"Batch {batch_id} not found")

    # -- reads ------------------------------------------------------------------------------

    def idempotent_batch(self, idempotency: Idempotency) -> str | None:
        """The batch an earlier request with this Idempotency-Key made, if any (a cheap check
        before validating; the commit checks again atomically)."""
        seen = self.redis.get(idempotency.key)
        if seen is None:
            return None
        record = json.loads(seen)
        if record["fingerprint"] != idempotency.fingerprint:
            raise Conflict(KEY_REUSED)
        return str(record["batch_id"])

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

    def purge_inputs(self, retention_s: float, now: int, most: int = 100) -> int:
        """Drops the sequences of batches finished more than `retention_s` ago (at most `most`
        of them); returns how many."""
        cutoff = now - int(retention_s * 1_000_000)
        purged: int = self.scripts.call("purge_inputs", now, cutoff, most)
        return purged

    def stored_bytes(self, project_id: str) -> int:
        """What the project stores, as its quota counts it."""
        used = self.redis.hget(self.keys.project_usage(project_id), "stored_bytes")
        return int(used or 0)

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
        total, ids = self._query(
            k.all_batches(), groups, query.id, None, query.start_us, query.end_us, page
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
        reply = self.scripts.call("query", json.dumps(spec))
        return int(reply[0]), list(reply[1:])


KEY_REUSED = "This Idempotency-Key was already used for a different request"


def _replayed(reply: Sequence[str]) -> str:
    """The earlier batch id of a `replay` reply; a `key_reused` reply is a 409."""
    if reply[0] == "key_reused":
        raise Conflict(KEY_REUSED)
    return reply[1]


def _stamp(jobs: list[Job], stamps: Sequence[str]) -> None:
    for job, stamp in zip(jobs, stamps, strict=True):
        job.created_us = job.updated_us = int(stamp)
