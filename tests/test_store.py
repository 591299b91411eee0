"""The Lua store against a real redis-server, time passed in (`now=`) instead of slept."""

from __future__ import annotations

import json
import re

import pytest
import redis

from core.accounts import Accounts
from core.audit import AuditLog
from core.costs import Costs, emulator_default
from core.counters import parse_totals
from core.db import Db
from core.decay import decayed
from core.device_types import DeviceKind
from core.errors import QuotaExceeded, RateLimited
from core.execution import Execution, Outcome
from core.keys import _PATTERNS, Keys, lua_functions
from core.qpu import Lease, OpenBatchHold
from core.ratelimit import RateLimiter
from core.replies import Reconciled
from core.status import BatchStatus, HoldEnd, JobStatus
from core.store import BatchQuery, JobQuery, Page, Store
from core.timefmt import now_us
from scheduler.loop import Scheduler
from scheduler.reader import SnapshotReader
from tests.conftest import make_settings
from tests.factories import NS, QPU, SECOND, T0, new_batch
from workers.runner import execute_job


def test_every_key_is_named_the_same_in_lua(redis_only):
    keys = Keys(NS)
    for name, pattern in _PATTERNS.items():
        args = [f"a{i}" for i in range(len(re.findall(r"\{\d\}", pattern)))]
        call = f"return K.{name}({', '.join(repr(a) for a in args)})"
        probe = redis_only.register_script("local NS = ARGV[1]\n" + lua_functions() + call)
        assert probe(keys=[], args=[NS]) == getattr(keys, name)(*args)


def test_creation_order_counts_and_filters(parts):
    store, _, _ = parts
    first, first_jobs = new_batch(store, runs=(5, 50), tags=("x",))
    second, second_jobs = new_batch(store, runs=(7,), open_=True, priority="HIGH", now=T0)
    # Same `now` for both: creation times stay unique and increasing all the same.
    assert second.created_us > first.created_us
    assert [j.created_us for j in first_jobs] == sorted(j.created_us for j in first_jobs)
    assert store.get_batch(first.id).counts == {
        "PENDING": 2,
        "RUNNING": 0,
        "DONE": 0,
        "ERROR": 0,
        "CANCELED": 0,
    }

    total, found = store.query_batches(BatchQuery(), Page())
    assert total == 2 and [b.id for b in found] == [second.id, first.id]
    assert store.query_batches(BatchQuery(tag="x"), Page())[0] == 1
    assert store.query_batches(BatchQuery(open=True, queue_priority=["HIGH"]), Page())[0] == 1
    assert store.query_batches(BatchQuery(status=["DONE", "RUNNING"]), Page())[0] == 0
    total, ids = store.query_job_ids(JobQuery(min_runs=6, max_runs=50), Page(desc=False))
    assert (total, ids) == (2, [first_jobs[1].id, second_jobs[0].id])
    assert store.query_job_ids(JobQuery(start_us=second.created_us), Page())[0] == 1
    assert store.query_job_ids(JobQuery(id=[first_jobs[0].id, "nope"]), Page())[0] == 1
    assert not redis_only_tmp_keys(store)


def redis_only_tmp_keys(store: Store) -> list[str]:
    return list(store.redis.scan_iter(f"{NS}:tmp:*"))


def test_dispatch_claim_commit_and_duplicate_delivery(parts):
    store, control, execution = parts
    batch, jobs = new_batch(store)
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    assert lease is not None and lease.batch_id == batch.id
    assert store.get_batch(batch.id).status is BatchStatus.RUNNING

    [delivery] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0)
    assert delivery.job_ids[0] == jobs[0].id  # creation order
    assert control.dispatch(lease, capacity=1, timeout_s=5, now=T0) == []  # capacity reached
    assert execution.claim(delivery.job_ids[0], delivery.delivery_id, 5, T0) == 1
    assert execution.claim(delivery.job_ids[0], delivery.delivery_id, 5, T0) is None  # duplicate
    assert execution.commit_done(
        delivery.job_ids[0], delivery.delivery_id, {"counter": {"0": 10}}, T0
    )
    assert not execution.commit_done(delivery.job_ids[0], delivery.delivery_id, {"counter": {}}, T0)
    assert store.get_result(jobs[0].id) == '{"counter": {"0": 10}}'
    assert store.get_batch(batch.id).counts["DONE"] == 1  # not doubled


