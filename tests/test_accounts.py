"""Logging in as with Pasqal Cloud (password grant, API tokens) and the admin commands behind it."""

from __future__ import annotations

import time
import warnings

import jwt
import pytest
import requests
from pasqal_cloud.authentication import TokenProviderError
from pasqal_cloud.endpoints import Endpoints, TokenProviderConf

from core.store import BatchQuery, Page
from tests import sequences
from tests.conftest import Account
from tests.helpers import call_api, run_admin

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pasqal_cloud import SDK

AUTH0_GRANT = "http://auth0.com/oauth/grant-type/password-realm"
JOB = {"runs": 5, "variables": {"omega_max": 6}}


@pytest.fixture(scope="module")
def lab(cluster):
    """A user, a project and membership created with the admin commands."""
    username = f"ada-{time.time_ns()}"
    added = run_admin(cluster, "user", "add", username, "--admin", stdin="correct horse\n")
    assert "user added" in added
    assert f"{username} admin" in run_admin(cluster, "user", "list").splitlines()
    project_id = run_admin(cluster, "project", "add", "optics", "--priority", "HIGH").split()[-1]
    run_admin(cluster, "project", "member", "add", project_id, username, "--role", "ADMIN")
    return username, project_id


def login(cluster, username: str, password: str, project_id: str, grant_type: str):
    conf = TokenProviderConf(
        token_endpoint=cluster.base_url + "/oauth/token",
        public_client_id="tweezer-sdk",
        audience="tweezer",
        realm="tweezer",
        grant_type=grant_type,
    )
    return SDK(
        username=username,
        password=password,
        project_id=project_id,
        endpoints=Endpoints(core=cluster.core_url, account=cluster.account_url),
        auth_config=conf,
    )


@pytest.mark.parametrize("grant_type", ["password", AUTH0_GRANT])
def test_password_login_with_the_unmodified_sdk(cluster, lab, grant_type):
    username, project_id = lab
    sdk = login(cluster, username, "correct horse", project_id, grant_type)
    batch = sdk.create_batch(sequences.parametrized(), [JOB], device_type="EMU_FREE", wait=True)
    assert batch.status == "DONE" and batch.user_id == username
    assert batch.queue_priority == "HIGH"  # the project's priority
    assert [p.id for p in sdk.get_all_projects()] == [project_id]


def test_wrong_credentials_get_the_oauth_error(cluster, lab):
    username, project_id = lab
    with pytest.raises(TokenProviderError, match="Wrong username or password"):
        login(cluster, username, "wrong horse", project_id, "password")
    with pytest.raises(TokenProviderError, match="Wrong username or password"):
        login(cluster, "nobody", "correct horse", project_id, "password")
    odd = requests.post(
        cluster.base_url + "/oauth/token", timeout=10, data={"grant_type": "client_credentials"}
    )
    assert odd.status_code == 400 and odd.json()["error"] == "unsupported_grant_type"


def test_api_tokens_issue_revoke_and_disabled_users(cluster, lab):
    username, project_id = lab
    line = run_admin(cluster, "token", "issue", username, "--expires-in", "3600").strip()
    token_id, token = line.split()[2].rstrip(":"), line.split()[-1]
    sdk = cluster.sdk(Account(username, project_id, token))
    # The token lists exactly its project's batches (those the module's tests created).
    in_project = cluster.store.query_batches(BatchQuery(project_id=[project_id]), Page())[0]
    assert sdk.get_batches().total == in_project

    run_admin(cluster, "token", "revoke", token_id)
    assert _status(cluster, token) == 401

    other = f"bob-{time.time_ns()}"
    run_admin(cluster, "user", "add", other, stdin="battery staple\n")
    run_admin(cluster, "project", "member", "add", project_id, other)
    bob = run_admin(cluster, "token", "issue", other).split()[-1]
    access = requests.post(
        cluster.base_url + "/oauth/token",
        timeout=10,
        data={"grant_type": "password", "username": other, "password": "battery staple"},
    ).json()
    assert _status(cluster, bob) == 200 and _status(cluster, access["access_token"]) == 200
    run_admin(cluster, "user", "disable", other)
    assert f"{other} disabled" in run_admin(cluster, "user", "list").splitlines()
    assert _status(cluster, bob) == 401 and _status(cluster, access["access_token"]) == 401


def test_forged_expired_and_foreign_access_tokens_are_refused(cluster, lab):
    username, _ = lab
    secret, now = cluster.settings.auth_secret, int(time.time())
    good = {"sub": username, "aud": "tweezer", "iat": now, "exp": now + 600}
    assert _status(cluster, jwt.encode(good, secret, algorithm="HS256")) == 200
    refused = {
        "expired": jwt.encode({**good, "exp": now - 60}, secret, algorithm="HS256"),
        "forged": jwt.encode(good, "another key entirely, of good length", algorithm="HS256"),
        "alg none": jwt.encode(good, None, algorithm="none"),
        "wrong audience": jwt.encode({**good, "aud": "pasqal"}, secret, algorithm="HS256"),
        "no exp": jwt.encode(
            {k: v for k, v in good.items() if k != "exp"}, secret, algorithm="HS256"
        ),
        "unknown user": jwt.encode({**good, "sub": "ghost"}, secret, algorithm="HS256"),
    }
    assert {name: _status(cluster, token) for name, token in refused.items()} == {
        name: 401 for name in refused
    }


def _status(cluster, token: str) -> int:
    return call_api(cluster, token, "GET", "/api/v1/batches").status_code
