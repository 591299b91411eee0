"""Reliability guarantees beyond the happy path (issue #5), each against real processes."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import redis
import requests

from cli.redis_server import RedisServer
from core.celery_config import RUN_JOB_TASK
from core.devices import device_registry
from core.keys import Keys
from core.store import BatchQuery, Page, Store
from scheduler.loop import make_producer
from tests import sequences
from tests.drivers import POISON_RUNS
from tests.helpers import wait_for

SEQ = sequences.parametrized()
JOB = {"runs": 5, "variables": {"omega_max": 6}}


def post(cluster, account, path: str, body, key: str | None = None) -> requests.Response:
    headers = {
        "Authorization": f"Bearer {account.token}",
        "Content-Encoding": "gzip",
        "Content-Type": "application/json",
    }
    if key is not None:
        headers["Idempotency-Key"] = key
    # gzip stamps the time into its header: a retry a second later differs on the wire.
    return requests.post(
        cluster.core_url + path,
        data=gzip.compress(json.dumps(body).encode()),
        headers=headers,
        timeout=30,
    )


def batch_count(cluster, account) -> int:
    return cluster.store.query_batches(BatchQuery(project_id=[account.project_id]), Page())[0]


def test_idempotency_key_makes_a_retried_create_return_the_first_batch(cluster, account):
    body = {
        "sequence_builder": SEQ,
        "jobs": [JOB],
        "device_type": "EMU_FREE",
        "open": True,
        "project_id": account.project_id,
        "webhook": None,
    }
    first = post(cluster, account, "/api/v1/batches", body, key="retry-1")
    time.sleep(1.1)
    again = post(cluster, account, "/api/v1/batches", body, key="retry-1")
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
    requests.patch(
        f"{cluster.core_url}/api/v2/batches/{batch_id}/complete",
        timeout=30,
        headers={"Authorization": f"Bearer {account.token}"},
    ).raise_for_status()
    requests.patch(
        f"{cluster.core_url}/api/v2/batches/{mine.json()['data']['id']}/cancel",
        timeout=30,
        headers={"Authorization": f"Bearer {other_user.token}"},
    )


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


def test_redis_killed_and_restarted_loses_no_acknowledged_batch(start_cluster):
    crash = start_cluster(qpus={"EMU_FREE": 1})
    account = crash.new_account()
    body = {
        "sequence_builder": SEQ,
        "jobs": [JOB, JOB],
        "device_type": "EMU_FREE",
        "open": False,
        "project_id": account.project_id,
        "webhook": None,
    }
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

    restarted = RedisServer(crash.redis_server.data_dir, port=crash.redis_server.port).start()
    crash.cluster.redis_server = restarted  # stopped with the cluster
    client = redis.Redis.from_url(restarted.url, decode_responses=True)
    store = Store(client, crash.settings.namespace)
    assert all(store.get_batch(batch_id) for batch_id in acknowledged)  # AOF, fsync per write
    wait_for(lambda: all(store.get_batch(b).status == "DONE" for b in acknowledged), timeout_s=120)
    late = post(crash, account, "/api/v1/batches", body)
    assert late.status_code == 201  # the API, the scheduler and the worker all reconnected
    wait_for(lambda: store.get_batch(late.json()["data"]["id"]).status == "DONE", timeout_s=60)


def test_scheduler_killed_holding_a_lease_is_replaced(start_cluster):
    crash = start_cluster(qpus={"EMU_FREE": 1})
    sdk = crash.sdk(crash.new_account())
    batch = sdk.create_batch(SEQ, [JOB], open=True, device_type="EMU_FREE", wait=True)
    epoch_key = Keys(crash.settings.namespace).qpu_epoch("EMU_FREE-0")
    epoch = int(crash.client.get(epoch_key))

    standby = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "scheduler"],
        env={**os.environ, **crash.settings.to_env()},
    )
    try:
        os.kill(crash.cluster.child("scheduler").process.pid, signal.SIGKILL)
        batch.add_jobs([JOB, JOB], wait=True)  # dispatched by the standby, after the lease TTL
        assert [j.status for j in batch.ordered_jobs] == ["DONE"] * 3
        assert int(crash.client.get(epoch_key)) == epoch + 1  # the batch resumed, fenced anew
        batch.close(wait=True)
        assert batch.status == "DONE"
    finally:
        standby.terminate()
        standby.wait(30)


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
