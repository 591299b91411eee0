"""Reliability guarantees beyond the happy path (issue #5), each against real processes."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psutil
import pytest
import redis
import requests

from core.celery_config import RUN_JOB_TASK, RUN_JOBS_TASK
from core.db import Db
from core.devices import device_registry
from core.keys import Keys
from core.status import JobStatus
from core.store import BatchQuery, JobQuery, Page, Store
from launch.cluster import Cluster
from launch.redis_server import RedisServer, free_port
from scheduler.loop import make_producer
from tests import sequences
from tests.conftest import RunningCluster, make_settings
from tests.drivers import BLOCKING_RUNS, POISON_RUNS, STUBBORN_RUNS
from tests.helpers import call_api, create_body, hold_qpu, post_gzip, wait_for

SEQ = sequences.parametrized()
JOB = {"runs": 5, "variables": {"omega_max": 6}}


@pytest.fixture(scope="module")
def cluster(start_cluster):
    """This module's own cluster, not the one other modules share: its tests wait on the QPU's
    order and timing, which another module's batches on the same QPU would disturb."""
    return start_cluster()


def post(cluster, account, path: str, body, key: str | None = None, mtime: float | None = None):
    """A POST as the SDK sends it, with an Idempotency-Key when `key` is given."""
    headers = {"Idempotency-Key": key} if key is not None else None
    return post_gzip(cluster, account, path, body, headers, mtime)


def batch_count(cluster, account) -> int:
    return cluster.store.query_batches(BatchQuery(project_id=[account.project_id]), Page())[0]


