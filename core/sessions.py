"""Sessions of qrmi's on-premises path (`pasqal-local`, issue #27): a Slurm job acquires a device
type, runs tasks on it, and releases it. A session is that acquisition; its tasks are the jobs of
one open batch of the session's user and project, created with its first task, so consecutive
tasks keep the QPU as they would on Pasqal's hardware (the open-batch limits apply: a batch
they end, the next task opens another). qrmi names tasks by integers: each job's number comes
from one counter of the cluster, and its id is derived from it (`job_id_of`), so no mapping
is written after a job is committed.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

import redis

from core.keys import Keys

#: Where the API serves qrmi's on-premises routes (api/pasqal_local.py), one prefix per device
#: type below it: what cluster.json's `pasqal_local_url` names.
PASQAL_LOCAL_PREFIX = "/pasqal-local"

#: Longest Slurm job id kept (Slurm's are integers, or `123_4` for array tasks).
MAX_SLURM_JOB_ID_CHARS = 64


@dataclass(frozen=True)
class Session:
    id: str
    user_id: str
    unix_uid: int
    project_id: str
    device_type: str
    slurm_job_id: str
    created_us: int
    #: When it was released (None: still held).
    closed_us: int | None
    #: Its open batch now (None before its first task, or once a batch of it ended and no
    #: task came since).
    batch_id: str | None


class Sessions:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis, self.keys, self.namespace = client, Keys(namespace), namespace

    def open(
        self,
        user_id: str,
        unix_uid: int,
        project_id: str,
        device_type: str,
        slurm_job_id: str,
        now: int,
    ) -> Session:
        session = Session(
            id=secrets.token_hex(16),
            user_id=user_id,
            unix_uid=unix_uid,
            project_id=project_id,
            device_type=device_type,
            slurm_job_id=slurm_job_id,
            created_us=now,
            closed_us=None,
            batch_id=None,
        )
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            self.keys.session(session.id),
            mapping={
                "id": session.id,
                "user_id": user_id,
                "unix_uid": str(unix_uid),
                "project_id": project_id,
                "device_type": device_type,
                "slurm_job_id": slurm_job_id,
                "created_us": str(now),
            },
        )
        pipe.zadd(self.keys.sessions(), {session.id: now})
        pipe.zadd(self.keys.held_sessions(), {session.id: now})
        pipe.zadd(self.keys.slurm_job_sessions(slurm_job_id), {session.id: now})
        pipe.execute()
        return session

    def get(self, session_id: str) -> Session | None:
        return _session(self.redis.hgetall(self.keys.session(session_id)))

    def get_many(self, session_ids: list[str]) -> list[Session]:
        """The sessions of `session_ids` that exist, in order, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for session_id in session_ids:
            pipe.hgetall(self.keys.session(session_id))
        return [s for h in pipe.execute() if (s := _session(h)) is not None]

    def of_slurm_job(self, slurm_job_id: str) -> list[Session]:
        """The sessions a Slurm job opened, oldest first."""
        return self.get_many(self.redis.zrange(self.keys.slurm_job_sessions(slurm_job_id), 0, -1))

    def since(self, since_us: int, limit: int = 100_000) -> list[Session]:
        """Sessions opened at or after `since_us`, oldest first (at most `limit`)."""
        return self.get_many(
            self.redis.zrangebyscore(self.keys.sessions(), since_us, "+inf", 0, limit)
        )

    def batches(self, session_id: str) -> list[str]:
        """Every batch the session's tasks ran in, oldest first."""
        return list(self.redis.zrange(self.keys.session_batches(session_id), 0, -1))

    def use_batch(self, session_id: str, batch_id: str, now: int) -> None:
        """Makes `batch_id` the session's open batch (written before the batch is committed: a
        batch that failed to commit is simply not found, and the next task opens another)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.session(session_id), "batch_id", batch_id)
        pipe.zadd(self.keys.session_batches(session_id), {batch_id: now})
        pipe.execute()

    def close(self, session_id: str, now: int) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(self.keys.session(session_id), "closed_us", str(now))
        pipe.zrem(self.keys.held_sessions(), session_id)
        pipe.execute()

    def held(self, limit: int = 100) -> list[Session]:
        """Sessions not released yet, newest first (at most `limit`)."""
        return self.get_many(self.redis.zrevrange(self.keys.held_sessions(), 0, limit - 1))

    def next_job_number(self, user_id: str) -> int:
        """A new task number, noted among the user's (before its job is committed: a number
        whose job failed to commit lists as nothing)."""
        number = int(self.redis.incr(self.keys.session_job_counter()))
        self.redis.zadd(self.keys.user_session_jobs(user_id), {str(number): number})
        return number

    def job_numbers(self, user_id: str, limit: int) -> list[int]:
        """The user's newest `limit` task numbers, newest first."""
        found = self.redis.zrevrange(self.keys.user_session_jobs(user_id), 0, limit - 1)
        return [int(n) for n in found]

    def job_id_of(self, number: int) -> str:
        """The id of the job behind task `number`: derived, never stored."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"tweezer:{self.namespace}:task:{number}"))

    def batch_id_of(self, session_id: str, number: int) -> str:
        """The id of the open batch a session opens for its task `number`."""
        name = f"tweezer:{self.namespace}:session:{session_id}:{number}"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def _session(h: dict[str, str]) -> Session | None:
    """A session from its hash (None: no such session)."""
    if not h:
        return None
    closed = h.get("closed_us")
    return Session(
        id=h["id"],
        user_id=h["user_id"],
        unix_uid=int(h["unix_uid"]),
        project_id=h["project_id"],
        device_type=h["device_type"],
        slurm_job_id=h["slurm_job_id"],
        created_us=int(h["created_us"]),
        closed_us=None if closed is None else int(closed),
        batch_id=h.get("batch_id"),
    )
