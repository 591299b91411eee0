"""Random bodies through every route that reads one: always 2xx or 4xx, never 5xx, and a 4xx
leaves the store exactly as it was."""

from __future__ import annotations

import json
import time

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.accounts import Accounts
from tests import sequences
from tests.conftest import Account
from tests.helpers import call_api, create_body, record_keys

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
SEQ = sequences.parametrized()
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def target(cluster):
    """An account and an open batch of it, the routes' subject."""
    account = cluster.new_account()
    sdk = cluster.sdk(account)
    batch = sdk.create_batch(SEQ, [], open=True, device_type="EMU_FREE")
    yield cluster, account, batch.id
    batch.close()


def send(cluster, account, method: str, path: str, body) -> requests.Response:
    json_type = {"Content-Type": "application/json"}
    return call_api(cluster, account, method, path, data=json.dumps(body), headers=json_type)


def check(cluster, response: requests.Response, before: set[str]) -> None:
    assert response.status_code < 500, response.text
    assert isinstance(response.json(), dict)  # always a JSend object
    if response.status_code >= 400:
        assert record_keys(cluster) == before


def routes(batch_id: str) -> list[tuple[str, str]]:
    return [
        ("POST", "/api/v1/batches"),
        ("POST", f"/api/v2/batches/{batch_id}/jobs"),
        ("PATCH", f"/api/v1/batches/{batch_id}/tags"),
        ("PATCH", "/api/v1/batches/cancel"),
    ]


@FUZZ
@given(body=JSON, route=st.integers(0, 3))
def test_random_bodies(target, body, route):
    cluster, account, batch_id = target
    method, path = routes(batch_id)[route]
    if (
        path.endswith("/cancel")
        and isinstance(body, dict)
        and isinstance(body.get("batch_ids"), list)
    ):
        body["batch_ids"] = []  # never cancel the target batch itself
    before = record_keys(cluster)
    check(cluster, send(cluster, account, method, path, body), before)


@FUZZ
@given(
    field=st.sampled_from(
        sorted(
            [
                "sequence_builder",
                "jobs",
                "device_type",
                "open",
                "configuration",
                "backend_configuration",
                "tags",
                "project_id",
                "webhook",
                "extra",
            ]
        )
    ),
    value=JSON,
)
def test_valid_create_with_one_field_replaced(target, field, value):
    cluster, account, _ = target
    body = create_body(account, SEQ)
    body[field] = value
    before = record_keys(cluster)
    response = send(cluster, account, "POST", "/api/v1/batches", body)
    check(cluster, response, before)
    if response.status_code < 300:
        batch_id = response.json()["data"]["id"]
        call_api(cluster, account, "PATCH", f"/api/v2/batches/{batch_id}/cancel")


@FUZZ
@given(job=JSON)
def test_random_jobs_in_a_valid_batch(target, job):
    cluster, account, batch_id = target
    before = record_keys(cluster)
    check(
        cluster, send(cluster, account, "POST", f"/api/v2/batches/{batch_id}/jobs", [job]), before
    )


@pytest.fixture(scope="module")
def admin(cluster):
    """A cluster administrator, and a user and project of their own for the routes' subject."""
    accounts = Accounts(cluster.client, cluster.settings.namespace)
    stamp = time.time_ns()
    admin_id = accounts.create_user(f"fuzz-admin-{stamp}", admin=True)
    subject = accounts.create_user(f"fuzz-subject-{stamp}")
    project = accounts.create_project(f"fuzz-{stamp}").id
    token = accounts.issue_token(admin_id).token
    return Account(admin_id, project, token), subject


@FUZZ
@given(body=JSON, route=st.integers(0, 4))
def test_random_bodies_on_admin_routes(cluster, admin, body, route):
    account, subject = admin
    method, path = [
        ("POST", "/admin/api/v1/users"),
        ("POST", f"/admin/api/v1/users/{subject}/tokens"),
        ("POST", "/admin/api/v1/projects"),
        ("PATCH", f"/admin/api/v1/projects/{account.project_id}"),
        ("PUT", f"/admin/api/v1/projects/{account.project_id}/members/{subject}"),
    ][route]
    before = record_keys(cluster)
    response = send(cluster, account, method, path, body)
    check(cluster, response, before)