def test_cancelling_a_dispatched_unclaimed_job_frees_the_qpu_at_once(parts):
    """qrmi's start, stop, start: the cancelled batch's job was dispatched but no worker took it
    yet. The QPU is released in the same pass (not after the dispatch timeout), the next batch
    gets it, and the late claim of the cancelled delivery is refused."""
    store, control, execution = parts
    first, _ = new_batch(store, runs=(10,))
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    [d] = control.dispatch(lease, capacity=1, timeout_s=60, now=T0)
    store.cancel_batch(first.id, T0, "tester")
    second, _ = new_batch(store, runs=(10,))
    assert control.release(lease)
    assert control.acquire(QPU, ttl_s=10, now=T0).batch_id == second.id
    assert execution.claim(d.job_ids[0], d.delivery_id, 5, T0) is None


def test_lost_worker_is_requeued_then_failed_at_the_attempt_cap(parts):
    store, control, execution = parts
    batch, jobs = new_batch(store, runs=(10,))
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    now = T0
    for attempt in (1, 2):
        [d] = control.dispatch(lease, capacity=1, timeout_s=5, now=now)
        assert execution.claim(d.job_ids[0], d.delivery_id, heartbeat_ttl_s=2, now=now) == attempt
        now += 3 * SECOND  # no heartbeat: the worker is gone
        assert control.reconcile(lease, max_attempts=2, now=now) == (
            Reconciled(requeued=1) if attempt == 1 else Reconciled(failed=1)
        )
        # The lost delivery can no longer commit anything.
        assert not execution.commit_done(d.job_ids[0], d.delivery_id, {"counter": {}}, now)
    job = store.get_job(jobs[0].id)
    assert job.status is JobStatus.ERROR and "lost 2 times" in job.errors[0]
    assert store.get_batch(batch.id).status is BatchStatus.DONE


def test_unclaimed_dispatch_is_sent_again_with_a_new_delivery(parts):
    store, control, execution = parts
    new_batch(store, runs=(10,))
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    [first] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0)
    assert control.reconcile(lease, max_attempts=3, now=T0 + 6 * SECOND) == Reconciled(1, 0)
    [second] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0 + 6 * SECOND)
    assert second.job_ids[0] == first.job_ids[0] and second.delivery_id != first.delivery_id
    assert execution.claim(first.job_ids[0], first.delivery_id, 5, T0) is None  # the old message
    assert execution.claim(second.job_ids[0], second.delivery_id, 5, T0) == 1  # not an attempt lost


def test_cancel_racing_a_commit_keeps_one_consistent_outcome(parts):
    store, control, execution = parts
    batch, _ = new_batch(store, runs=(10,))
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    [d] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0)
    execution.claim(d.job_ids[0], d.delivery_id, 5, T0)
    store.cancel_batch(batch.id, T0, "tester")
    assert not execution.commit_done(d.job_ids[0], d.delivery_id, {"counter": {"0": 10}}, T0)
    assert store.get_job(d.job_ids[0]).status is JobStatus.CANCELED
    assert store.get_result(d.job_ids[0]) is None
    assert control.release(lease)  # cancelled, nothing in flight: the QPU is free


def test_stale_scheduler_is_fenced_and_successor_resumes_the_batch(parts, redis_only):
    store, control, _ = parts
    batch, _ = new_batch(store, runs=(10, 20))
    old = control.acquire(QPU, ttl_s=0.2, now=T0)
    redis_only.delete(Keys(NS).qpu_lease(QPU))  # the lease expired while its holder slept
    new = control.acquire(QPU, ttl_s=10, now=T0)
    assert new.batch_id == batch.id and new.epoch == old.epoch + 1
    assert control.dispatch(old, capacity=5, timeout_s=5, now=T0) == []  # fenced
    assert not control.renew(old, ttl_s=10)
    assert len(control.dispatch(new, capacity=5, timeout_s=5, now=T0)) == 2


