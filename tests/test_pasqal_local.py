"""qrmi's on-premises path against a cluster (api/pasqal_local.py, issue #27): the real qrmi
0.26.4 wheel with `QRMI_JOB_QPU_TYPES=pasqal-local`, run as a non-root Unix user with the
environment Slurm's plugin sets (`QRMI_JOB_ID`, `QRMI_JOB_UID`), its requests signed by the
host's munged; and every refusal of the routes, with nothing stored."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from core.accounts import Accounts
from core.audit import AuditLog
from core.devices import device_registry
from core.sessions import PASQAL_LOCAL_PREFIX, Sessions
from core.timefmt import now_us
from tests import sequences
from tests.helpers import call_api, record_keys, run_admin, wait_for

MUNGED = "/usr/sbin/munged"
DEFAULT_SOCKET = Path("/run/munge/munge.socket.2")
#: The Unix account the "Slurm job" runs as (Debian's, present everywhere).
NOBODY = pwd.getpwnam("nobody")


def _munge_works() -> bool:
    return subprocess.run(["munge", "--no-input"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def host_munged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The host's munged, which qrmi's client (libmunge's default socket) and the API both use:
    the one running, or one started here with a fresh key (as root, as CI runs)."""
    if _munge_works():
        yield
        return
    home = tmp_path_factory.mktemp("host-munge")
    key = home / "key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    DEFAULT_SOCKET.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    daemon = subprocess.Popen(
        [
            MUNGED,
            "--foreground",
            "--force",
            f"--key-file={key}",
            f"--seed-file={home / 'seed'}",
            f"--log-file={home / 'log'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(_munge_works, timeout_s=10)
    yield
    daemon.terminate()
    daemon.wait(10)


@pytest.fixture(scope="module")
def onprem(start_cluster, host_munged):
    return start_cluster(qpus={"EMU_FREE": 1, "FRESNEL": 1}, bridge_speedup=50.0)


def _slurm_user(cluster, unix_uid: int) -> tuple[str, str]:
    """The Tweezer user of `unix_uid`, in a project of its own: (user, project)."""
    accounts = Accounts(cluster.client, cluster.settings.namespace)
    if (known := accounts.user_of_unix_uid(unix_uid)) is not None:
        [project] = accounts.principal(known.id, "").project_ids  # type: ignore[union-attr]
        return known.id, project
    user = accounts.create_user(f"slurm-{secrets.token_hex(3)}", unix_uid=unix_uid)
    project = accounts.create_project(f"lab-{secrets.token_hex(3)}").id
    accounts.add_member(project, user)
    return user, project


QRMI_SCRIPT = """
import json, os, sys, time
from qrmi import Payload, QRMIService, TaskStatus
resource_id, sequence_file, shots = sys.argv[1], sys.argv[2], int(sys.argv[3])
qpu = QRMIService().resource(resource_id)
out = {"accessible": qpu.is_accessible()}
session = qpu.acquire()
os.environ[f"{resource_id}_QRMI_JOB_ACQUISITION_TOKEN"] = session
out["session"] = session
out["target"] = json.loads(qpu.target().value)[0]["device_type"]
tasks = []
for _ in range(2):  # two tasks of one Slurm job: the same session, the same QPU
    task = qpu.task_start(Payload.PasqalCloud(sequence=open(sequence_file).read(), job_runs=shots))
    while qpu.task_status(task) not in (TaskStatus.Completed, TaskStatus.Failed):
        time.sleep(0.2)
    tasks.append({"id": task, "status": str(qpu.task_status(task)),
                  "result": json.loads(qpu.task_result(task).value)})
out["tasks"] = tasks
qpu.release(session)
print(json.dumps(out))
"""


def _run_qrmi_as(
    user: pwd.struct_passwd, cluster, resource: str, sequence: str, shots: int, slurm_job: str
) -> dict:
    """qrmi as Slurm's plugin would run it for a job of `user`, in a process of that user."""
    return _outcome(*_start_qrmi_as(user, cluster, resource, sequence, shots, slurm_job))


def _start_qrmi_as(
    user: pwd.struct_passwd, cluster, resource: str, sequence: str, shots: int, slurm_job: str
) -> tuple[subprocess.Popen[str], Path]:
    """The job started (its files in a directory that user may read: pytest's own is root's
    alone), and that directory."""
    home = Path(tempfile.mkdtemp(prefix="tweezer-slurm-"))
    home.chmod(0o755)
    script, seq = home / "job.py", home / "sequence.json"
    script.write_text(QRMI_SCRIPT)
    seq.write_text(sequence)
    for path in (script, seq):
        path.chmod(0o644)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        # The venv's packages (qrmi's wheel), for an interpreter that user may run.
        "PYTHONPATH": sysconfig.get_paths()["purelib"],
        "QRMI_JOB_QPU_RESOURCES": resource,
        "QRMI_JOB_QPU_TYPES": "pasqal-local",
        f"{resource}_QRMI_WARDEN_URL": f"{cluster.base_url}{PASQAL_LOCAL_PREFIX}/{resource}",
        "QRMI_JOB_ID": slurm_job,
        "QRMI_JOB_UID": str(user.pw_uid),
    }
    process = subprocess.Popen(
        [_python_for(user, env), str(script), resource, str(seq), str(shots)],
        env=env,
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=home,
    )
    return process, home


