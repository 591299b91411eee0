"""Jobs dispatched in chunks (dispatch.lua, claim_jobs.lua, heartbeat.lua, commit_jobs.lua and
workers/runner.py) against a real redis-server, time passed in instead of slept."""

from __future__ import annotations

import json
import threading
import time

import pytest

from core.counters import read_counters
from core.db import Db
from core.execution import Execution, Outcome
from core.replies import Reconciled, Stale
from core.status import JobStatus
from core.timefmt import now_us
from tests.conftest import make_settings
from tests.factories import NS, QPU, SECOND, T0, new_batch
from tests.helpers import wait_for
from workers.runner import execute_chunk


def _predict(store, jobs, seconds: float) -> None:
    """What the API stores on each job: its predicted share of the QPU's time (core/costs.py)."""
    for job in jobs:
        store.redis.hset(store.keys.job(job.id), "qpu_s", repr(seconds))


def _sizes(chunks) -> list[int]:
    return [len(c.job_ids) for c in chunks]


def test_cheap_jobs_go_in_chunks_that_shrink_as_the_queue_empties(parts):
    store, control, _ = parts
    _, jobs = new_batch(store, runs=(1,) * 10)  # no prediction: they cost nothing
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    chunks = control.dispatch(lease, capacity=1, timeout_s=5, now=T0, chunk_s=0.5)
    # Half of what waits each time, so a pool's processes finish together.
    assert _sizes(chunks) == [5, 3, 1, 1]
    assert [j for c in chunks for j in c.job_ids] == [j.id for j in jobs]  # creation order
    assert len({c.delivery_id for c in chunks}) == 4


def test_a_chunk_holds_what_is_predicted_to_take_chunk_s_and_one_more_waits(parts):
    store, control, execution = parts
    _, jobs = new_batch(store, runs=(1,) * 10)
    _predict(store, jobs, 0.2)
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    first = control.dispatch(lease, capacity=1, timeout_s=5, now=T0, chunk_s=0.5)
    assert _sizes(first) == [2, 2]  # one running, one waiting for the worker
    assert control.dispatch(lease, capacity=1, timeout_s=5, now=T0, chunk_s=0.5) == []
    chunk = first[0]
    execution.claim_jobs(chunk.delivery_id, chunk.job_ids, 5, T0)
    done = [Outcome.done(j, {"counter": {"0": 1}}) for j in chunk.job_ids]
    assert execution.commit_jobs(chunk.delivery_id, done, T0) == {}
    assert _sizes(control.dispatch(lease, capacity=1, timeout_s=5, now=T0, chunk_s=0.5)) == [2]


def test_a_job_predicted_to_take_longer_than_chunk_s_goes_alone_one_at_a_time(parts):
    store, control, _ = parts
    _, jobs = new_batch(store, runs=(1, 1, 1))
    _predict(store, jobs, 2.0)
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    assert _sizes(control.dispatch(lease, capacity=1, timeout_s=5, now=T0, chunk_s=0.5)) == [1]
    assert control.dispatch(lease, capacity=1, timeout_s=5, now=T0, chunk_s=0.5) == []


def test_the_jobs_of_a_lost_chunk_run_again_each_alone(parts):
    store, control, execution = parts
    _, jobs = new_batch(store, runs=(1,) * 4)
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    first, *_ = control.dispatch(lease, capacity=1, timeout_s=60, now=T0, chunk_s=0.5)
    assert first.job_ids == (jobs[0].id, jobs[1].id)
    assert len(execution.claim_jobs(first.delivery_id, first.job_ids, 2, T0).runs) == 2
    # Its worker died: no heartbeat. Both ran once, and one of them may be what killed it.
    later = T0 + 3 * SECOND
    assert control.reconcile(lease, max_attempts=3, now=later) == Reconciled(2, 0)
    again = control.dispatch(lease, capacity=1, timeout_s=60, now=later, chunk_s=0.5)
    assert [c.job_ids for c in again] == [(jobs[0].id,), (jobs[1].id,)]
    assert [
        r.attempt
        for c in again
        for r in execution.claim_jobs(c.delivery_id, c.job_ids, 2, later).runs
    ] == [2, 2]