@contextmanager
def another_scheduler(cluster) -> Iterator[subprocess.Popen]:
    """One more scheduler process on the cluster (several may run at once), stopped on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "scheduler"],
        env={**os.environ, **cluster.settings.to_env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(30)


def test_idempotency_key_makes_a_retried_create_return_the_first_batch(cluster, account):
    body = create_body(account, SEQ, jobs=[JOB], open=True)
    first = post(cluster, account, "/api/v1/batches", body, key="retry-1", mtime=1)
    # A retry a second later: the same body, other bytes on the wire (gzip's time stamp).
    again = post(cluster, account, "/api/v1/batches", body, key="retry-1", mtime=2)
    assert first.status_code == again.status_code == 201
    batch_id = first.json()["data"]["id"]
    assert again.json()["data"]["id"] == batch_id
    assert len(again.json()["data"]["jobs"]) == 1
    assert batch_count(cluster, account) == 1

    other_body = post(
        cluster, account, "/api/v1/batches", {**body, "jobs": [JOB, JOB]}, key="retry-1"
    )
    assert other_body.status_code == 409 and "different request" in other_body.text
    other_user = cluster.new_account()
    mine = post(
        cluster,
        other_user,
        "/api/v1/batches",
        {**body, "project_id": other_user.project_id},
        key="retry-1",
    )
    assert mine.status_code == 201 and mine.json()["data"]["id"] != batch_id  # keys are per user

    added = [
        post(cluster, account, f"/api/v2/batches/{batch_id}/jobs", [JOB], key="add-1")
        for _ in range(2)
    ]
    assert [r.status_code for r in added] == [201, 201]
    assert cluster.store.get_batch(batch_id).jobs_count == 2  # the retry added nothing
    call_api(cluster, account, "PATCH", f"/api/v2/batches/{batch_id}/complete").raise_for_status()
    call_api(cluster, other_user, "PATCH", f"/api/v2/batches/{mine.json()['data']['id']}/cancel")


def test_a_job_that_kills_its_worker_every_time_ends_error_and_frees_the_qpu(scripted):
    cluster, log = scripted
    sdk = cluster.sdk(cluster.new_account())
    sequence = sequences.fresnel(device_registry(cluster.settings)["FRESNEL"].pulser_device)
    text = sequence.to_abstract_repr()
    poisoned = sdk.create_batch(
        text, [{"runs": POISON_RUNS, "variables": JOB["variables"]}, JOB], device_type="FRESNEL"
    )
    next_batch = sdk.create_batch(text, [JOB], device_type="FRESNEL")

    finished = wait_for(
        lambda: (b := sdk.get_batch(poisoned.id)).status == "DONE" and b, timeout_s=90
    )
    poison, healthy = finished.ordered_jobs
    assert poison.status == "ERROR" and "lost 3 times" in poison.errors[0]
    assert healthy.status == "DONE"
    assert log.read_text().count(f"run {POISON_RUNS}") == cluster.settings.max_attempts
    wait_for(lambda: sdk.get_batch(next_batch.id).status == "DONE", timeout_s=30)


def test_a_job_that_kills_its_worker_takes_its_chunk_down_once_and_nothing_is_lost(scripted):
    """Cheap jobs go to the worker in chunks (dispatch.lua); the poison job's kill loses the
    jobs of its chunk not committed yet, which run again, each alone: the poison job alone
    ends ERROR, every other job DONE."""
    cluster, log = scripted
    sdk = cluster.sdk(cluster.new_account())
    sequence = sequences.fresnel(device_registry(cluster.settings)["FRESNEL"].pulser_device)
    poison = {"runs": POISON_RUNS, "variables": JOB["variables"]}
    batch = sdk.create_batch(
        sequence.to_abstract_repr(), [JOB, poison, JOB, JOB, JOB, JOB], device_type="FRESNEL"
    )
    runs_before = log.read_text().count(f"run {POISON_RUNS}")
    finished = wait_for(lambda: (b := sdk.get_batch(batch.id)).status == "DONE" and b, timeout_s=90)
    jobs = [cluster.store.get_job(j.id) for j in finished.ordered_jobs]
    assert jobs[1].status is JobStatus.ERROR and "lost 3 times" in jobs[1].errors[0]
    assert log.read_text().count(f"run {POISON_RUNS}") - runs_before == 3
    outcomes = [[a.outcome for a in job.history] for job in jobs]
    # The first three jobs were one chunk: the one after the poison job never ran before the
    # kill; the one before it ran, and was committed unless the kill came first.
    assert outcomes[2] == ["LOST", "DONE"]
    assert outcomes[0] in (["DONE"], ["LOST", "DONE"])
    assert outcomes[3:] == [["DONE"]] * 3
    assert all(job.result == {"11": 5} for i, job in enumerate(finished.ordered_jobs) if i != 1)


def test_redis_killed_and_restarted_loses_no_acknowledged_batch(start_cluster):
    crash = start_cluster(qpus={"EMU_FREE": 1})
    account = crash.new_account()
    body = create_body(account, SEQ, jobs=[JOB, JOB], open=False)
    acknowledged = []
    for _ in range(20):
        response = post(crash, account, "/api/v1/batches", body)
        assert response.status_code == 201
        acknowledged.append(response.json()["data"]["id"])

    os.kill(crash.redis_server.process.pid, signal.SIGKILL)
    crash.redis_server.process.wait()
    started = time.monotonic()
    down = post(crash, account, "/api/v1/batches", body)
    assert down.status_code == 503 and down.headers["Retry-After"]
    assert time.monotonic() - started < 5  # fast: not the SDK's 30 s timeout

    restarted = RedisServer(
        crash.redis_server.data_dir,
        port=crash.redis_server.port,
        password=crash.redis_server.password,
    ).start()
    crash.cluster.redis_server = restarted  # stopped with the cluster
    client = redis.Redis.from_url(restarted.url, decode_responses=True)
    store = Store(Db.of(client, crash.settings.namespace))
    assert all(store.get_batch(batch_id) for batch_id in acknowledged)  # AOF, fsync per write

    def all_done() -> bool:
        # As `tweezer up` does: a worker whose consumer Celery left stuck by the reset exits
        # (workers/watchdog.py) and is started again.
        crash.cluster.supervise()
        return all(store.get_batch(b).status == "DONE" for b in acknowledged)

    wait_for(all_done, timeout_s=120, interval_s=0.5)
    late = post(crash, account, "/api/v1/batches", body)
    assert late.status_code == 201  # the API, the scheduler and the worker all reconnected
    wait_for(lambda: store.get_batch(late.json()["data"]["id"]).status == "DONE", timeout_s=60)


def test_scheduler_killed_holding_a_lease_is_replaced(start_cluster):
    crash = start_cluster(qpus={"EMU_FREE": 1})
    sdk = crash.sdk(crash.new_account())
    batch = sdk.create_batch(SEQ, [JOB], open=True, device_type="EMU_FREE", wait=True)
    epoch_key = Keys(crash.settings.namespace).qpu_epoch("EMU_FREE-0")
    epoch = int(crash.client.get(epoch_key))

    with another_scheduler(crash):
        os.kill(crash.cluster.child("scheduler").process.pid, signal.SIGKILL)
        batch.add_jobs([JOB, JOB], wait=True)  # dispatched by the standby, after the lease TTL
        assert [j.status for j in batch.ordered_jobs] == ["DONE"] * 3
        assert int(crash.client.get(epoch_key)) == epoch + 1  # the batch resumed, fenced anew
        batch.close(wait=True)
        assert batch.status == "DONE"


def test_whole_worker_killed_mid_job_is_restarted_and_the_job_completes(start_cluster):
    crash = start_cluster(qpus={"EMU_FREE": 1})
    sdk = crash.sdk(crash.new_account())
    batch = sdk.create_batch(sequences.slow(), [{"runs": 10}], device_type="EMU_FREE")
    job = batch.ordered_jobs[0]
    wait_for(lambda: sdk.get_job_status(job.id).value == "RUNNING", timeout_s=30)
    worker = psutil.Process(crash.cluster.child("worker EMU_FREE-0").process.pid)
    for process in [*worker.children(), worker]:  # the whole worker, as a node loss would
        process.kill()

    def restarted_and_done() -> bool:
        crash.cluster.supervise()  # what `tweezer up` does twice a second
        return sdk.get_job_status(job.id).value == "DONE"

    wait_for(restarted_and_done, timeout_s=90, interval_s=0.5)
    assert crash.store.get_job(job.id).attempts == 2
    assert crash.cluster.child("worker EMU_FREE-0").process.pid != worker.pid


def test_pickle_message_in_the_broker_runs_no_code(cluster, sdk, tmp_path):
    sentinel = tmp_path / "pwned"
    producer = make_producer(cluster.settings)
    producer.send_task(
        RUN_JOB_TASK,
        args=[_Exploit(str(sentinel)), "1"],
        serializer="pickle",
        queue=Keys.celery_queue("EMU_FREE-0"),
    )
    worker_log = cluster.cluster.log_dir / "worker-EMU_FREE-0.log"
    wait_for(
        lambda: (
            "Refusing to deserialize untrusted content of type pickle" in worker_log.read_text()
        ),
        timeout_s=30,
    )
    batch = sdk.create_batch(SEQ, [JOB], device_type="EMU_FREE", wait=True)
    assert batch.status == "DONE"  # the worker lived on and served the next job
    assert not sentinel.exists()


class _Exploit:
    """Unpickling this would create a file: a worker must never unpickle broker messages."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("task", [RUN_JOBS_TASK, RUN_JOB_TASK])
