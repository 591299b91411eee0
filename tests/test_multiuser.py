"""A lab sharing one cluster: isolation between projects (an access matrix over every route),
roles within a project, quotas, rate limits, fair share of a QPU, admin routes and the audit log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import pytest
import requests
from pasqal_cloud.errors import BatchCancellingError, BatchCreationError

from core.accounts import Accounts
from core.hints import QPU_SECONDS_VARIABLE
from core.keys import Keys
from core.roles import Role
from tests import sequences
from tests.conftest import Account
from tests.helpers import call_api, create_body, hold_qpu, record_keys, run_admin, wait_for

SEQ = sequences.parametrized()
JOB = {"runs": 5, "variables": {"omega_max": 6}}


@dataclass
class Lab:
    """P1: alice and carol (MEMBERs), dave (project ADMIN and cluster admin); P2: bob."""

    alice: Account
    carol: Account
    dave: Account
    bob: Account


@pytest.fixture(scope="module")
def lab(cluster) -> Lab:
    accounts = Accounts(cluster.client, cluster.settings.namespace)
    stamp = time.time_ns()
    p1 = accounts.create_project(f"p1-{stamp}").id
    p2 = accounts.create_project(f"p2-{stamp}").id

    def user(name: str, project: str, role: Role = Role.MEMBER, admin: bool = False) -> Account:
        user_id = accounts.create_user(f"{name}-{stamp}", admin=admin)
        accounts.add_member(project, user_id, role)
        return Account(user_id, project, accounts.issue_token(user_id).token)

    return Lab(
        alice=user("alice", p1),
        carol=user("carol", p1),
        dave=user("dave", p1, Role.ADMIN, admin=True),
        bob=user("bob", p2),
    )


call = call_api


def description(response: requests.Response) -> str:
    return str(response.json()["data"]["description"])


# -- isolation: two users x two projects x every route ---------------------------------------


def _batch_routes(batch_id: str, job_id: str, project_id: str) -> list[tuple[str, str, dict]]:
    """Every route that names a batch or a job, read-only ones first; then the changes."""
    return [
        ("GET", f"/api/v2/batches/{batch_id}", {}),
        ("GET", f"/api/v1/batches/{batch_id}", {}),
        ("GET", f"/api/v1/batches/{batch_id}/status", {}),
        ("GET", f"/api/v2/jobs/{job_id}", {}),
        ("GET", f"/api/v1/jobs/{job_id}/status", {}),
        ("GET", f"/api/v1/jobs/{job_id}/results_link", {}),
        ("PATCH", f"/api/v1/batches/{batch_id}/tags", {"json": ["mine"]}),
        ("POST", f"/api/v2/batches/{batch_id}/jobs", {"json": [JOB]}),
        ("PATCH", f"/api/v2/batches/{batch_id}/cancel/jobs", {}),
        ("PATCH", f"/api/v2/jobs/{job_id}/cancel", {}),
        ("POST", f"/api/v1/batches/{batch_id}/rebatch", {}),
        ("PATCH", f"/api/v2/batches/{batch_id}/complete", {}),
        ("PATCH", f"/api/v2/batches/{batch_id}/cancel", {}),
    ]


def test_access_matrix_every_route_answers_404_outside_ones_projects(cluster, lab):
    owners = {"alice": lab.alice, "bob": lab.bob}
    done = {}
    for name, owner in owners.items():
        sdk = cluster.sdk(owner)
        batch = sdk.create_batch(SEQ, [JOB], device_type="EMU_FREE", wait=True)
        done[name] = (batch.id, batch.ordered_jobs[0].id, owner.project_id)

    # Strangers first: the owners' own changes (a rebatch runs) would move keys meanwhile.
    cells = sorted(((v, o) for v in owners for o in done), key=lambda cell: cell[0] == cell[1])
    for viewer_name, owner_name in cells:
        viewer, (batch_id, job_id, project_id) = owners[viewer_name], done[owner_name]
        own = viewer_name == owner_name
        before = record_keys(cluster)
        for method, path, kwargs in _batch_routes(batch_id, job_id, project_id):
            response = call(cluster, viewer, method, path, **kwargs)
            cell = f"{viewer_name} {method} {path} on {owner_name}'s batch"
            if own:
                # 2xx, or 409 for changes a DONE batch refuses; never hidden.
                assert response.status_code in (200, 201, 409), cell
            else:
                assert response.status_code == 404, cell
                assert response.json()["data"]["error_code"] == "not_found", cell
        if not own:
            assert record_keys(cluster) == before  # nothing written for a stranger

        # Lists never show another project's records, even when asked for it.
        for path in ("/api/v1/batches", "/api/v2/jobs"):
            listed = call(cluster, viewer, "GET", path, params={"project_id": project_id})
            assert listed.status_code == 200
            ids = {item.get("batch_id", item["id"]) for item in listed.json()["data"]}
            assert (batch_id in ids) == own, f"{viewer_name} lists {owner_name}'s"
        filtered = call(cluster, viewer, "GET", "/api/v1/batches", params={"id": batch_id})
        assert (filtered.json()["pagination"]["total"] == 1) == own
        bulk = call(
            cluster, viewer, "PATCH", "/api/v1/batches/cancel", json={"batch_ids": [batch_id]}
        )
        assert bulk.status_code == 200
        if not own:
            assert bulk.json()["data"]["errors"] == {batch_id: f"Batch {batch_id} not found"}

    # A batch in someone else's project cannot be created either (403 names no record).
    foreign = call(cluster, lab.bob, "POST", "/api/v1/batches", json=create_body(lab.alice, SEQ))
    assert foreign.status_code == 403 and "not a member" in description(foreign)


# -- roles within a project ------------------------------------------------------------------


def test_a_member_changes_only_their_own_batches_a_project_admin_any(cluster, lab):
    alice, carol, dave = (cluster.sdk(a) for a in (lab.alice, lab.carol, lab.dave))
    first = alice.create_batch(SEQ, [], open=True, device_type="EMU_FREE")
    second = alice.create_batch(SEQ, [], open=True, device_type="EMU_FREE")
    try:
        assert carol.get_batch(first.id).id == first.id  # members see each other's batches
        refused = {
            "cancel": ("PATCH", f"/api/v2/batches/{first.id}/cancel", {}),
            "close": ("PATCH", f"/api/v2/batches/{first.id}/complete", {}),
            "add jobs to": ("POST", f"/api/v2/batches/{first.id}/jobs", {"json": [JOB]}),
            "tag": ("PATCH", f"/api/v1/batches/{first.id}/tags", {"json": ["x"]}),
            "cancel jobs of": ("PATCH", f"/api/v2/batches/{first.id}/cancel/jobs", {}),
        }
        for verb, (method, path, kwargs) in refused.items():
            response = call(cluster, lab.carol, method, path, **kwargs)
            assert response.status_code == 403, verb
            assert description(response) == (
                f"Only the owner of batch {first.id} or an ADMIN of its project may {verb} it"
            )
        with pytest.raises(BatchCancellingError):
            carol.cancel_batch(first.id)
        bulk = carol.cancel_batches([first.id, second.id])
        assert bulk.batches == [] and {str(i) for i in bulk.errors} == {first.id, second.id}
        assert alice.get_batch(first.id).status != "CANCELED"

        assert dave.cancel_batch(first.id).status == "CANCELED"  # the project's ADMIN
        assert alice.cancel_batch(second.id).status == "CANCELED"  # the owner
    finally:
        for batch in (first, second):
            call(cluster, lab.alice, "PATCH", f"/api/v2/batches/{batch.id}/cancel")


# -- quotas ----------------------------------------------------------------------------------


def test_quotas_are_refused_at_submission_with_a_clear_403(cluster, lab):
    member = cluster.new_account()
    sdk = cluster.sdk(member)

    def set_quotas(**quotas: Any) -> requests.Response:
        path = f"/admin/api/v1/projects/{member.project_id}"
        response = call(cluster, lab.dave, "PATCH", path, json={"quotas": quotas})
        assert response.status_code == 200, response.text
        return response

    def refused(body: dict, path: str = "/api/v1/batches") -> str:
        before = record_keys(cluster)
        response = call(cluster, member, "POST", path, json=body)
        assert response.status_code == 403, response.text
        assert response.json()["data"]["error_code"] == "quota_exceeded"
        assert record_keys(cluster) == before
        return description(response)

    # A share that is not a positive number is refused, naming it, and changes nothing.
    path = f"/admin/api/v1/projects/{member.project_id}"
    for share in (0, -1, "3"):
        bad = call(cluster, lab.dave, "PATCH", path, json={"share": share})
        assert bad.status_code == 400 and "share" in description(bad), bad.text
    project = Accounts(cluster.client, cluster.settings.namespace).get_project(member.project_id)
    assert project is not None and project.share == 1.0

    set_quotas(max_runs_per_job=10)
    message = refused(create_body(member, SEQ, jobs=[{**JOB, "runs": 11}]))
    assert "asks for 11 runs" in message and "max_runs_per_job" in message
    with pytest.raises(BatchCreationError):
        sdk.create_batch(SEQ, [{**JOB, "runs": 11}], device_type="EMU_FREE")

    set_quotas(max_runs_per_job=None, allowed_device_types=["FRESNEL"])
    message = refused(create_body(member, SEQ))
    assert "may not use device type EMU_FREE (allowed_device_types: FRESNEL)" in message

    set_quotas(allowed_device_types=None, max_queued_jobs=1)
    message = refused(create_body(member, SEQ, jobs=[JOB, JOB]))
    assert "0 unfinished jobs of at most 1 (max_queued_jobs)" in message

    set_quotas(max_queued_jobs=None, max_open_batches=1)
    opened = sdk.create_batch(SEQ, [], open=True, device_type="EMU_FREE")
    try:
        message = refused(create_body(member, SEQ, jobs=[], open=True))
        assert "1 open batches of at most 1 (max_open_batches)" in message
        set_quotas(max_runs_per_job=10)
        add = f"/api/v2/batches/{opened.id}/jobs"
        assert "max_runs_per_job" in refused([{**JOB, "runs": 50}], add)
    finally:
        opened.cancel()
    sdk.create_batch(SEQ, [], open=True, device_type="EMU_FREE").cancel()  # room again

    bad = call(
        cluster,
        lab.dave,
        "PATCH",
        f"/admin/api/v1/projects/{member.project_id}",
        json={"quotas": {"max_queued_jobs": -1}},
    )
    assert bad.status_code == 400 and "max_queued_jobs must be" in description(bad)


def test_quotas_and_the_audit_log_from_the_command_line(cluster):
    member = cluster.new_account()
    changed = run_admin(
        cluster,
        "project",
        "set",
        member.project_id,
        "--priority",
        "HIGH",
        "--max-runs-per-job",
        "10",
        "--allowed-device-types",
        "EMU_FREE",
    )
    assert "HIGH" in changed and "max_runs_per_job=10 allowed_device_types=EMU_FREE" in changed
    batch = cluster.sdk(member).create_batch(SEQ, [JOB], device_type="EMU_FREE")
    assert batch.queue_priority == "HIGH"
    run_admin(cluster, "project", "set", member.project_id, "--max-runs-per-job", "none")
    [line] = [
        line
        for line in run_admin(cluster, "project", "list").splitlines()
        if line.startswith(member.project_id)
    ]
    assert line.endswith("allowed_device_types=EMU_FREE") and "max_runs_per_job" not in line

    log = run_admin(cluster, "audit", "--project-id", member.project_id).splitlines()
    assert [line.split()[1:3] for line in log] == [
        ["cli", "project.update"],
        [member.user_id, "batch.create"],
        ["cli", "project.update"],
        ["cli", "member.add"],
        ["cli", "project.add"],
    ]
    assert f"batch={batch.id}" in log[1]


# -- admin routes and the audit log ----------------------------------------------------------


def test_admin_routes_manage_users_projects_and_tokens(cluster, lab):
    stamp = time.time_ns()
    admin = lab.dave

    made = call(cluster, admin, "POST", "/admin/api/v1/users", json={"username": f"eve-{stamp}"})
    assert made.status_code == 201 and made.json()["data"]["admin"] is False
    eve = made.json()["data"]["id"]
    project = call(
        cluster,
        admin,
        "POST",
        "/admin/api/v1/projects",
        json={"name": f"spectroscopy-{stamp}", "queue_priority": "LOW"},
    ).json()["data"]
    member = call(
        cluster,
        admin,
        "PUT",
        f"/admin/api/v1/projects/{project['id']}/members/{eve}",
        json={"role": "MEMBER"},
    )
    assert member.status_code == 200
    issued = call(cluster, admin, "POST", f"/admin/api/v1/users/{eve}/tokens", json={})
    assert issued.status_code == 201
    token = issued.json()["data"]["token"]
    eve_account = Account(eve, project["id"], token)
    sdk = cluster.sdk(eve_account)
    assert [p.id for p in sdk.get_all_projects()] == [project["id"]]

    raised = call(
        cluster,
        admin,
        "PATCH",
        f"/admin/api/v1/projects/{project['id']}",
        json={"queue_priority": "HIGH"},
    )
    assert raised.json()["data"]["queue_priority"] == "HIGH"
    batch = sdk.create_batch(SEQ, [JOB], device_type="EMU_FREE")
    assert batch.queue_priority == "HIGH"
    users = call(cluster, admin, "GET", "/admin/api/v1/users").json()["data"]
    assert {
        "id": eve,
        "admin": False,
        "disabled": False,
        "projects": {project["id"]: "MEMBER"},
    } in (users)

    # Every admin route is refused to anyone else, and to no one at all.
    admin_routes = [
        ("GET", "/admin/api/v1/users", {}),
        ("POST", "/admin/api/v1/users", {"json": {"username": f"mallory-{stamp}"}}),
        ("POST", f"/admin/api/v1/users/{eve}/disable", {}),
        ("POST", f"/admin/api/v1/users/{eve}/tokens", {"json": {}}),
        ("DELETE", f"/admin/api/v1/tokens/{issued.json()['data']['token_id']}", {}),
        ("GET", "/admin/api/v1/projects", {}),
        ("POST", "/admin/api/v1/projects", {"json": {"name": "x"}}),
        ("PATCH", f"/admin/api/v1/projects/{project['id']}", {"json": {"queue_priority": "LOW"}}),
        (
            "PUT",
            f"/admin/api/v1/projects/{project['id']}/members/{lab.alice.user_id}",
            {"json": {}},
        ),
        ("DELETE", f"/admin/api/v1/projects/{project['id']}/members/{eve}", {}),
        ("GET", "/admin/api/v1/audit", {}),
    ]
    before = _account_records(cluster, eve)
    for method, path, kwargs in admin_routes:
        assert call(cluster, lab.alice, method, path, **kwargs).status_code == 403, path
        anonymous = requests.request(method, cluster.base_url + path, timeout=10, **kwargs)
        assert anonymous.status_code == 401, path
    assert _account_records(cluster, eve) == before
    assert sdk.get_batch(batch.id).queue_priority == "HIGH"

    token_id = issued.json()["data"]["token_id"]
    assert call(cluster, admin, "DELETE", f"/admin/api/v1/tokens/{token_id}").status_code == 200
    assert call(cluster, eve_account, "GET", "/api/v1/batches").status_code == 401
    again = call(cluster, admin, "POST", f"/admin/api/v1/users/{eve}/tokens", json={})
    eve_account = replace(eve_account, token=again.json()["data"]["token"])
    assert call(cluster, eve_account, "GET", "/api/v1/batches").status_code == 200
    disabled = call(cluster, admin, "POST", f"/admin/api/v1/users/{eve}/disable")
    assert disabled.json()["data"]["disabled"] is True
    assert call(cluster, eve_account, "GET", "/api/v1/batches").status_code == 401

    audit = call(cluster, admin, "GET", "/admin/api/v1/audit", params={"limit": 100}).json()
    mine = [(e["actor"], e["action"]) for e in audit["data"] if e["actor"] in (admin.user_id, eve)]
    assert mine[:9] == [
        (admin.user_id, "user.disable"),
        (admin.user_id, "token.issue"),
        (admin.user_id, "token.revoke"),
        (eve, "batch.create"),
        (admin.user_id, "project.update"),
        (admin.user_id, "token.issue"),
        (admin.user_id, "member.add"),
        (admin.user_id, "project.add"),
        (admin.user_id, "user.add"),
    ]
    created = call(
        cluster,
        admin,
        "GET",
        "/admin/api/v1/audit",
        params={"action": "batch.create", "actor": eve, "limit": 5},
    ).json()["data"]
    assert [e["batch_id"] for e in created] == [batch.id]
    assert created[0]["project_id"] == project["id"] and created[0]["detail"] == {"jobs": 1}
    bad = call(cluster, admin, "GET", "/admin/api/v1/audit", params={"limit": "lots"})
    assert bad.status_code == 400 and "limit" in description(bad)


def _account_records(cluster, user_id: str) -> tuple:
    """What an admin route could change: users, projects, one user's record and memberships,
    and the audit log's length (each admin change adds an entry)."""
    keys = Keys(cluster.settings.namespace)
    c = cluster.client
    return (
        c.smembers(keys.users()),
        c.smembers(keys.projects()),
        c.hgetall(keys.user(user_id)),
        c.hgetall(keys.user_projects(user_id)),
        c.xlen(keys.audit()),
    )


