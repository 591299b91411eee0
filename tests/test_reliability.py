"""Reliability guarantees beyond the happy path (issue #5), each against real processes."""

from __future__ import annotations

import gzip
import json
import time

import requests

from core.store import BatchQuery, Page
from tests import sequences

SEQ = sequences.parametrized()
JOB = {"runs": 5, "variables": {"omega_max": 6}}


def post(cluster, account, path: str, body, key: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {account.token}", "Content-Encoding": "gzip",
               "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    # gzip stamps the time into its header: a retry a second later differs on the wire.
    return requests.post(cluster.core_url + path, data=gzip.compress(json.dumps(body).encode()),
                         headers=headers, timeout=30)


def batch_count(cluster, account) -> int:
    return cluster.store.query_batches(BatchQuery(project_id=[account.project_id]), Page())[0]


def test_idempotency_key_makes_a_retried_create_return_the_first_batch(cluster, account):
    body = {"sequence_builder": SEQ, "jobs": [JOB], "device_type": "EMU_FREE", "open": True,
            "project_id": account.project_id, "webhook": None}
    first = post(cluster, account, "/api/v1/batches", body, key="retry-1")
    time.sleep(1.1)
    again = post(cluster, account, "/api/v1/batches", body, key="retry-1")
    assert first.status_code == again.status_code == 201
    batch_id = first.json()["data"]["id"]
    assert again.json()["data"]["id"] == batch_id
    assert len(again.json()["data"]["jobs"]) == 1
    assert batch_count(cluster, account) == 1

    other_body = post(cluster, account, "/api/v1/batches", {**body, "jobs": [JOB, JOB]}, key="retry-1")
    assert other_body.status_code == 409 and "different request" in other_body.text
    other_user = cluster.new_account()
    mine = post(cluster, other_user, "/api/v1/batches",
                {**body, "project_id": other_user.project_id}, key="retry-1")
    assert mine.status_code == 201 and mine.json()["data"]["id"] != batch_id  # keys are per user

    added = [post(cluster, account, f"/api/v2/batches/{batch_id}/jobs", [JOB], key="add-1")
             for _ in range(2)]
    assert [r.status_code for r in added] == [201, 201]
    assert cluster.store.get_batch(batch_id).jobs_count == 2  # the retry added nothing
    requests.patch(f"{cluster.core_url}/api/v2/batches/{batch_id}/complete", timeout=30,
                   headers={"Authorization": f"Bearer {account.token}"}).raise_for_status()
    requests.patch(f"{cluster.core_url}/api/v2/batches/{mine.json()['data']['id']}/cancel",
                   timeout=30, headers={"Authorization": f"Bearer {other_user.token}"})