def test_priority_order_and_open_batch_timeout(parts):
    store, control, _ = parts
    low, _ = new_batch(store, priority="LOW")
    high, _ = new_batch(store, priority="HIGH")
    opened, _ = new_batch(store, runs=(), open_=True, priority="HIGH")
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    assert lease.batch_id == high.id
    store.cancel_batch(high.id, T0, "tester")
    assert control.release(lease)
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    assert lease.batch_id == opened.id  # HIGH before the older LOW
    hold = OpenBatchHold(idle_s=2, contended_idle_s=2, max_hold_s=3600)
    assert not control.expire_open_batch(lease, hold, now=T0 + SECOND)
    assert control.expire_open_batch(lease, hold, now=T0 + 3 * SECOND) == HoldEnd.IDLE
    assert store.get_batch(opened.id).status is BatchStatus.TIMED_OUT
    assert control.release(lease)
    assert control.acquire(QPU, ttl_s=10, now=T0).batch_id == low.id


def test_fair_share_between_projects_within_a_priority_level(parts):
    """Two projects flood one QPU, one after the other: within a level the QPU alternates
    between them (the one with less QPU time so far first), each project's batches in
    submission order; a higher level still goes first."""
    store, control, _ = parts
    a = [new_batch(store, runs=(1,), project="A")[0].id for _ in range(3)]
    b = [new_batch(store, runs=(1,), project="B")[0].id for _ in range(3)]
    urgent = new_batch(store, runs=(1,), project="A", priority="HIGH")[0].id
    order = []
    now = T0
    while lease := control.acquire(QPU, ttl_s=10, now=now):
        order.append(lease.batch_id)
        store.cancel_batch(lease.batch_id, now, "tester")
        assert control.release(lease, now=now + SECOND // 2)  # each held it half a second
        now += SECOND
    assert order == [urgent, b[0], a[0], b[1], a[1], b[2], a[2]]


def test_counted_quotas_are_checked_at_commit_and_freed_by_finishing(parts, redis_only):
    store, control, execution = parts
    accounts = Accounts(redis_only, NS)
    project = accounts.create_project("quota", project_id="q").id
    accounts.update_project(project, ["EMU_FREE"], quotas={"max_queued_jobs": 3})
    first, _ = new_batch(store, runs=(1, 1), project=project)
    with pytest.raises(QuotaExceeded, match="2 unfinished jobs of at most 3"):
        new_batch(store, runs=(1, 1), project=project)
    new_batch(store, runs=(1,), project=project)  # exactly at the limit
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    [d] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0)
    execution.claim(d.job_ids[0], d.delivery_id, 5, T0)
    assert execution.commit_done(d.job_ids[0], d.delivery_id, {"counter": {"1": 1}}, T0)
    new_batch(store, runs=(1,), project=project)  # a job ended DONE: room for one more
    store.cancel_batch(first.id, T0, "tester")  # its other job ends CANCELED: one more
    new_batch(store, runs=(1,), project=project)
    with pytest.raises(QuotaExceeded):
        new_batch(store, runs=(1,), project=project)

    accounts.update_project(project, ["EMU_FREE"], quotas={"max_queued_jobs": None})
    accounts.update_project(project, ["EMU_FREE"], quotas={"max_open_batches": 1})
    opened, _ = new_batch(store, runs=(), open_=True, project=project)
    with pytest.raises(QuotaExceeded, match="max_open_batches"):
        new_batch(store, runs=(), open_=True, project=project)
    new_batch(store, runs=(1,), project=project)  # closed batches do not count
    store.close_batch(opened.id, T0, "tester")
    new_batch(store, runs=(), open_=True, project=project)
    total, _ = store.query_batches(BatchQuery(project_id=[project]), Page())
    assert total == 7  # the refused batches wrote nothing


