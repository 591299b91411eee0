"""The soak's checker (`tweezer chaos`): after a run full of faults, what every client was told
(its acknowledged requests) and what Redis holds are read whole, and each promise is checked
against them, as Jepsen's checkers read a history:

1. `acknowledged`: every acknowledged batch and job exists and ended in a terminal state that
   fits what was asked (nothing acknowledged was lost), and nothing exists that no client was
   told about (no job ran unacknowledged).
2. `results`: every DONE job has one stored result with the shots it asked for, one DONE
   attempt, and at most the allowed attempts.
3. `exclusive`: from the jobs' attempts, no two batches computed on one QPU at overlapping
   times, and no job ran on a QPU its batch was not served by.
4. `counts`: the cluster's totals, each project's batch counts, unfinished jobs and open
   batches equal a recount from the records.
5. `webhooks`: every finished batch with a webhook was delivered at least once.
6. `idempotent`: every Idempotency-Key named one batch, whatever the retries.

Everything here but `observe` is pure: tests plant violations in the records and see each
invariant catch its own.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from core.counters import parse_totals
from core.db import Db
from core.keys import Keys
from core.records import Batch, Job
from core.status import (
    TERMINAL_BATCH_STATUSES,
    TERMINAL_JOB_STATUSES,
    BatchStatus,
    JobStatus,
)


@dataclass(frozen=True)
class Ack:
    """One request a client was told succeeded."""

    #: create, add, cancel or close.
    action: str
    batch_id: str
    #: The Idempotency-Key it carried (create and add), or "".
    key: str = ""
    #: Shots of each job it created (create and add).
    runs: tuple[int, ...] = ()
    open: bool = False
    webhook: bool = False

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Ack:
        data = json.loads(text)
        return cls(**{**data, "runs": tuple(data["runs"])})


@dataclass
class Observed:
    """What Redis holds after the run, as plain records."""

    batches: dict[str, Batch] = field(default_factory=dict)
    #: Batch id -> its jobs, in creation order.
    jobs: dict[str, list[Job]] = field(default_factory=dict)
    #: Job id -> shots in its stored result (None: no result stored).
    result_shots: dict[str, int | None] = field(default_factory=dict)
    #: (kind, device type, status) -> count, as the `totals` hash says.
    totals: dict[tuple[str, str, str], int] = field(default_factory=dict)
    #: Project id -> its `batch-counts`, `unfinished_jobs` and open batches.
    batch_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    unfinished_jobs: dict[str, int] = field(default_factory=dict)
    open_batches: dict[str, set[str]] = field(default_factory=dict)
    #: Batch id -> deliveries its webhook's receiver got.
    deliveries: dict[str, int] = field(default_factory=dict)


@dataclass
class Invariant:
    name: str
    checks: int = 0
    violations: list[str] = field(default_factory=list)

    def check(self, ok: bool, why: str) -> None:
        self.checks += 1
        if not ok:
            self.violations.append(why)


@dataclass(frozen=True)
class Verdict:
    invariants: tuple[Invariant, ...]

    @property
    def ok(self) -> bool:
        return not any(i.violations for i in self.invariants)

    def lines(self, most: int = 5) -> Iterator[str]:
        for i in self.invariants:
            mark = "ok  " if not i.violations else "FAIL"
            yield f"{mark} {i.name:<13} {i.checks:>8,} checks  {len(i.violations):>4} violations"
            for why in i.violations[:most]:
                yield f"       {why}"
            if len(i.violations) > most:
                yield f"       ... and {len(i.violations) - most} more"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "invariants": {
                i.name: {"checks": i.checks, "violations": i.violations} for i in self.invariants
            },
        }


def check(acks: Iterable[Ack], seen: Observed, max_attempts: int) -> Verdict:
    """Every invariant over the acknowledged requests and what Redis holds."""
    acks = list(acks)
    return Verdict(
        (
            acknowledged(acks, seen),
            results(seen, max_attempts),
            exclusive(seen),
            counts(seen),
            webhooks(acks, seen),
            idempotent(acks, seen),
        )
    )


def acknowledged(acks: list[Ack], seen: Observed) -> Invariant:
    inv = Invariant("acknowledged")
    asked: dict[str, list[int]] = {}
    cancelled: set[str] = set()
    opened: set[str] = set()
    answered: set[str] = set()  # Idempotency-Keys: a request sent again adds nothing
    for ack in acks:
        if ack.action in ("create", "add") and (not ack.key or ack.key not in answered):
            answered.add(ack.key)
            asked.setdefault(ack.batch_id, []).extend(ack.runs)
        if ack.action == "cancel":
            cancelled.add(ack.batch_id)
        if ack.action == "create" and ack.open:
            opened.add(ack.batch_id)
    for batch_id, runs in asked.items():
        batch = seen.batches.get(batch_id)
        inv.check(batch is not None, f"batch {batch_id}: acknowledged, not in Redis")
        if batch is None:
            continue
        jobs = seen.jobs.get(batch_id, [])
        inv.check(
            sorted(j.runs for j in jobs) == sorted(runs),
            f"batch {batch_id}: {len(runs)} job(s) acknowledged ({sorted(runs)} shots), "
            f"{len(jobs)} stored ({sorted(j.runs for j in jobs)})",
        )
        allowed = {BatchStatus.DONE}
        if batch_id in cancelled:
            allowed.add(BatchStatus.CANCELED)
        if batch_id in opened:
            allowed |= {BatchStatus.TIMED_OUT, BatchStatus.CANCELED}
        inv.check(
            batch.status in allowed,
            f"batch {batch_id}: {batch.status}, expected one of {sorted(allowed)}",
        )
        for job in jobs:
            inv.check(
                job.status in TERMINAL_JOB_STATUSES,
                f"job {job.id} of {batch_id}: {job.status}, not terminal",
            )
            if job.status is JobStatus.CANCELED:
                inv.check(
                    batch.status in (BatchStatus.CANCELED, BatchStatus.TIMED_OUT),
                    f"job {job.id}: CANCELED in a {batch.status} batch nobody cancelled",
                )
    for batch_id in seen.batches.keys() - asked.keys():
        ran = [j.id for j in seen.jobs.get(batch_id, []) if j.history]
        inv.check(not ran, f"batch {batch_id}: never acknowledged, its jobs {ran} ran")
    return inv


def results(seen: Observed, max_attempts: int) -> Invariant:
    inv = Invariant("results")
    for jobs in seen.jobs.values():
        for job in jobs:
            inv.check(
                len(job.history) <= max_attempts and job.attempts <= max_attempts,
                f"job {job.id}: {len(job.history)} attempts, at most {max_attempts} allowed",
            )
            if job.status is JobStatus.ERROR:
                inv.check(bool(job.errors), f"job {job.id}: ERROR without a message")
            if job.status is not JobStatus.DONE:
                continue
            shots = seen.result_shots.get(job.id)
            inv.check(shots is not None, f"job {job.id}: DONE without a stored result")
            inv.check(
                shots is None or shots == job.runs,
                f"job {job.id}: {shots} shots stored, {job.runs} asked",
            )
            done = sum(1 for a in job.history if a.outcome == JobStatus.DONE)
            inv.check(done == 1, f"job {job.id}: DONE by {done} attempts")
    return inv


def exclusive(seen: Observed) -> Invariant:
    """No two batches on one QPU at once, from the attempts' [start, end) intervals."""
    inv = Invariant("exclusive")
    spans: dict[str, list[tuple[int, int, str, str]]] = {}
    for batch_id, jobs in seen.jobs.items():
        batch = seen.batches.get(batch_id)
        for job in jobs:
            for a in job.history:
                if a.qpu is None:
                    continue
                inv.check(
                    batch is not None and a.qpu == batch.qpu,
                    f"job {job.id}: attempt {a.attempt} on {a.qpu}, its batch was served by "
                    f"{None if batch is None else batch.qpu}",
                )
                end = a.ended_us if a.ended_us is not None else 2**62
                spans.setdefault(a.qpu, []).append((a.started_us, end, batch_id, job.id))
    for qpu, intervals in spans.items():
        intervals.sort()
        # The batch whose attempts reach furthest so far: any later start before that end,
        # of another batch, overlaps it.
        reach_end, reach_batch, reach_job = -1, "", ""
        for start, end, batch_id, job_id in intervals:
            if batch_id != reach_batch:
                inv.check(
                    start >= reach_end,
                    f"{qpu}: job {job_id} of batch {batch_id} started at {start} while job "
                    f"{reach_job} of batch {reach_batch} ran until {reach_end}",
                )
            if end > reach_end:
                reach_end, reach_batch, reach_job = end, batch_id, job_id
    return inv