def _outcome(process: subprocess.Popen[str], home: Path) -> dict:
    """What the job printed, once it ended well."""
    try:
        out, err = process.communicate(timeout=180)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _python_for(user: pwd.struct_passwd, env: dict[str, str]) -> str:
    """This interpreter if `user` may run it, else Debian's (the same minor version): a venv
    built from an interpreter under a private home (pyenv's in /root) is not theirs to run."""
    for python in (sys.executable, "/usr/bin/python3"):
        try:
            subprocess.run(
                [python, "-c", "import qrmi"],
                env=env,
                user=user.pw_uid,
                group=user.pw_gid,
                extra_groups=[],
                capture_output=True,
                check=True,
                timeout=60,
            )
        except (PermissionError, FileNotFoundError, subprocess.CalledProcessError):
            continue
        return python
    raise AssertionError(f"no Python with qrmi that Unix user {user.pw_name} may run")


@pytest.mark.parametrize("device_type", ["EMU_FREE", "FRESNEL"])
def test_a_slurm_jobs_qrmi_runs_tasks_in_one_session_and_releases_it(onprem, device_type, tmp_path):
    cluster = onprem
    user, project = _slurm_user(cluster, NOBODY.pw_uid)
    if device_type == "FRESNEL":
        device = device_registry(cluster.settings)["FRESNEL"].pulser_device
        sequence = sequences.fresnel(device).build(omega_max=6).to_abstract_repr()
    else:
        sequence = sequences.fixed(duration=200, atoms=2)
    slurm_job = str(secrets.randbelow(10**6))
    out = _run_qrmi_as(NOBODY, cluster, device_type, sequence, 40, slurm_job)
    assert out["accessible"] is True and out["target"]
    assert [t["status"] for t in out["tasks"]] == ["TaskStatus.Completed"] * 2
    for task in out["tasks"]:
        assert sum(task["result"]["counter"].values()) == 40
    numbers = [int(t["id"]) for t in out["tasks"]]
    assert numbers[1] > numbers[0]
    # One session of that Slurm job and user: both tasks in one open batch, closed by release.
    sessions = Sessions(cluster.client, cluster.settings.namespace)
    session = sessions.get(out["session"])
    assert session is not None and session.slurm_job_id == slurm_job
    assert (session.user_id, session.project_id, session.unix_uid) == (user, project, NOBODY.pw_uid)
    assert session.closed_us is not None
    [batch_id] = sessions.batches(session.id)
    store_batch = wait_for(
        lambda: (b := _store(cluster).get_batch(batch_id)) and b.status == "DONE" and b
    )
    assert store_batch.user_id == user and store_batch.project_id == project
    assert not store_batch.open and sum(store_batch.counts.values()) == 2
    # Accounted per Slurm job: the command and the admin route give the same figures.
    [used] = json.loads(run_admin(cluster, "usage", "--slurm-job", slurm_job, "--json"))
    assert (used["user_id"], used["project_id"], used["device_type"]) == (
        user,
        project,
        device_type,
    )
    assert used["jobs"] == 2 and used["shots"] == 80 and used["closed_at"]
    assert used["qpu_held_s"] >= used["qpu_computed_s"] > 0 and used["first_run_at"]
    accounts = Accounts(cluster.client, cluster.settings.namespace)
    admin = accounts.create_user(f"admin-{secrets.token_hex(3)}", admin=True)
    token = accounts.issue_token(admin).token
    page = call_api(cluster, token, "GET", f"/admin/api/v1/usage?slurm_job_id={slurm_job}")
    assert page.json()["data"] == [used]
    table = run_admin(cluster, "usage", "--since", "2020-01-01", "--by", "slurm-job")
    assert any(line.split()[:2] == [slurm_job, "1"] for line in table.splitlines()[1:])