HOLD = OpenBatchHold(idle_s=300, contended_idle_s=30, max_hold_s=3600)


def test_an_open_batch_idles_shorter_while_another_project_waits(parts):
    store, control, _ = parts
    opened, _ = new_batch(store, runs=(), open_=True, project="A")
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    assert lease.batch_id == opened.id
    idle = T0 + 31 * SECOND
    new_batch(store, runs=(1,), project="A")  # its own project waiting does not count
    assert control.expire_open_batch(lease, HOLD, now=idle) is None
    other, _ = new_batch(store, runs=(1,), project="B")
    assert control.expire_open_batch(lease, HOLD, now=T0 + 29 * SECOND) is None
    assert control.expire_open_batch(lease, HOLD, now=idle) == HoldEnd.CONTENDED_IDLE
    assert store.get_batch(opened.id).status is BatchStatus.TIMED_OUT
    assert control.release(lease, now=idle)  # A held it 31 s
    assert control.acquire(QPU, ttl_s=10, now=idle).batch_id == other.id  # B: no usage yet


def test_an_open_batch_kept_busy_ends_at_its_longest_hold(parts):
    """Jobs keep coming, so it is never idle: at `max_hold_s` it ends all the same, its
    unfinished jobs CANCELED (a running one's result refused), and the QPU drains and frees."""
    store, control, execution = parts
    opened, jobs = new_batch(store, runs=(1, 1), open_=True)
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    [d] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0)
    execution.claim(d.job_ids[0], d.delivery_id, 5, T0)
    almost = T0 + 3599 * SECOND
    assert control.expire_open_batch(lease, HOLD, now=almost) is None
    assert control.expire_open_batch(lease, HOLD, now=almost + SECOND) == HoldEnd.MAX_HOLD
    ended = store.get_batch(opened.id)
    assert ended.status is BatchStatus.TIMED_OUT and not ended.open
    assert {j.status for j in store.get_jobs(j.id for j in jobs)} == {JobStatus.CANCELED}
    assert not control.release(lease)  # the running job is still in flight
    assert not execution.commit_done(d.job_ids[0], d.delivery_id, {"counter": {}}, almost)
    assert control.release(lease)


def test_stored_bytes_count_inputs_results_and_reservations(parts, redis_only):
    """What a project stores, as its quota counts it: records and each distinct sequence once
    at commit, a reservation per unfinished job replaced by its real result, and the sequences
    given back once the batch's retention has passed."""
    store, control, execution = parts
    text = "S" * 10_000
    batch, jobs = new_batch(store, (1, 1, 1), project="bytes", sequence=text, reserved_bytes=500)
    counted = store.stored_bytes("bytes")
    # The sequence once (three copies sent), three reservations, and records.
    assert 10_000 + 1500 < counted < 10_000 + 1500 + 2 * 1024 + 3 * 2048
    assert [j.sequence for j in store.get_jobs(j.id for j in jobs)] == [text] * 3
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    assert lease.batch_id == batch.id
    [d] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0)
    [run] = execution.claim_jobs(d.delivery_id, d.job_ids, 5, T0).runs
    assert run.inputs.sequence == text
    document = {"counter": {"1": 1}, "raw": ["1"]}
    before_commit = store.stored_bytes("bytes")
    assert execution.commit_done(d.job_ids[0], d.delivery_id, document, T0)
    assert store.stored_bytes("bytes") == before_commit + len(json.dumps(document)) - 500
    store.cancel_batch(batch.id, T0, "tester")  # two reservations released
    assert store.stored_bytes("bytes") == before_commit + len(json.dumps(document)) - 1500

    finished = store.stored_bytes("bytes")
    assert store.purge_inputs(retention_s=3600, now=T0 + 3599 * SECOND) == 0
    assert store.purge_inputs(retention_s=3600, now=T0 + 3600 * SECOND) == 1
    purged = store.get_batch(batch.id)
    assert purged.inputs_purged_us == T0 + 3600 * SECOND and purged.sequence_builder is None
    assert [j.sequence for j in store.get_jobs(j.id for j in jobs)] == [None] * 3
    # Its sequence_builder ("{}") and the one shared sequence are given back.
    assert store.stored_bytes("bytes") == finished - (2 + 64 + 10_000)
    assert store.get_result(d.job_ids[0]) is not None  # results stay