def counts(seen: Observed) -> Invariant:
    inv = Invariant("counts")
    recount: Counter[tuple[str, str, str]] = Counter()
    per_project: dict[str, Counter[str]] = {}
    unfinished: Counter[str] = Counter()
    still_open: dict[str, set[str]] = {}
    for batch in seen.batches.values():
        recount[("batch", batch.device_type, batch.status.value)] += 1
        per_project.setdefault(batch.project_id, Counter())[batch.status.value] += 1
        if batch.open and batch.status not in TERMINAL_BATCH_STATUSES:
            still_open.setdefault(batch.project_id, set()).add(batch.id)
        for job in seen.jobs.get(batch.id, []):
            recount[("job", batch.device_type, job.status.value)] += 1
            if job.status not in TERMINAL_JOB_STATUSES:
                unfinished[batch.project_id] += 1
    for key in recount.keys() | {k for k, n in seen.totals.items() if n}:
        inv.check(
            seen.totals.get(key, 0) == recount[key],
            f"totals {':'.join(key)}: {seen.totals.get(key, 0)} counted, {recount[key]} records",
        )
    for project, statuses in per_project.items():
        stored = seen.batch_counts.get(project, {})
        for status in statuses.keys() | {s for s, n in stored.items() if n}:
            inv.check(
                stored.get(status, 0) == statuses[status],
                f"project {project} batch-counts {status}: {stored.get(status, 0)} counted, "
                f"{statuses[status]} records",
            )
        inv.check(
            seen.unfinished_jobs.get(project, 0) == unfinished[project],
            f"project {project}: unfinished_jobs {seen.unfinished_jobs.get(project, 0)}, "
            f"{unfinished[project]} records",
        )
        inv.check(
            seen.open_batches.get(project, set()) == still_open.get(project, set()),
            f"project {project}: open batches {sorted(seen.open_batches.get(project, set()))}, "
            f"records say {sorted(still_open.get(project, set()))}",
        )
    return inv


