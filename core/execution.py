"""A worker's side of a job: claim a delivery, heartbeat while running, commit the outcome.

Each call is a compare-and-set on the job's (status, delivery id): a redelivered message, a
superseded dispatch or a job cancelled meanwhile claims and commits nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from core import replies
from core.keys import Keys
from core.scripts import Scripts
from core.status import JobStatus


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


class Execution:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis = client
        self.keys = Keys(namespace)
        self.scripts = Scripts(client, namespace)

    def claim(
        self, job_id: str, delivery: str, heartbeat_ttl_s: float, now: int, worker: str = ""
    ) -> int | None:
        """The attempt number if this delivery now runs the job, else None. `worker` (host:pid)
        goes into the job's history."""
        ttl_ms = int(heartbeat_ttl_s * 1000)
        reply = self._call("claim_job", now, job_id, delivery, ttl_ms, worker)
        claimed = replies.decode_claimed(reply)
        return None if isinstance(claimed, replies.Stale) else claimed

    def heartbeat(
        self, job_id: str, delivery: str, heartbeat_ttl_s: float, shots_done: int, now: int
    ) -> bool:
        """Keeps the job in flight and records its progress; False once the job is no longer
        ours to run (cancelled, or given to another worker)."""
        ttl_ms = int(heartbeat_ttl_s * 1000)
        reply = self._call("heartbeat", now, job_id, delivery, ttl_ms, shots_done)
        return replies.decode_owned(reply) is None

    def commit_done(self, job_id: str, delivery: str, document: dict[str, Any], now: int) -> bool:
        return self._commit(job_id, delivery, JobStatus.DONE, json.dumps(document), now)

    def commit_error(self, job_id: str, delivery: str, message: str, now: int) -> bool:
        return self._commit(job_id, delivery, JobStatus.ERROR, json.dumps([message]), now)

    def _commit(
        self, job_id: str, delivery: str, outcome: JobStatus, payload: str, now: int
    ) -> bool:
        """True when the outcome is stored (the delivery still owned the RUNNING job)."""
        reply = self._call("commit_job", now, job_id, delivery, outcome.value, payload)
        return replies.decode_owned(reply) is None

    def _call(self, script: str, now: int, job_id: str, *args: object) -> Any:
        return self.scripts.call(script, now, job_id, *args, keys=[self.keys.job(job_id)])

    def inputs(self, job_id: str) -> JobInputs:
        job = self.redis.hmget(
            self.keys.job(job_id),
            "sequence_sha",
            "variables",
            "runs",
            "batch_id",
            "sequence",
            "atoms",
            "qpu_s",
        )
        # The job's own sequence (if any) and its batch's fields, in one round trip.
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(
            self.keys.batch(job[3]), "sequence_builder", "configuration", "backend_configuration"
        )
        if job[0] is not None:
            pipe.hget(self.keys.batch_sequences(job[3]), job[0])
        batch, *shared = pipe.execute()
        # A record written before sequences were shared keeps its own copy.
        own = shared[0] if shared else job[4]
        return JobInputs(
            sequence=own or batch[0],
            variables=json.loads(job[1]) if job[1] else None,
            runs=int(job[2]),
            configuration=json.loads(batch[1]) if batch[1] else None,
            backend_configuration=batch[2],
            job_id=job_id,
            atoms=int(job[5] or 1),
            qpu_s=float(job[6] or 0.0),
        )
