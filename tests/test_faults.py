"""Failures the platform must survive, on a cluster with short timers: a worker process killed
mid-job, and an open batch abandoned by its user."""

from __future__ import annotations

import os
import signal

import psutil
import pytest
from pasqal_cloud.errors import JobCreationError

from core.db import Db
from core.hints import QPU_SECONDS_VARIABLE
from core.store import Store
from tests import sequences
from tests.helpers import wait_for


@pytest.fixture(scope="module")
def fast(start_cluster):
    return start_cluster(
        open_batch_timeout_s=2.0,
        job_heartbeat_ttl_s=2.0,
        dispatch_timeout_s=4.0,
        lease_ttl_s=2.0,
        scheduler_tick_s=0.2,
    )


@pytest.fixture
def fast_sdk(fast):
    return fast.sdk(fast.new_account())


def running_pool_child(fast) -> psutil.Process:
    worker = psutil.Process(fast.cluster.child("worker EMU_FREE-0").process.pid)
    children = worker.children()
    assert len(children) == 1, children  # concurrency 1: one prefork child
    return children[0]


def test_pool_child_killed_mid_job_still_ends_done(fast, fast_sdk):
    batch = fast_sdk.create_batch(sequences.slow(), [{"runs": 10}], device_type="EMU_FREE")
    job = batch.ordered_jobs[0]
    wait_for(lambda: fast_sdk.get_job_status(job.id).value == "RUNNING", timeout_s=30)
    victim = running_pool_child(fast)
    os.kill(victim.pid, signal.SIGKILL)

    finished = fast_sdk.get_job(job.id, wait=True)
    assert finished.status == "DONE"
    assert sum(finished.result.values()) == 10
    assert fast.store.get_job(job.id).attempts == 2  # killed once, then run to the end
    assert fast_sdk.get_batch(batch.id).status == "DONE"


def test_abandoned_open_batch_times_out_and_frees_the_qpu(fast, fast_sdk):
    seq = sequences.parametrized()
    job = {"runs": 5, "variables": {"omega_max": 6}}
    abandoned = fast_sdk.create_batch(seq, [job], open=True, device_type="EMU_FREE", wait=True)
    next_in_line = fast_sdk.create_batch(seq, [job], device_type="EMU_FREE")

    timed_out = wait_for(
        lambda: (b := fast_sdk.get_batch(abandoned.id)).status == "TIMED_OUT" and b, timeout_s=20
    )
    assert timed_out.open is False
    assert [j.status for j in timed_out.ordered_jobs] == ["DONE"]  # jobs never TIMED_OUT
    wait_for(lambda: fast_sdk.get_batch(next_in_line.id).status == "DONE", timeout_s=20)
    with pytest.raises(JobCreationError, match="closed \\(TIMED_OUT\\)"):
        abandoned.add_jobs([job])


def test_a_pool_process_runs_hundreds_of_jobs_without_being_replaced(start_cluster):
    """No recycling every N tasks (each replacement stalled the queue): one pool process runs
    all 250 jobs of a batch, as the jobs' histories show (each names the process that ran it)."""
    synthetic = start_cluster(qpus={"EMU_FREE": 1}, synthetic_devices=True)
    sdk = synthetic.sdk(synthetic.new_account())
    jobs = [{"runs": 1, "variables": {QPU_SECONDS_VARIABLE: 0}}] * 250
    batch = sdk.create_batch(sequences.fixed(), jobs, device_type="EMU_FREE", wait=True)
    assert batch.status == "DONE"
    store = Store(Db.of(synthetic.client, synthetic.settings.namespace))
    workers = {attempt.worker for job in store.batch_jobs(batch.id) for attempt in job.history}
    assert len(workers) == 1 and None not in workers