def webhooks(acks: list[Ack], seen: Observed) -> Invariant:
    inv = Invariant("webhooks")
    for ack in acks:
        if ack.action != "create" or not ack.webhook:
            continue
        batch = seen.batches.get(ack.batch_id)
        if batch is None or batch.status not in TERMINAL_BATCH_STATUSES:
            continue  # the first invariant says so
        inv.check(
            seen.deliveries.get(ack.batch_id, 0) >= 1,
            f"batch {ack.batch_id}: {batch.status}, its webhook never received it "
            f"(state {batch.webhook_state})",
        )
    return inv


def idempotent(acks: list[Ack], seen: Observed) -> Invariant:
    inv = Invariant("idempotent")
    named: dict[str, set[str]] = {}
    for ack in acks:
        if ack.action == "create" and ack.key:
            named.setdefault(ack.key, set()).add(ack.batch_id)
    for key, batch_ids in named.items():
        inv.check(len(batch_ids) == 1, f"key {key}: answered with batches {sorted(batch_ids)}")
    created = {ack.batch_id for ack in acks if ack.action == "create"}
    # Batches of the run's projects that no key was answered with were made by a retry.
    for batch_id in seen.batches.keys() - created:
        inv.check(False, f"batch {batch_id}: created, and no create was answered with it")
    inv.checks += len(created)
    return inv


def observe(
    client: redis.Redis, namespace: str, project_ids: Iterable[str], deliveries: dict[str, int]
) -> Observed:
    """Every batch, job, result summary and count of the projects, read from Redis."""
    from core.store import Store

    keys, store = Keys(namespace), Store(Db.of(client, namespace))
    seen = Observed(deliveries=dict(deliveries))
    seen.totals = parse_totals(client.hgetall(keys.totals()))
    for project in project_ids:
        ids = client.zrange(keys.batch_index("project_id", project), 0, -1)
        for batch in store.get_batches(ids):
            seen.batches[batch.id] = batch
            jobs = store.batch_jobs(batch.id)
            seen.jobs[batch.id] = jobs
            documents = store.get_results([j.id for j in jobs])
            for job, document in zip(jobs, documents, strict=True):
                seen.result_shots[job.id] = None if document is None else _shots(document)
        counts_raw = client.hgetall(keys.project_batch_counts(project))
        seen.batch_counts[project] = {k: int(v) for k, v in counts_raw.items()}
        unfinished = client.hget(keys.project_usage(project), "unfinished_jobs")
        seen.unfinished_jobs[project] = int(unfinished or 0)
        seen.open_batches[project] = set(client.smembers(keys.project_open_batches(project)))
    return seen


def _shots(document: str) -> int | None:
    try:
        counter = json.loads(document).get("counter") or {}
        return int(sum(counter.values()))
    except (ValueError, TypeError, AttributeError):
        return None