def test_duplicate_delivery_runs_once_and_counts_once(cluster, sdk, task):
    """The message again, as the scheduler sends it (a chunk) and as schedulers before chunks
    did (one job), which workers still run."""
    batch = sdk.create_batch(sequences.slow(), [{"runs": 10}], device_type="EMU_FREE")
    job = batch.ordered_jobs[0]
    wait_for(lambda: sdk.get_job_status(job.id).value == "RUNNING", timeout_s=30)
    delivery = cluster.client.hget(Keys(cluster.settings.namespace).job(job.id), "delivery")
    # The very message again, as a broker redelivery would hand it to the worker.
    args = [delivery, [job.id]] if task == RUN_JOBS_TASK else [job.id, delivery]
    make_producer(cluster.settings).send_task(
        task, args=args, queue=Keys.celery_queue("EMU_FREE-0")
    )
    worker_log = cluster.cluster.log_dir / "worker-EMU_FREE-0.log"
    wait_for(
        lambda: f"job {job.id}: delivery {delivery} is stale" in worker_log.read_text(),
        timeout_s=60,
    )
    done = sdk.get_batch(batch.id)
    assert done.status == "DONE" and done.jobs_count_per_status["DONE"] == 1
    assert cluster.store.get_job(job.id).attempts == 1
    assert sum(sdk.get_job(job.id).result.values()) == 10