def test_schedulers_serve_the_qpus_workers_announce_while_they_are_alive(redis_only):
    """A QPU added on another host (its worker announces itself) is served without a restart;
    once its workers stop announcing, no new batch is granted to it."""
    settings = make_settings("redis://127.0.0.1:1/0", namespace=NS, qpus={"EMU_FREE": 1})
    scheduler = Scheduler(settings, Db.of(redis_only, settings.namespace), producer=None)
    control = scheduler.control
    assert scheduler.serving(T0) == ["EMU_FREE-0"]
    control.announce("EMU_FREE-1", T0)
    control.announce("FRESNEL-0", T0)  # a device type this cluster does not serve
    assert scheduler.serving(T0 + SECOND) == ["EMU_FREE-0", "EMU_FREE-1"]
    assert scheduler.serving(T0 + 31 * SECOND) == ["EMU_FREE-0"]  # it went quiet
    scheduler.leases["EMU_FREE-1"] = Lease("EMU_FREE-1", "token", 1, "batch")
    assert scheduler.serving(T0 + 31 * SECOND) == ["EMU_FREE-0", "EMU_FREE-1"]  # still driven


def test_every_batch_change_is_in_the_audit_log(parts, redis_only):
    store, _, _ = parts
    batch, jobs = new_batch(store, runs=(1, 2))
    store.cancel_jobs(batch.id, [jobs[0].id], T0, "alice")
    store.set_tags(batch.id, ["x"], T0, "alice")
    store.cancel_batch(batch.id, T0, "bob")
    entries = AuditLog(redis_only, NS).entries()
    assert [(e.actor, e.action, e.batch_id) for e in entries] == [
        ("bob", "batch.cancel", batch.id),
        ("alice", "batch.set_tags", batch.id),
        ("alice", "batch.cancel_jobs", batch.id),
        ("u", "batch.create", batch.id),
    ]
    assert entries[2].detail == {"jobs": [jobs[0].id], "count": 1}
    assert all(e.project_id == "p" for e in entries)
    assert [e.action for e in AuditLog(redis_only, NS).entries(actor="alice", limit=1)] == [
        "batch.set_tags"
    ]


class _DroppedConnection(Execution):
    """The real Execution, whose first `failures` claims lose their reply to a dropped
    connection after the claim was made (the fault of test_reliability's CLIENT KILL, at its
    worst moment)."""

    def __init__(self, db: Db, failures: int) -> None:
        super().__init__(db)
        self.failures = failures

    def claim_jobs(self, *args, **kwargs):
        claim = super().claim_jobs(*args, **kwargs)
        if self.failures > 0:
            self.failures -= 1
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        return claim


class _Counting:
    """An executor that counts shots without emulating (the runner is under test here)."""

    notes = ()

    def run(self, inputs, progress):
        return {"counter": {"0": inputs.runs}}

    def abort(self) -> None:
        pass


