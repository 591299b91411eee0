"""A worker's side of its jobs: claim a delivery's chunk, heartbeat while running, commit the
outcomes.

Each call is a compare-and-set on each job's (status, delivery id): a redelivered message, a
superseded dispatch or a job cancelled meanwhile claims and commits nothing. A chunk's jobs are
claimed, kept alive and committed together, one script each time (dispatch.lua says how many
jobs a chunk holds); the single-job calls are the same scripts with one job.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core import replies
from core.db import Db
from core.script_args import ClaimJobsArgs, CommitJobsArgs, HeartbeatArgs, ScriptArgs
from core.status import JobStatus
from core.timefmt import to_ms


@dataclass(frozen=True)
class JobInputs:
    """What emulating a job needs, read once the job is claimed."""

    sequence: str
    variables: dict[str, Any] | None
    runs: int
    configuration: dict[str, Any] | None
    backend_configuration: str | None
    job_id: str = ""
    #: Its register's atom count, and its predicted share of its batch's QPU time (a
    #: synthetic device runs that long when the job does not say; core/costs.py).
    atoms: int = 1
    qpu_s: float = 0.0


@dataclass(frozen=True)
class ClaimedRun:
    """A job a worker now runs: how many times it has started (this claim included), and its
    inputs."""

    job_id: str
    attempt: int
    inputs: JobInputs


@dataclass(frozen=True)
class Claim:
    runs: list[ClaimedRun]
    #: The jobs of the delivery it did not claim, with their status.
    stale: dict[str, replies.Stale]


@dataclass(frozen=True)
class Outcome:
    """How one job of a chunk ended, as its worker commits it."""

    job_id: str
    status: JobStatus  # DONE or ERROR
    #: The results document (DONE) or the errors as a JSON array of strings (ERROR).
    payload: str
    #: When its run began on the worker (µs), and how long it took; None: from the claim to
    #: the commit.
    started_us: int | None = None
    seconds: float | None = None
    #: What the worker noted on the run (a GPU asked for and not there...): added to the job's
    #: `warnings`.
    warnings: tuple[str, ...] = ()

    @classmethod
    def done(
        cls,
        job_id: str,
        document: dict[str, Any],
        started_us: int | None = None,
        seconds: float | None = None,
        warnings: tuple[str, ...] = (),
    ) -> Outcome:
        return cls(job_id, JobStatus.DONE, json.dumps(document), started_us, seconds, warnings)

    @classmethod
    def error(
        cls, job_id: str, message: str, started_us: int | None = None, seconds: float | None = None
    ) -> Outcome:
        return cls(job_id, JobStatus.ERROR, json.dumps([message]), started_us, seconds)


class Execution:
    def __init__(self, db: Db) -> None:
        self.redis = db.client
        self.keys = db.keys
        self.scripts = db.scripts

    def claim_jobs(
        self,
        delivery: str,
        job_ids: Sequence[str],
        heartbeat_ttl_s: float,
        now: int,
        worker: str = "",
    ) -> Claim:
        """Claims the jobs of `delivery` it still owns, with their inputs (one round trip).
        `worker` (host:pid) goes into the jobs' history; claiming again after a lost reply
        finds the jobs this worker already holds."""
        ttl_ms = to_ms(heartbeat_ttl_s)
        args = ClaimJobsArgs(now, delivery, ttl_ms, worker, tuple(job_ids))
        reply = self._run(args, job_ids)
        claimed = replies.decode_claimed(reply)
        batch = claimed.batch
        configuration = batch.get("configuration")

        def inputs(job: replies.ClaimedJob) -> JobInputs:
            # A record written before sequences were shared keeps its own copy.
            own = claimed.sequences.get(job.sequence_sha) or job.sequence
            return JobInputs(
                sequence=own or batch.get("sequence_builder", ""),
                variables=json.loads(job.variables) if job.variables else None,
                runs=job.runs,
                configuration=json.loads(configuration) if configuration else None,
                backend_configuration=batch.get("backend_configuration") or None,
                job_id=job.id,
                atoms=job.atoms,
                qpu_s=job.qpu_s,
            )

        runs = [ClaimedRun(job.id, job.attempt, inputs(job)) for job in claimed.jobs]
        return Claim(runs, claimed.stale)

    def heartbeat_jobs(
        self,
        delivery: str,
        job_ids: Sequence[str],
        heartbeat_ttl_s: float,
        now: int,
        current: str = "",
        shots_done: int = 0,
    ) -> dict[str, replies.Stale]:
        """Keeps `job_ids` in flight and records the progress of the `current` one; returns the
        jobs no longer ours to run (cancelled, or given to another worker)."""
        ttl_ms = to_ms(heartbeat_ttl_s)
        args = HeartbeatArgs(now, delivery, ttl_ms, current, shots_done, tuple(job_ids))
        return replies.decode_stale(self._run(args, job_ids))

    def commit_jobs(
        self, delivery: str, outcomes: Sequence[Outcome], now: int
    ) -> dict[str, replies.Stale]:
        """Stores the outcomes the delivery still owns (one round trip); returns the others."""
        fields: list[str | int] = []
        for o in outcomes:
            measured = ("", "") if o.seconds is None else (o.started_us, repr(o.seconds))
            notes = json.dumps(list(o.warnings)) if o.warnings else ""
            fields += [o.job_id, o.status.value, o.payload, *measured, notes]
        args = CommitJobsArgs(now, delivery, tuple(fields))
        return replies.decode_stale(self._run(args, [o.job_id for o in outcomes]))

    # One job at a time: the same scripts (tests, and a hard time limit's report).

    def claim(
        self, job_id: str, delivery: str, heartbeat_ttl_s: float, now: int, worker: str = ""
    ) -> int | None:
        """The attempt number if this delivery now runs the job, else None."""
        claim = self.claim_jobs(delivery, [job_id], heartbeat_ttl_s, now, worker)
        return claim.runs[0].attempt if claim.runs else None

    def heartbeat(
        self, job_id: str, delivery: str, heartbeat_ttl_s: float, shots_done: int, now: int
    ) -> bool:
        """False once the job is no longer ours to run."""
        stale = self.heartbeat_jobs(delivery, [job_id], heartbeat_ttl_s, now, job_id, shots_done)
        return job_id not in stale

    def commit_done(self, job_id: str, delivery: str, document: dict[str, Any], now: int) -> bool:
        """True when the outcome is stored (the delivery still owned the RUNNING job)."""
        return self._commit_one(Outcome.done(job_id, document), delivery, now)

    def commit_error(self, job_id: str, delivery: str, message: str, now: int) -> bool:
        return self._commit_one(Outcome.error(job_id, message), delivery, now)

    def _commit_one(self, outcome: Outcome, delivery: str, now: int) -> bool:
        return outcome.job_id not in self.commit_jobs(delivery, [outcome], now)

    def _run(self, args: ScriptArgs, job_ids: Sequence[str]) -> Any:
        return self.scripts.run(args, keys=[self.keys.job(job_id) for job_id in job_ids])