def test_results_links_cannot_be_pointed_at_another_job(cluster, account, sdk):
    batch = sdk.create_batch(SEQ, [JOB, JOB], device_type="EMU_FREE", wait=True)
    first, second = (j.id for j in batch.ordered_jobs)
    link = call_api(cluster, account, "GET", f"/api/v1/jobs/{first}/results_link").json()["data"][
        "results_link"
    ]
    assert requests.get(link, timeout=10).status_code == 200
    swapped = requests.get(link.replace(first, second), timeout=10)
    assert swapped.status_code == 403 and "signature" in swapped.text


def test_a_thousand_concurrent_submissions_are_all_stored_once(cluster, account, sdk):
    """50 clients, each with its own token, submit 20 batches each at once."""
    clients = [cluster.another_token(account) for _ in range(50)]
    body = create_body(account, SEQ, jobs=[JOB], open=False)
    with hold_qpu(sdk, SEQ) as holder, ThreadPoolExecutor(50) as pool:
        responses = list(
            pool.map(lambda i: post(cluster, clients[i % 50], "/api/v1/batches", body), range(1000))
        )
        assert {r.status_code for r in responses} <= {201, 429}
        acknowledged = [r.json()["data"]["id"] for r in responses if r.status_code == 201]
        assert len(set(acknowledged)) == len(acknowledged) == 1000  # within every rate limit
        assert len(cluster.store.get_batches(acknowledged)) == 1000  # each one stored...
        assert batch_count(cluster, account) == 1001  # ...and nothing else but the holder
        assert sdk.get_batch(holder.id).status == "RUNNING"  # it kept the QPU throughout
        for chunk in (acknowledged[:500], acknowledged[500:]):
            assert sdk.cancel_batches(batch_ids=chunk).errors == {}
    assert unfinished_jobs(cluster, account) == 0


def test_submissions_over_the_rate_limit_get_429_and_store_nothing(limited):
    """One token, 200 concurrent submissions at 5 per second: every answer is 201 or 429 with
    Retry-After, and exactly the acknowledged batches are stored. Another project submitting
    meanwhile is not held back."""
    account, other = limited.new_account(), limited.new_account()
    sdk = limited.sdk(limited.another_token(account))  # its own budget, for the checks below
    body = create_body(account, SEQ, jobs=[JOB], open=False)
    other_body = create_body(other, SEQ, jobs=[JOB], open=False)
    with hold_qpu(sdk, SEQ), ThreadPoolExecutor(20) as pool:
        flood = pool.map(lambda _: post(limited, account, "/api/v1/batches", body), range(200))
        others = [post(limited, other, "/api/v1/batches", other_body) for _ in range(10)]
        responses = list(flood)
        assert [r.status_code for r in others] == [201] * 10
        theirs = [r.json()["data"]["id"] for r in others]
        assert limited.sdk(other).cancel_batches(batch_ids=theirs).errors == {}
        statuses = [r.status_code for r in responses]
        assert set(statuses) == {201, 429}
        acknowledged = [r.json()["data"]["id"] for r in responses if r.status_code == 201]
        assert 20 <= len(acknowledged) < 200 and len(set(acknowledged)) == len(acknowledged)
        assert batch_count(limited, account) == len(acknowledged) + 1  # and the holder
        for limited_reply in (r for r in responses if r.status_code == 429):
            assert int(limited_reply.headers["Retry-After"]) >= 1
            assert limited_reply.json()["data"]["error_code"] == "rate_limited"
        assert sdk.cancel_batches(batch_ids=acknowledged).errors == {}
    assert unfinished_jobs(limited, account) == 0