def test_cancel_close_and_rebatch_are_audited_with_who_did_them(cluster, lab):
    alice, dave = cluster.sdk(lab.alice), cluster.sdk(lab.dave)
    done = alice.create_batch(SEQ, [JOB], device_type="EMU_FREE", wait=True)
    again = dave.rebatch(done.id)
    opened = alice.create_batch(SEQ, [], open=True, device_type="EMU_FREE")
    opened.close()
    entries = call(
        cluster, lab.dave, "GET", "/admin/api/v1/audit", params={"project_id": lab.alice.project_id}
    ).json()["data"]
    by_batch = {(e["batch_id"], e["action"]): e for e in entries}
    assert by_batch[(done.id, "batch.create")]["actor"] == lab.alice.user_id
    rebatched = by_batch[(again.id, "batch.rebatch")]
    assert rebatched["actor"] == lab.dave.user_id and rebatched["detail"]["from"] == done.id
    assert by_batch[(opened.id, "batch.close")]["actor"] == lab.alice.user_id


# -- fair share ------------------------------------------------------------------------------


def test_two_projects_flooding_one_qpu_take_turns(start_cluster):
    """Project A submits three batches, then project B three more, while the QPU is busy: the
    QPU then goes to whichever has had less QPU time, instead of serving A's three first. With
    batches of the same length they take turns: neither gets two batches ahead. A synthetic
    device gives each batch exactly its 0.3 s, whatever else shares the cores (an emulated
    batch's length varied with the machine's load, and two in a row followed)."""
    cluster = start_cluster(qpus={"EMU_FREE": 1}, synthetic_devices=True)
    holder, a, b = (cluster.new_account() for _ in range(3))
    job = {"runs": 5, "variables": {"omega_max": 6, QPU_SECONDS_VARIABLE: 0.3}}
    with hold_qpu(cluster.sdk(holder), SEQ):
        batches = [
            sdk.create_batch(SEQ, [job], device_type="EMU_FREE")
            for sdk in (cluster.sdk(a), cluster.sdk(b))
            for _ in range(3)
        ]
    store = cluster.store
    wait_for(lambda: all(store.get_batch(x.id).status == "DONE" for x in batches), timeout_s=120)
    started = sorted(store.get_batches(x.id for x in batches), key=lambda x: x.start_us)
    owner = {a.project_id: "A", b.project_id: "B"}
    order = [owner[x.project_id] for x in started]
    assert order[0] == "A"  # the oldest batch, with no usage on either side
    ahead = [order[:n].count("A") - order[:n].count("B") for n in range(1, len(order) + 1)]
    assert max(map(abs, ahead)) <= 1, order