@pytest.mark.parametrize("failures", [1, 3])
def test_a_redis_failure_is_never_recorded_as_the_jobs_error(parts, redis_only, failures):
    """A blip is read through (the worker claims again and finds its own claim, not a second
    attempt); a longer failure leaves the job RUNNING for the reconciler, which runs it again:
    never an ERROR blaming the user's job for the store's failure."""
    store, control, _ = parts
    settings = make_settings("redis://127.0.0.1:1/0", job_heartbeat_ttl_s=2.0)
    _, [job] = new_batch(store, runs=(7,))
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    [d] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0)
    flaky = _DroppedConnection(Db.of(redis_only, NS), failures)
    if failures < 3:
        assert execute_job(flaky, settings, _Counting(), d.job_ids[0], d.delivery_id) == "done"
        assert store.get_result(job.id) == '{"counter": {"0": 7}}'
        assert [a.attempt for a in store.get_job(job.id).history] == [1]
        return
    with pytest.raises(redis.exceptions.ConnectionError):
        execute_job(flaky, settings, _Counting(), d.job_ids[0], d.delivery_id)
    assert store.get_job(job.id).status is JobStatus.RUNNING and not store.get_job(job.id).errors
    later = now_us() + 3 * SECOND  # past the heartbeat deadline
    assert control.reconcile(lease, max_attempts=3, now=later) == Reconciled(1, 0)  # queued again
    assert store.get_job(job.id).status is JobStatus.PENDING


def test_usage_counters_of_an_earlier_version_are_migrated(parts, redis_only):
    """`queued_jobs` became `unfinished_jobs`: a project's count carries over, once."""
    store, _, _ = parts
    redis_only.sadd(store.keys.projects(), "p")
    new_batch(store, runs=(1, 2))  # counted under the new name: 2
    redis_only.hset(store.keys.project_usage("p"), "queued_jobs", 3)  # left by the old version
    assert store.migrate() == 2  # the usage, and the totals counted from the records
    assert store.migrate() == 0
    usage = redis_only.hgetall(store.keys.project_usage("p"))
    assert usage["unfinished_jobs"] == "5" and "queued_jobs" not in usage


def test_totals_of_an_earlier_version_are_counted_from_the_records_once(parts, redis_only):
    """Records written before `totals` existed are counted at the first migration; from then
    on every move keeps them (core/counters.py)."""
    store, control, execution = parts
    first, _ = new_batch(store, runs=(1, 2))
    new_batch(store, runs=(3,))
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    [d] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0)
    execution.claim(d.job_ids[0], d.delivery_id, 5, T0)
    redis_only.delete(store.keys.totals())  # as an earlier version left it
    redis_only.delete(store.keys.project_batch_counts("p"))
    redis_only.sadd(store.keys.projects(), "p")
    assert store.migrate() == 1
    assert redis_only.hgetall(store.keys.project_batch_counts("p")) == {
        "RUNNING": "1",
        "PENDING": "1",
    }
    expected = {
        ("batch", "EMU_FREE", "RUNNING"): 1,
        ("batch", "EMU_FREE", "PENDING"): 1,
        ("job", "EMU_FREE", "RUNNING"): 1,
        ("job", "EMU_FREE", "PENDING"): 2,
    }
    totals = parse_totals(redis_only.hgetall(store.keys.totals()))
    assert {k: v for k, v in totals.items() if v} == expected
    execution.commit_done(d.job_ids[0], d.delivery_id, {"counter": {"0": 1}}, T0)
    assert store.migrate() == 0  # counted once; the commit moved them
    totals = parse_totals(redis_only.hgetall(store.keys.totals()))
    assert totals[("job", "EMU_FREE", "DONE")] == 1 and totals[("job", "EMU_FREE", "RUNNING")] == 0
    assert first.id


def test_a_released_batch_counts_its_qpu_time_as_decayed_usage(parts, redis_only):
    """release_qpu.lua adds the time a batch held its QPU to its project's usage, after
    decaying what was there by the half-life: the rule scheduler/policies.decayed() applies."""
    store, control, _ = parts
    keys = store.keys
    for start, held, project in ((T0, 30, "p"), (T0 + 3600 * SECOND, 10, "p")):
        batch, _ = new_batch(store, runs=(1,), project=project, now=start)
        lease = control.acquire(QPU, ttl_s=10, now=start)
        assert lease.batch_id == batch.id
        store.cancel_batch(batch.id, start, "tester")
        assert control.release(lease, usage_half_life_s=3600.0, now=start + held * SECOND)
    usage = float(redis_only.hget(keys.device_usage("EMU_FREE"), "p"))
    expected = decayed(30.0, T0 / SECOND + 30, T0 / SECOND + 3610, 3600.0) + 10
    assert usage == pytest.approx(expected, abs=1e-5)  # 30 s, halved after an hour, + 10 s