def test_the_sdk_waits_out_a_rate_limit_by_itself(limited):
    """Past its burst a token gets 429 with Retry-After; the SDK waits that long and retries
    by itself, so its calls still all succeed."""
    account = limited.new_account()
    sdk = limited.sdk(account)
    batch = sdk.create_batch(SEQ, [JOB], device_type="EMU_FREE", wait=True)
    for _ in range(40):
        reply = call_api(limited, account, "GET", "/api/v1/batches")
        if reply.status_code != 200:
            break
    assert reply.status_code == 429 and reply.headers["Retry-After"] == "1"
    assert "Too many requests for this token" in reply.json()["data"]["description"]
    started = time.monotonic()
    assert all(sdk.get_batch(batch.id).status == "DONE" for _ in range(10))
    assert time.monotonic() - started >= 1.0  # held back, then served


def unfinished_jobs(cluster, account) -> int:
    query = JobQuery(project_id=[account.project_id], status=["PENDING", "RUNNING"])
    return cluster.store.query_job_ids(query, Page())[0]


def test_racing_schedulers_never_share_a_qpu(start_cluster):
    crash = start_cluster(qpus={"EMU_FREE": 1})
    sdk = crash.sdk(crash.new_account())
    running_index = Keys(crash.settings.namespace).batch_index("status", "RUNNING")
    seen: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen.append(crash.client.zcard(running_index))
            time.sleep(0.05)

    with another_scheduler(crash):
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            batches = [sdk.create_batch(SEQ, [JOB] * 3, device_type="EMU_FREE") for _ in range(5)]
            wait_for(
                lambda: all(sdk.get_batch(b.id).status == "DONE" for b in batches), timeout_s=90
            )
        finally:
            stop.set()
            sampler.join()
    assert len(seen) > 20 and max(seen) == 1  # busy all along, never two batches on one QPU


def test_a_paused_scheduler_loses_its_lease_and_writes_nothing(start_cluster):
    crash = start_cluster(qpus={"EMU_FREE": 1})
    sdk = crash.sdk(crash.new_account())
    keys = Keys(crash.settings.namespace)
    holder = sdk.create_batch(SEQ, [JOB], open=True, device_type="EMU_FREE", wait=True)
    epoch = int(crash.client.get(keys.qpu_epoch("EMU_FREE-0")))
    paused = crash.cluster.child("scheduler").process  # the only scheduler: it holds the QPU
    with another_scheduler(crash):
        os.kill(paused.pid, signal.SIGSTOP)  # a pause longer than the lease (a GC, a VM stall)
        try:
            wait_for(
                lambda: int(crash.client.get(keys.qpu_epoch("EMU_FREE-0"))) == epoch + 1,
                timeout_s=30,
            )
            holder.add_jobs([JOB], wait=True)
        finally:
            os.kill(paused.pid, signal.SIGCONT)
        scheduler_log = crash.cluster.log_dir / "scheduler.log"
        wait_for(lambda: "lost the lease of EMU_FREE-0" in scheduler_log.read_text(), timeout_s=30)
        holder.add_jobs([JOB, JOB], wait=True)
        epochs = {crash.client.hget(keys.job(j.id), "epoch") for j in holder.ordered_jobs[1:]}
        assert epochs == {str(epoch + 1)}  # nothing dispatched under the stale epoch
        holder.close(wait=True)
        assert holder.status == "DONE"


