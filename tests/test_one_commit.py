"""One commit per request: a Redis failure at any step of a multi-batch cancel or of a user's
creation leaves all of it done or none of it, never half. Each step is failed in turn, before
its command reaches Redis and after (the reply lost), against a real redis-server."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.accounts import Accounts
from core.audit import AuditLog
from core.db import Db
from core.status import BatchStatus, JobStatus
from core.store import Store
from tests.factories import new_batch

NS = "t"
T0 = 1_800_000_000_000_000


@dataclass
class Faults:
    """Which command to fail (1-based, counting every packet sent) and how."""

    fail_at: int = 0
    after_sending: bool = False
    sent: int = 0
    lose_next_reply: bool = False


class FailingConnection(redis.Connection):
    faults = Faults()

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        faults = self.faults
        faults.sent += 1
        if faults.sent == faults.fail_at and not faults.after_sending:
            raise redis.exceptions.ConnectionError("injected: the command never arrived")
        super().send_packed_command(command, check_health)
        if faults.sent == faults.fail_at:
            faults.lose_next_reply = True

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        reply = super().read_response(*args, **kwargs)
        if self.faults.lose_next_reply:
            self.faults.lose_next_reply = False
            self.disconnect()
            raise redis.exceptions.ConnectionError("injected: the reply was lost")
        return reply


def failing_client(redis_only: redis.Redis, faults: Faults) -> redis.Redis:
    """A client of the same server whose `faults.fail_at`-th packet fails, with no retries."""
    connection_class = type("Failing", (FailingConnection,), {"faults": faults})
    kwargs = dict(redis_only.connection_pool.connection_kwargs)
    kwargs.pop("retry", None)
    pool = redis.ConnectionPool(
        connection_class=connection_class, retry=Retry(NoBackoff(), 0), **kwargs
    )
    return redis.Redis(connection_pool=pool)


def steps_of(redis_only: redis.Redis, operation: Any) -> int:
    """How many packets `operation(client)` sends when nothing fails."""
    faults = Faults()
    operation(failing_client(redis_only, faults))
    return faults.sent


def batch_id(store: Store, project: str) -> str:
    """A new closed batch of two PENDING jobs in `project`."""
    batch, _ = new_batch(store, project=project, now=T0)
    return batch.id


@pytest.mark.parametrize("after_sending", [False, True], ids=["before", "reply-lost"])
def test_a_multi_batch_cancel_is_all_or_nothing(redis_only, after_sending):
    store = Store(Db.of(redis_only, NS))

    def cancel_three(client: redis.Redis, ids: list[str]) -> None:
        Store(Db.of(client, NS)).cancel_batches(ids, T0, "tester")

    cancel_three(redis_only, [batch_id(store, "warm")])  # its script is loaded from now on
    probe = [batch_id(store, "probe") for _ in range(3)]
    steps = steps_of(redis_only, lambda c: cancel_three(c, probe))
    assert steps >= 1
    for step in range(1, steps + 1):
        ids = [batch_id(store, f"p{step}{after_sending}") for _ in range(3)]
        faults = Faults(fail_at=step, after_sending=after_sending)
        with pytest.raises(redis.exceptions.ConnectionError):
            cancel_three(failing_client(redis_only, faults), ids)
        batches = store.get_batches(ids)
        statuses = {b.status for b in batches}
        assert statuses in ({BatchStatus.PENDING}, {BatchStatus.CANCELED}), (step, statuses)
        jobs = {j.status for b in ids for j in store.batch_jobs(b)}
        expected = JobStatus.CANCELED if statuses == {BatchStatus.CANCELED} else JobStatus.PENDING
        assert jobs == {expected}
        # Retried after the failure, it finishes the job: every batch ends cancelled once.
        outcomes = store.cancel_batches(ids, T0, "tester")
        assert all(o is None for o in outcomes.values()) or statuses == {BatchStatus.CANCELED}
        assert {b.status for b in store.get_batches(ids)} == {BatchStatus.CANCELED}


@pytest.mark.parametrize("after_sending", [False, True], ids=["before", "reply-lost"])
def test_creating_a_user_is_all_or_nothing(redis_only, after_sending):
    accounts = Accounts(redis_only, NS)
    audit = AuditLog(redis_only, NS)
    steps = steps_of(
        redis_only, lambda c: Accounts(c, NS).create_user(f"probe-{secrets.token_hex(3)}")
    )
    assert steps >= 3  # WATCH, EXISTS, then MULTI ... EXEC
    for step in range(1, steps + 1):
        name = f"ada-{step}-{after_sending}"
        faults = Faults(fail_at=step, after_sending=after_sending)
        with pytest.raises(redis.exceptions.ConnectionError):
            Accounts(failing_client(redis_only, faults), NS).create_user(name, "secret")
        created = accounts.get_user(name) is not None
        listed = name in {u.id for u in accounts.users()}
        audited = any(e.detail.get("user") == name for e in audit.entries(limit=1000))
        assert created == listed == audited, (step, created, listed, audited)
        if created:  # the reply was lost after the commit: the user is whole
            assert accounts.check_password(name, "secret") == name