def test_finished_jobs_fit_the_emulator_cost_model(parts, redis_only):
    """commit_job.lua folds each first-attempt run into seconds per job per (1 + µs of pulse)
    by atom count; core/costs.py predicts from the fit, or from its default before any."""
    store, control, execution = parts
    settings = make_settings("redis://127.0.0.1:1/0", namespace=NS)
    costs = Costs(redis_only, settings)
    assert costs.model("EMU_FREE", DeviceKind.EMULATOR).job_seconds(4, 1000, 100) == (
        pytest.approx(2 * emulator_default(4))
    )
    for run_s in (2.0, 4.0):
        _, [job] = new_batch(store, runs=(1,))
        redis_only.hset(store.keys.job(job.id), mapping={"atoms": 4, "duration_ns": 1000})
        lease = control.acquire(QPU, ttl_s=10, now=T0)
        [sent] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0)
        execution.claim(sent.job_ids[0], sent.delivery_id, 5, T0)
        execution.commit_done(sent.job_ids[0], sent.delivery_id, {}, T0 + int(run_s * SECOND))
        assert control.release(lease)
    # 2 s for a 1 µs pulse: 1.0 per (1 + µs); then 4 s: 0.8 * 1.0 + 0.2 * 2.0.
    model = costs.model("EMU_FREE", DeviceKind.EMULATOR)
    assert model.fitted == {4: pytest.approx(1.2)}
    assert model.job_seconds(4, 1000, 100) == pytest.approx(2.4)
    assert model.job_seconds(6, 1000, 100) == pytest.approx(2 * emulator_default(6))


def test_the_fit_divides_out_a_jobs_cost_scale_and_a_workers_notes_reach_its_warnings(
    parts, redis_only
):
    """A job at a finer time step (core/engines.py cost_scale 2) that ran 4 s for a 1 µs pulse
    folds as 1.0 per (1 + µs) at the engine's defaults: one user's settings never reprice the
    next user's jobs. What the worker noted on the run is added to the job's warnings."""
    store, control, execution = parts
    _, [job] = new_batch(store, runs=(1,))
    redis_only.hset(
        store.keys.job(job.id),
        mapping={"atoms": 5, "duration_ns": 1000, "cost_scale": "2.0", "warnings": '["a"]'},
    )
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    [sent] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0)
    execution.claim(sent.job_ids[0], sent.delivery_id, 5, T0)
    done = Outcome.done(job.id, {}, warnings=("ran on the CPU",))
    assert execution.commit_jobs(sent.delivery_id, [done], T0 + 4 * SECOND) == {}
    assert control.release(lease)
    model = Costs(redis_only, make_settings("redis://127.0.0.1:1/0", namespace=NS)).model(
        "EMU_FREE", DeviceKind.EMULATOR
    )
    assert model.fitted == {5: pytest.approx(1.0)}
    assert store.get_job(job.id).warnings == ["a", "ran on the CPU"]