def test_a_full_redis_refuses_cleanly_and_evicts_nothing(start_cluster):
    full = start_cluster(qpus={"EMU_FREE": 1}, redis_args=("--maxmemory", "8mb"))
    account = full.new_account()
    body = create_body(account, SEQ, jobs=[JOB] * 500, open=True)
    acknowledged, refused = [], None
    for _ in range(200):
        response = post(full, account, "/api/v1/batches", body)
        if response.status_code != 201:
            refused = response
            break
        acknowledged.append(response.json()["data"]["id"])
    assert refused is not None and refused.status_code == 503
    assert "full" in refused.json()["data"]["description"]
    assert full.client.info("stats")["evicted_keys"] == 0
    # Listing still works on a full Redis: all of them are there, and nothing partial.
    listed = call_api(full, account, "GET", "/api/v1/batches", params={"limit": 1})
    assert listed.status_code == 200
    assert listed.json()["pagination"]["total"] == len(acknowledged)
    assert all(full.store.get_batch(b).jobs_count == 500 for b in acknowledged)


def test_time_limits_end_the_job_with_the_reason_and_the_worker_goes_on(start_scripted):
    cluster, log = start_scripted(job_soft_time_limit_s=2.0, job_hard_time_limit_s=4.0)
    sdk = cluster.sdk(cluster.new_account())
    text = sequences.fresnel(device_registry(cluster.settings)["FRESNEL"].pulser_device)
    batch = sdk.create_batch(
        text.to_abstract_repr(),
        [
            {"runs": BLOCKING_RUNS + 1, "variables": JOB["variables"]},  # stopped by the soft limit
            {"runs": STUBBORN_RUNS, "variables": JOB["variables"]},  # only the hard limit stops it
            JOB,
        ],
        device_type="FRESNEL",
    )
    done = wait_for(lambda: (b := sdk.get_batch(batch.id)).status == "DONE" and b, timeout_s=60)
    soft, hard, healthy = done.ordered_jobs
    assert soft.status == "ERROR" and "time limit of 2 s" in soft.errors[0]
    assert hard.status == "ERROR" and "hard time limit of 4 s" in hard.errors[0]
    assert "ignored the soft time limit" in log.read_text()
    assert healthy.status == "DONE" and healthy.result == {"11": 5}
    assert cluster.store.get_job(hard.id).attempts == 1  # recorded at once, not retried as lost


def test_connections_dropped_mid_job_end_with_one_result_and_workers_consuming(start_cluster):
    crash = start_cluster(qpus={"EMU_FREE": 1})
    sdk = crash.sdk(crash.new_account())
    batch = sdk.create_batch(sequences.slow(), [{"runs": 10}], device_type="EMU_FREE")
    job = batch.ordered_jobs[0]
    wait_for(lambda: sdk.get_job_status(job.id).value == "RUNNING", timeout_s=30)
    killed = crash.client.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 3  # the API's, the scheduler's and the worker's connections

    done = wait_for(lambda: (b := sdk.get_batch(batch.id)).status == "DONE" and b, timeout_s=120)
    assert done.jobs_count_per_status["DONE"] == 1
    assert sum(sdk.get_job(job.id).result.values()) == 10
    after = sdk.create_batch(SEQ, [JOB], device_type="EMU_FREE", wait=True)
    assert after.status == "DONE"  # the worker consumes again


def test_processes_started_before_redis_wait_for_it_then_serve(tmp_path):
    # Chosen a port, not started yet.
    redis_server = RedisServer(tmp_path / "redis", password=secrets.token_hex(16))
    settings = make_settings(redis_server.url, qpus={"EMU_FREE": 1})
    cluster = Cluster(settings, tmp_path, "127.0.0.1", free_port(), None, log_dir=tmp_path / "logs")
    starting = threading.Thread(target=cluster.start)
    starting.start()
    try:
        time.sleep(3)  # API, scheduler and worker are up, and Redis is not
        redis_server.start()
        starting.join(60)
        running = RunningCluster(
            settings,
            cluster,
            redis_server,
            redis.Redis.from_url(redis_server.url, decode_responses=True),
        )
        sdk = running.sdk(running.new_account())
        batch = sdk.create_batch(SEQ, [JOB], device_type="EMU_FREE", wait=True)
        assert batch.status == "DONE"
    finally:
        cluster.shutdown()
        redis_server.stop()