def test_a_chunk_is_claimed_kept_alive_and_committed_job_by_job(parts):
    store, control, execution = parts
    batch, _ = new_batch(store, runs=(4, 5, 6), sequence="S")
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    [chunk, *_] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0, chunk_s=0.5)
    chunk_jobs = [store.get_job(j) for j in chunk.job_ids]
    assert len(chunk_jobs) == 2  # half of three, rounded up
    first, second = (j.id for j in chunk_jobs)
    claim = execution.claim_jobs(chunk.delivery_id, chunk.job_ids, 5, T0, worker="host-a:1")
    # One script: every job's inputs, in the order they will run.
    assert [(r.job_id, r.attempt, r.inputs.runs, r.inputs.sequence) for r in claim.runs] == [
        (first, 1, 4, "S"),
        (second, 1, 5, "S"),
    ]
    store.cancel_jobs(batch.id, [second], T0 + SECOND, "u")
    stale = execution.heartbeat_jobs(
        chunk.delivery_id, chunk.job_ids, 5, T0 + SECOND, current=first, shots_done=3
    )
    assert stale == {second: Stale("CANCELED")}
    assert store.redis.hget(store.keys.job(first), "progress") == "3"

    began = T0 + 2 * SECOND  # it waited for its turn in the chunk
    outcomes = [
        Outcome.done(first, {"counter": {"0": 4}}, started_us=began, seconds=0.25),
        Outcome.error(second, "too late", started_us=began, seconds=0.1),
    ]
    assert execution.commit_jobs(chunk.delivery_id, outcomes, T0 + 3 * SECOND) == {
        second: Stale("CANCELED")
    }
    done = store.get_job(first)
    assert done.status is JobStatus.DONE and store.get_result(first) == '{"counter": {"0": 4}}'
    # Its run as its worker measured it, not from the chunk's claim.
    assert done.start_us == began and done.history[0].started_us == began
    assert done.history[0].worker == "host-a:1" and done.history[0].outcome == "DONE"
    assert store.get_job(second).status is JobStatus.CANCELED
    assert store.get_result(second) is None
    assert not store.redis.zscore(store.keys.qpu_inflight(QPU), first)
    assert not store.redis.zscore(store.keys.qpu_inflight(QPU), second)
    _, histograms = read_counters(store.redis.hgetall(store.keys.counters()))
    assert histograms["job_run_seconds"][("EMU_FREE", "DONE")].sum == pytest.approx(0.25)


class _CountingCommits(Execution):
    def __init__(self, db: Db) -> None:
        super().__init__(db)
        self.commits: list[int] = []

    def commit_jobs(self, delivery, outcomes, now):
        self.commits.append(len(outcomes))
        return super().commit_jobs(delivery, outcomes, now)


class _Executor:
    """Counts shots at once, except a job of 7 runs, which takes a second."""

    notes = ()

    def run(self, inputs, progress):
        if inputs.runs == 7:
            time.sleep(1.0)
        return {"counter": {"0": inputs.runs}}

    def abort(self) -> None:
        pass


def test_quick_jobs_share_a_commit_and_each_job_has_its_own_time_limit(parts, redis_only):
    store, control, _ = parts
    execution = _CountingCommits(Db.of(redis_only, NS))
    settings = make_settings("redis://127.0.0.1:1/0", job_soft_time_limit_s=0.3)
    new_batch(store, runs=(1, 2, 3, 4, 7, 6, 8, 9))
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    [quick, slow, *_] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0, chunk_s=0.5)
    happened = execute_chunk(execution, settings, _Executor(), quick.delivery_id, quick.job_ids)
    assert happened == {j: "done" for j in quick.job_ids} and execution.commits == [4]
    execution.commits.clear()
    stopped, after = slow.job_ids
    happened = execute_chunk(execution, settings, _Executor(), slow.delivery_id, slow.job_ids)
    assert happened == {stopped: "error", after: "done"}
    assert store.get_job(stopped).errors == ["The job exceeded the time limit of 0.3 s."]
    # A job that took long is committed before the next one starts.
    assert execution.commits == [1, 1]
    assert json.loads(store.get_result(after)) == {"counter": {"0": 6}}


class _SlowFirst:
    """Takes a second for a job of one run (time for a cancel to be seen), none for the others,
    and records which jobs it ran."""

    def __init__(self) -> None:
        self.ran: list[int] = []

    notes = ()

    def run(self, inputs, progress):
        if inputs.runs == 1:
            time.sleep(1.0)
        self.ran.append(inputs.runs)
        return {"counter": {"0": inputs.runs}}

    def abort(self) -> None:
        pass


def test_a_job_cancelled_while_its_chunk_runs_is_skipped_and_frees_the_qpu_at_once(parts):
    store, control, execution = parts
    settings = make_settings("redis://127.0.0.1:1/0", job_heartbeat_ttl_s=0.3)
    batch, _ = new_batch(store, runs=(1, 2, 3, 4, 5, 6))
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    [chunk, *_] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0, chunk_s=2.0)
    first, second, third = chunk.job_ids

    def cancel_the_second_once_claimed() -> None:
        wait_for(lambda: store.get_job(second).status is JobStatus.RUNNING, timeout_s=5)
        store.cancel_jobs(batch.id, [second], now_us(), "u")

    canceller = threading.Thread(target=cancel_the_second_once_claimed)
    canceller.start()
    executor = _SlowFirst()
    happened = execute_chunk(execution, settings, executor, chunk.delivery_id, chunk.job_ids)
    canceller.join()
    # The heartbeat found it cancelled while the first job ran: it never started.
    assert executor.ran == [1, 3]
    assert happened == {first: "done", second: "stale", third: "done"}
    assert store.get_job(second).status is JobStatus.CANCELED
    assert not store.redis.zscore(store.keys.qpu_inflight(QPU), second)