def test_reads_and_rate_limits_write_nothing_to_the_aof(parts, redis_only):
    """A list (whose script uses temporary keys) and a rate-limit check change nothing durable:
    the AOF does not grow, so no read waits for an fsync. The limit still holds exactly across
    API processes (two limiters on two connections, as two gunicorn workers)."""
    store, _, _ = parts
    first, _ = new_batch(store, project="p1")
    second, _ = new_batch(store, project="p2", now=T0 + SECOND)
    aof = int(redis_only.info("persistence")["aof_current_size"])

    kwargs = redis_only.connection_pool.connection_kwargs
    other = redis.Redis(
        host=kwargs["host"], port=kwargs["port"], password=kwargs["password"], decode_responses=True
    )
    limiters = [
        RateLimiter(Db.of(redis_only, NS), per_s=1, burst=3),
        RateLimiter(Db.of(other, NS), 1, 3),
    ]
    for i in range(3):
        limiters[i % 2].check("token", T0)
    with pytest.raises(RateLimited):
        limiters[1].check("token", T0)  # the fourth at once, whichever process takes it
    limiters[0].check("token", T0 + SECOND)  # one more a second later
    total, found = store.query_batches(
        BatchQuery(project_id=["p1", "p2"], status=["PENDING"], id=[first.id, second.id]), Page()
    )
    assert total == 2 and [b.id for b in found] == [second.id, first.id]
    assert int(redis_only.info("persistence")["aof_current_size"]) == aof
    assert redis_only.get(Keys(NS).rate("token"))  # in memory all the same
    assert not list(redis_only.scan_iter(Keys(NS).tmp("*")))  # no temporary key left


@pytest.mark.parametrize("desc", [True, False])
def test_lists_page_and_count_exactly_whatever_the_filters(parts, desc):
    """Single-index filters, and projects x statuses (counted), take query.lua's fast path (a
    walk of one index); other unions and time bounds the general one: both page and count
    exactly."""
    store, _, _ = parts
    batches = []
    for i in range(40):
        tags = ("even",) if i % 2 == 0 else ()
        batch, _ = new_batch(store, project=f"p{i % 3}", tags=tags, now=T0 + i * SECOND)
        if i % 5 == 0:
            store.cancel_batch(batch.id, T0 + i * SECOND, "u")
        batches.append(store.get_batch(batch.id))

    def matches(b, q: BatchQuery) -> bool:
        return (
            (not q.project_id or b.project_id in q.project_id)
            and (not q.status or b.status in q.status)
            and (q.tag is None or q.tag in b.tags)
            and (q.start_us is None or b.created_us >= q.start_us)
        )

    queries = [
        BatchQuery(),
        BatchQuery(project_id=["p1"]),
        BatchQuery(status=["CANCELED"]),
        BatchQuery(project_id=["p0"], status=["PENDING"]),
        BatchQuery(project_id=["p1"], tag="even"),
        BatchQuery(project_id=["p0", "p2"], status=["CANCELED"]),  # a union, counted
        BatchQuery(project_id=["p0", "p1"], status=["PENDING", "CANCELED"]),  # two, counted
        BatchQuery(project_id=["p0", "p2"]),  # a union, not counted: general path
        BatchQuery(status=["PENDING"], start_us=T0 + 10 * SECOND),  # time bound: general path
        BatchQuery(status=["DONE"]),  # nothing
    ]
    for query in queries:
        expected = sorted(
            (b for b in batches if matches(b, query)), key=lambda b: b.created_us, reverse=desc
        )
        for offset, limit in [(0, 100), (0, 3), (5, 4), (12, 10), (100, 5)]:
            total, found = store.query_batches(query, Page(offset, limit, desc))
            assert total == len(expected), query
            assert [b.id for b in found] == [b.id for b in expected[offset : offset + limit]], (
                query,
                offset,
                limit,
            )


def test_the_snapshot_reads_every_waiting_batch_however_many_calls_it_takes(parts, monkeypatch):
    """The waiting batches' fields come in one script reply per ROWS_PER_CALL batches."""
    store, _, _ = parts
    monkeypatch.setattr("scheduler.reader.ROWS_PER_CALL", 2)
    made = [new_batch(store, runs=(1,) * (i + 1), now=T0 + i)[0] for i in range(5)]
    store.redis.hset(store.keys.batch(made[3].id), "predicted_qpu_s", "2.5")
    read = SnapshotReader(Db.of(store.redis, NS), 3600).read("EMU_FREE", [], 100, T0 + 10)
    assert [w.id for w in read.waiting] == [b.id for b in made]
    assert [w.jobs for w in read.waiting] == [1, 2, 3, 4, 5]
    assert read.waiting[3].predicted_qpu_s == 2.5 and read.waiting[0].predicted_qpu_s == 0.0