def _store(cluster):
    from core.db import Db
    from core.store import Store

    return Store(Db.of(cluster.client, cluster.settings.namespace))


def _credential() -> str:
    made = subprocess.run(["munge", "--no-input"], capture_output=True, text=True, check=True)
    return made.stdout.strip()


def test_refusals_name_the_problem_and_store_nothing(onprem):
    cluster = onprem
    base = f"{cluster.base_url}{PASQAL_LOCAL_PREFIX}/EMU_FREE"
    _slurm_user(cluster, os.getuid())  # the test's own uid (root): the credentials below
    other = Accounts(cluster.client, cluster.settings.namespace).create_user("someone-else")
    sessions = Sessions(cluster.client, cluster.settings.namespace)
    theirs = sessions.open(other, 1, "p", "EMU_FREE", "7", 0)

    def call(method: str, path: str, cred: str | None = "new", **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if cred == "new":
            cred = _credential()
        if cred is not None:
            headers["x-munge-cred"] = cred
        return requests.request(method, base + path, headers=headers, timeout=30, **kwargs)

    before = record_keys(cluster)
    uid = str(os.getuid())
    refusals = [
        (
            call("POST", "/sessions", None, json={"user_id": uid, "slurm_job_id": "1"}),
            401,
            "missing MUNGE credential",
        ),
        (
            call("POST", "/sessions", "MUNGE:forged:", json={"user_id": uid, "slurm_job_id": "1"}),
            401,
            "invalid MUNGE credential",
        ),
        (
            call("POST", "/sessions", json={"user_id": "4242", "slurm_job_id": "1"}),
            403,
            "user_id must be the uid of the MUNGE credential",
        ),
        (call("POST", "/sessions", json={"user_id": uid}), 400, "missing slurm_job_id"),
        (
            call("POST", "/sessions", json={"user_id": uid, "slurm_job_id": ""}),
            400,
            "slurm_job_id must be 1 to 64",
        ),
        (call("POST", "/jobs", json={"sequence": "{}", "shots": 5}), 400, "X-Warden-Session"),
        (
            call(
                "POST",
                "/jobs",
                json={"sequence": "{}", "shots": 5},
                headers={"X-Warden-Session": theirs.id},
            ),
            404,
            "not found",
        ),
        (call("GET", "/jobs/999999"), 404, "task 999999 not found"),
        (
            requests.get(f"{cluster.base_url}{PASQAL_LOCAL_PREFIX}/NOPE/accessible", timeout=30),
            404,
            "not served here",
        ),
    ]
    for response, status, message in refusals:
        assert response.status_code == status, (response.status_code, response.text)
        assert message in response.json()["message"], response.text
    # The refusals that may be attacks are audited: bad credentials, another's session.
    audit = AuditLog(cluster.client, cluster.settings.namespace)
    reasons = [e.detail["reason"] for e in audit.entries(action="pasqal_local.refused")]
    assert any("missing MUNGE credential" in r for r in reasons)
    assert any("invalid MUNGE credential" in r for r in reasons)
    assert any(f"session {theirs.id} of {other}" in r for r in reasons)
    # A replayed credential: the first use passes, the second is refused.
    cred = _credential()
    assert call("GET", "/jobs", cred).status_code == 200
    replayed = call("GET", "/jobs", cred)
    assert replayed.status_code == 401 and "replayed" in replayed.json()["message"]
    # A malformed sequence in a session of one's own: 422, and no job.
    opened = call("POST", "/sessions", json={"user_id": uid, "slurm_job_id": "12"})
    assert opened.status_code == 200
    session_id = opened.json()["id"]
    bad = call(
        "POST",
        "/jobs",
        json={"sequence": "not a sequence", "shots": 5},
        headers={"X-Warden-Session": session_id},
    )
    assert bad.status_code == 422 and "not a valid Pulser sequence" in bad.json()["message"]
    shots = call(
        "POST",
        "/jobs",
        json={"sequence": sequences.fixed(), "shots": 0},
        headers={"X-Warden-Session": session_id},
    )
    assert shots.status_code == 400 and "shots must be a positive integer" in shots.text
    assert sessions.batches(session_id) == []
    assert call("DELETE", f"/sessions/{session_id}").status_code == 200
    late = call(
        "POST",
        "/jobs",
        json={"sequence": sequences.fixed(), "shots": 5},
        headers={"X-Warden-Session": session_id},
    )
    assert late.status_code == 409 and "released" in late.json()["message"]
    assert record_keys(cluster) - before <= {
        cluster.settings.namespace + ":session:" + session_id,
        cluster.settings.namespace + ":slurm-job:12:sessions",
    }
    accounts = Accounts(cluster.client, cluster.settings.namespace)
    admin = accounts.issue_token(accounts.create_user("usage-admin", admin=True)).token
    for query, message in (
        ("by=month", "by must be one of slurm-job, user, project"),
        ("since=yesterday", "since must be an ISO-8601 time"),
        ("since=99999-01-01", "since must be an ISO-8601 time"),
    ):
        refused = call_api(cluster, admin, "GET", f"/admin/api/v1/usage?{query}")
        assert refused.status_code == 400 and message in refused.json()["message"], query


def test_a_credential_of_an_unmapped_uid_is_refused(onprem):
    """uid 1 (Debian's `daemon`) is no Tweezer user: 403 saying how to map it."""
    made = subprocess.run(
        ["munge", "--no-input"], user=1, capture_output=True, text=True, check=True
    )
    response = requests.get(
        f"{onprem.base_url}{PASQAL_LOCAL_PREFIX}/EMU_FREE/jobs",
        headers={"x-munge-cred": made.stdout.strip()},
        timeout=30,
    )
    assert response.status_code == 403
    assert "tweezer user add NAME --unix-uid 1" in response.json()["message"]
    audit = AuditLog(onprem.client, onprem.settings.namespace)
    assert audit.entries(actor="unix-uid:1", action="pasqal_local.refused")


def test_two_slurm_jobs_each_keep_the_qpu_for_their_tasks_while_the_other_waits(onprem):
    """Two users' Slurm jobs on the one EMU_FREE QPU: the first keeps it between its tasks, the
    second's task waits until the first releases its session, then runs."""
    cluster = onprem
    base = f"{cluster.base_url}{PASQAL_LOCAL_PREFIX}/EMU_FREE"
    daemon = pwd.getpwuid(1)
    for unix in (NOBODY, daemon):
        _slurm_user(cluster, unix.pw_uid)

    def call(unix: pwd.struct_passwd, method: str, path: str, **kwargs) -> dict:
        made = subprocess.run(
            ["munge", "--no-input"], user=unix.pw_uid, capture_output=True, text=True, check=True
        )
        headers = {"x-munge-cred": made.stdout.strip(), **kwargs.pop("headers", {})}
        response = requests.request(method, base + path, headers=headers, timeout=30, **kwargs)
        assert response.ok, response.text
        return response.json()

    def task(unix: pwd.struct_passwd, session: str) -> int:
        body = {"sequence": sequences.fixed(duration=200, atoms=2), "shots": 10}
        return call(unix, "POST", "/jobs", json=body, headers={"X-Warden-Session": session})["id"]

    def status(unix: pwd.struct_passwd, number: int) -> str:
        return call(unix, "GET", f"/jobs/{number}")["status"]

    first = call(
        NOBODY, "POST", "/sessions", json={"user_id": str(NOBODY.pw_uid), "slurm_job_id": "101"}
    )["id"]
    second = call(daemon, "POST", "/sessions", json={"user_id": "1", "slurm_job_id": "102"})["id"]
    a1 = task(NOBODY, first)
    wait_for(lambda: status(NOBODY, a1) == "DONE")
    b1 = task(daemon, second)  # the QPU is the first job's: this one waits
    a2 = task(NOBODY, first)
    wait_for(lambda: status(NOBODY, a2) == "DONE")
    assert status(daemon, b1) == "PENDING"
    call(NOBODY, "DELETE", f"/sessions/{first}")
    wait_for(lambda: status(daemon, b1) == "DONE")
    store = _store(cluster)
    sessions = Sessions(cluster.client, cluster.settings.namespace)
    [held] = store.get_batches(sessions.batches(first))
    [waited] = store.get_batches(sessions.batches(second))
    assert held.status == "DONE" and held.end_us <= waited.start_us
    closed = sessions.get(first).closed_us
    assert closed is not None and waited.start_us >= closed
    call(daemon, "DELETE", f"/sessions/{second}")


def test_a_user_of_several_projects_has_its_slurm_project_named(onprem):
    """Sessions run in the user's only project; one with several needs an administrator to name
    the one for its Slurm jobs (`tweezer user set --slurm-project`)."""
    cluster = onprem
    user, _ = _slurm_user(cluster, 2)  # Debian's `bin`: no other test's user
    accounts = Accounts(cluster.client, cluster.settings.namespace)
    second = accounts.create_project(f"lab-{secrets.token_hex(3)}").id
    accounts.add_member(second, user)

    def open_session() -> requests.Response:
        made = subprocess.run(
            ["munge", "--no-input"], user=2, capture_output=True, text=True, check=True
        )
        return requests.post(
            f"{cluster.base_url}{PASQAL_LOCAL_PREFIX}/EMU_FREE/sessions",
            headers={"x-munge-cred": made.stdout.strip()},
            json={"user_id": "2", "slurm_job_id": "900"},
            timeout=30,
        )

    refused = open_session()
    assert refused.status_code == 409
    assert f"tweezer user set {user} --slurm-project ID" in refused.json()["message"]
    run_admin(cluster, "user", "set", user, "--slurm-project", second)
    opened = open_session()
    assert opened.status_code == 200, opened.text
    session = Sessions(cluster.client, cluster.settings.namespace).get(opened.json()["id"])
    assert session is not None and session.project_id == second


def test_two_users_qrmi_jobs_at_once_take_the_qpu_in_turn(onprem):
    """Two Slurm jobs of two users started at once through the real qrmi, two tasks each, on
    the one EMU_FREE QPU: each keeps it for both its tasks, the other's wait their turn."""
    cluster = onprem
    daemon = pwd.getpwuid(1)
    for unix in (NOBODY, daemon):
        _slurm_user(cluster, unix.pw_uid)
    sequence = sequences.fixed(duration=200, atoms=2)
    started = [
        _start_qrmi_as(unix, cluster, "EMU_FREE", sequence, 20, job)
        for unix, job in ((NOBODY, "501"), (daemon, "502"))
    ]
    outs = [_outcome(*job) for job in started]
    sessions = Sessions(cluster.client, cluster.settings.namespace)
    batches = []
    for out in outs:
        assert [t["status"] for t in out["tasks"]] == ["TaskStatus.Completed"] * 2
        [batch_id] = sessions.batches(out["session"])
        batch = wait_for(
            lambda b=batch_id: (x := _store(cluster).get_batch(b)) and x.status == "DONE" and x
        )
        assert sum(batch.counts.values()) == 2  # both tasks of the job in its one batch
        batches.append(batch)
    first, second = sorted(batches, key=lambda b: b.start_us)
    assert first.end_us <= second.start_us  # in turn: the QPU was never shared


def test_a_task_after_its_sessions_batch_ended_opens_another(onprem):
    """The open-batch limits apply: a session's batch that ended (cancelled here, as a timeout
    ends one) takes no more tasks, and the session's next task opens a new batch."""
    cluster = onprem
    _slurm_user(cluster, os.getuid())
    base = f"{cluster.base_url}{PASQAL_LOCAL_PREFIX}/EMU_FREE"

    def call(method: str, path: str, **kwargs) -> dict:
        headers = {"x-munge-cred": _credential(), **kwargs.pop("headers", {})}
        response = requests.request(method, base + path, headers=headers, timeout=30, **kwargs)
        assert response.ok, response.text
        return response.json()

    session = call("POST", "/sessions", json={"user_id": str(os.getuid()), "slurm_job_id": "77"})[
        "id"
    ]
    task = {"sequence": sequences.fixed(duration=200, atoms=2), "shots": 5}
    first = call("POST", "/jobs", json=task, headers={"X-Warden-Session": session})["id"]
    wait_for(lambda: call("GET", f"/jobs/{first}")["status"] == "DONE")
    sessions = Sessions(cluster.client, cluster.settings.namespace)
    [ended] = sessions.batches(session)
    _store(cluster).cancel_batch(ended, now_us(), "test")
    second = call("POST", "/jobs", json=task, headers={"X-Warden-Session": session})["id"]
    assert wait_for(lambda: call("GET", f"/jobs/{second}")["status"] == "DONE")
    later = sessions.batches(session)
    assert len(later) == 2 and later[0] == ended
    assert _store(cluster).get_job(sessions.job_id_of(second)).batch_id == later[1]
    # GET /jobs: the user's tasks, newest first, with their results.
    listed = {t["id"]: t for t in call("GET", "/jobs")}
    assert list(listed)[:2] == [second, first]
    assert all(listed[n]["status"] == "DONE" for n in (first, second))
    assert sum(json.loads(listed[second]["results"])["counter"].values()) == 5
    call("DELETE", f"/sessions/{session}")


def test_refusals_from_one_address_cannot_flood_the_audit_log(start_cluster, host_munged):
    """Each audited refusal counts against its address's rate limit: past it, 429 and no
    entry (here 5 at once, 2 a second)."""
    cluster = start_cluster(qpus={"EMU_FREE": 1}, rate_limit_per_s=2.0, rate_limit_burst=5)
    url = f"{cluster.base_url}{PASQAL_LOCAL_PREFIX}/EMU_FREE/jobs"
    codes = [
        requests.get(url, headers={"x-munge-cred": "MUNGE:forged:"}, timeout=30).status_code
        for _ in range(12)
    ]
    assert codes.count(401) <= 6 and codes.count(429) >= 6, codes
    audit = AuditLog(cluster.client, cluster.settings.namespace)
    assert len(audit.entries(action="pasqal_local.refused")) == codes.count(401)
