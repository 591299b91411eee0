"""A hostile lab member against a real cluster: no single user can exhaust the store, keep a QPU
forever, lock another user out of password login, or read what is not theirs from logs or files.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from pasqal_cloud.errors import BatchCreationError, JobCreationError
from requests.adapters import HTTPAdapter

from core.accounts import Accounts
from core.settings import Settings
from launch.redis_server import default_maxmemory_bytes, free_port
from tests import sequences
from tests.conftest import Account
from tests.factories import tweezer_up
from tests.helpers import (
    auth,
    call_api,
    create_body,
    hold_qpu,
    post_gzip,
    record_keys,
    run_admin,
    wait_for,
)

SEQ = sequences.parametrized()
JOB = {"runs": 5, "variables": {"omega_max": 6}}
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def strict(start_cluster):
    """A cluster with short holds and retention, and the default login limits."""
    return start_cluster(
        qpus={"EMU_FREE": 1},
        open_batch_max_hold_s=6.0,
        input_retention_s=1.0,
        login_attempts_per_min=Settings.model_fields["login_attempts_per_min"].default,
        allowed_hosts="tweezer.lab.example",
    )


class _FromAddress(HTTPAdapter):
    """Connections from a given loopback address: another client, as the server sees it."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def client_at(address: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", _FromAddress(address))
    return session


def login(cluster, session: requests.Session, username: str, password: str, **headers: str):
    return session.post(
        cluster.base_url + "/oauth/token",
        data={"grant_type": "password", "username": username, "password": password},
        headers=headers,
        timeout=30,
    )


def user_with_password(cluster, name: str) -> str:
    accounts = Accounts(cluster.client, cluster.settings.namespace)
    return accounts.create_user(f"{name}-{time.time_ns()}", PASSWORD)


def redis_bytes(cluster) -> int:
    return int(cluster.client.info("memory")["used_memory"])


# -- 1. storage amplification ---------------------------------------------------------------


def test_copies_of_one_big_sequence_are_stored_once(cluster):
    """The attack: 120 jobs, each with its own copy of a 1,999-pulse sequence (the copies
    inflate to tens of MB). Accepted, but the sequence is stored once: Redis grows by about one
    copy, and every job still reads back its sequence."""
    account = cluster.new_account()
    sdk = cluster.sdk(account)
    big = sequences.many_pulses(1999)
    body = create_body(
        account, SEQ, jobs=[{"runs": 1, "sequence": big} for _ in range(120)], open=False
    )
    inflated = len(json.dumps(body))
    assert inflated > 120 * len(big)
    with hold_qpu(sdk, SEQ):  # it stays PENDING: nothing of it runs
        before = redis_bytes(cluster)
        created = post_gzip(cluster, account, "/api/v1/batches", body)
        grown = redis_bytes(cluster) - before
        assert created.status_code == 201, created.text
        batch = created.json()["data"]
        sdk.cancel_batch(batch["id"])
    # One copy of the sequence plus ~2 KB of record and indexes per job, not 120 copies (and
    # the quota counts about as much as Redis really took). The allowance also covers the
    # request's own buffers, which Redis frees lazily, and the scheduler's state beside it.
    assert grown < 2 * len(big) + 120 * 6144, (grown, len(big))
    assert grown < inflated / 20
    counted = cluster.store.stored_bytes(account.project_id)
    assert len(big) < counted < 2 * grown, (counted, grown)
    job = requests.get(
        f"{cluster.core_url}/api/v2/jobs/{batch['jobs'][7]['id']}",
        headers=auth(account),
        timeout=30,
    ).json()["data"]
    assert job["sequence"] == big


def test_a_project_over_its_storage_quota_is_refused_with_403_and_nothing_stored(cluster):
    account = cluster.new_account()
    sdk = cluster.sdk(account)
    store = cluster.store
    done = sdk.create_batch(SEQ, [JOB], device_type="EMU_FREE", wait=True)
    assert done.status == "DONE"
    used = store.stored_bytes(account.project_id)
    # Inputs, records and the stored result; the result's reservation was released.
    result_bytes = len(cluster.client.get(f"tz:job:{done.ordered_jobs[0].id}:result"))
    assert len(SEQ) + result_bytes < used < len(SEQ) + result_bytes + 8 * 1024

    run_admin(cluster, "project", "set", account.project_id, "--max-stored-bytes", str(used + 2048))
    before = record_keys(cluster)
    with pytest.raises(BatchCreationError):
        sdk.create_batch(SEQ, [JOB] * 3, device_type="EMU_FREE")
    response = post_gzip(cluster, account, "/api/v1/batches", create_body(account, SEQ))
    assert response.status_code == 403
    data = response.json()["data"]
    assert data["error_code"] == "quota_exceeded" and data["quota"] == "max_stored_bytes"
    assert "(max_stored_bytes)" in data["description"]
    assert record_keys(cluster) == before
    assert store.stored_bytes(account.project_id) == used

    # Lifting the project's own limit brings back the cluster's default (1 GiB).
    run_admin(cluster, "project", "set", account.project_id, "--max-stored-bytes", "none")
    assert sdk.create_batch(SEQ, [JOB], device_type="EMU_FREE", wait=True).status == "DONE"


def test_sequences_are_dropped_after_the_retention_and_the_api_says_so(strict):
    """Retention is 1 s on this cluster: once the batch has been finished that long, its
    sequences stop costing memory; the record, variables and results stay."""
    account = strict.new_account()
    sdk = strict.sdk(account)
    batch = sdk.create_batch(SEQ, [JOB, JOB], device_type="EMU_FREE", wait=True)
    assert batch.status == "DONE"
    counts = {j.id: j.result for j in batch.ordered_jobs}

    def purged() -> dict[str, Any]:
        data = _get(strict, account, f"/api/v2/batches/{batch.id}")
        return data if data["inputs_expired_at"] else {}

    data = wait_for(purged, timeout_s=20)
    assert data["sequence_builder"] is None
    assert not strict.client.exists(f"tz:batch:{batch.id}:sequences")
    again = sdk.get_batch(batch.id)
    assert {j.id: j.result for j in again.ordered_jobs} == counts
    assert [j.variables for j in again.ordered_jobs] == [{"omega_max": 6}] * 2
    rebatch = requests.post(
        f"{strict.core_url}/api/v1/batches/{batch.id}/rebatch",
        headers=auth(account),
        timeout=30,
    )
    assert rebatch.status_code == 409
    assert "can no longer be rebatched" in rebatch.json()["data"]["description"]


# -- 2. an open batch holding a QPU forever --------------------------------------------------


def test_an_open_batch_squatter_is_released_while_another_project_waits(strict):
    """The squatter keeps its open batch busy with one-shot jobs, so it is never idle; the
    longest hold (6 s here, hours by default) still hands the QPU to the waiting project."""
    squatter, waiting = strict.new_account(), strict.new_account()
    squatter_sdk, waiting_sdk = strict.sdk(squatter), strict.sdk(waiting)
    held = squatter_sdk.create_batch(SEQ, [JOB], open=True, device_type="EMU_FREE")
    wait_for(lambda: squatter_sdk.get_batch(held.id).status == "RUNNING")
    stop, refused = threading.Event(), []

    def keep_busy() -> None:
        while not stop.wait(0.3):
            try:
                held.add_jobs([{"runs": 1, "variables": {"omega_max": 6}}])
            except JobCreationError as exc:  # once the batch timed out
                refused.append(exc)
                return

    adder = threading.Thread(target=keep_busy)
    adder.start()
    try:
        other = waiting_sdk.create_batch(SEQ, [JOB], device_type="EMU_FREE")
        wait_for(lambda: waiting_sdk.get_batch(other.id).status == "DONE", timeout_s=40)
    finally:
        stop.set()
        adder.join()
    ended = squatter_sdk.get_batch(held.id)
    assert ended.status == "TIMED_OUT" and not ended.open
    assert ended.jobs_count > 3  # it really was kept busy
    started, ended_at = _time(ended.start_datetime), _time(ended.end_datetime)
    assert 6.0 <= (ended_at - started).total_seconds() < 9.0
    assert _time(waiting_sdk.get_batch(other.id).start_datetime) >= ended_at
    if not refused:  # the other batch was done before the squatter's next try
        with pytest.raises(JobCreationError):
            held.add_jobs([{"runs": 1, "variables": {"omega_max": 6}}])


# -- 3. and 4. logins ------------------------------------------------------------------------


def test_wrong_passwords_from_elsewhere_do_not_lock_the_user_out(strict):
    alice = user_with_password(strict, "alice")
    attacker = client_at("127.0.0.2")
    answers = [login(strict, attacker, alice, f"guess {i}") for i in range(8)]
    codes = [a.status_code for a in answers]
    # Five free guesses, then the pair (alice, this address) must wait, longer each time.
    assert codes[:5] == [403] * 5 and codes[-1] == 429, codes
    assert answers[-1].json()["error"] == "too_many_attempts"
    assert (
        "wrong passwords for this username from this address"
        in (answers[-1].json()["error_description"])
    )
    assert "token" not in answers[-1].json()["error_description"]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    # The attacker cannot use the right password either, from there, while it waits...
    assert login(strict, attacker, alice, PASSWORD).status_code == 429
    # ...but alice, from her own address, logs in at once, again and again.
    for _ in range(3):
        mine = login(strict, requests.Session(), alice, PASSWORD)
        assert mine.status_code == 200 and mine.json()["access_token"]


def test_the_delay_grows_with_each_wrong_password_and_a_success_resets_it(strict):
    bob = user_with_password(strict, "bob")
    session = client_at("127.0.0.6")
    for i in range(5):
        assert login(strict, session, bob, f"guess {i}").status_code == 403
    waits = []
    for _ in range(2):
        refused = login(strict, session, bob, "guess again")
        assert refused.status_code == 429
        waits.append(int(refused.headers["Retry-After"]))
        time.sleep(waits[-1] + 0.1)
        assert login(strict, session, bob, "still wrong").status_code == 403
    assert waits[1] > waits[0] >= 1, waits
    time.sleep(int(login(strict, session, bob, "x").headers.get("Retry-After", "0")) + 0.1)
    assert login(strict, session, bob, PASSWORD).status_code == 200
    assert login(strict, session, bob, "one slip").status_code == 403  # counted afresh
    assert login(strict, session, bob, "two slips").status_code == 403


def test_logins_are_limited_per_address_and_forwarded_headers_are_not_trusted(strict):
    """20 attempts a minute from one address (as many at once), whatever the usernames, and a
    client cannot pose as many addresses with X-Forwarded-For unless a trusted proxy is
    configured."""
    session = client_at("127.0.0.3")
    started, codes = time.monotonic(), []
    while 429 not in codes and len(codes) < 40:
        forwarded = {"X-Forwarded-For": f"10.0.0.{len(codes)}"}
        codes.append(
            login(strict, session, f"nobody-{len(codes)}", "guess", **forwarded).status_code
        )
    refilled = (time.monotonic() - started) * 20 / 60  # the rate refills the burst meanwhile
    assert codes[-1] == 429 and 20 <= codes.index(429) <= 20 + refilled + 1, codes
    refused = login(strict, session, "someone", "guess")
    assert "from this address" in refused.json()["error_description"]
    # Another address is not held back.
    assert login(strict, client_at("127.0.0.4"), "someone", "guess").status_code == 403


@pytest.mark.serial  # its latencies and rates mean something only on an otherwise idle machine
def test_a_flood_of_unknown_user_logins_does_not_slow_other_users(strict):
    """Many addresses logging in as unknown users: the cluster checks at most its global rate
    of passwords (5/s, bursts of 20) and a few at a time per API process, so everyone else's
    requests keep their pace."""
    account = strict.new_account()
    headers = auth(account)

    def latencies(count: int) -> list[float]:
        out = []
        for _ in range(count):
            started = time.perf_counter()
            assert requests.get(strict.core_url + "/api/v1/batches", headers=headers, timeout=30)
            out.append(time.perf_counter() - started)
        return out

    quiet = statistics.median(latencies(20))
    stop, codes, lock = threading.Event(), [], threading.Lock()

    def flood(address: str) -> None:
        session = client_at(address)
        while not stop.is_set():
            code = login(strict, session, f"ghost-{time.time_ns()}", "guess").status_code
            with lock:
                codes.append(code)

    threads = [threading.Thread(target=flood, args=(f"127.0.1.{i}",)) for i in range(1, 13)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        # Long enough that the steady state (most attempts refused) outweighs the burst.
        time.sleep(3.0)
        busy = statistics.median(latencies(30))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    elapsed = time.monotonic() - started
    checked = codes.count(403)
    assert set(codes) <= {403, 429} and codes.count(429) > checked
    assert checked <= 20 + 5 * elapsed + 5, (checked, elapsed)
    assert busy <= max(3 * quiet, quiet + 0.1), (quiet, busy)


# -- 5., 6. and 8. what the API answers and logs ---------------------------------------------


def test_results_links_stay_out_of_the_logs_and_ignore_a_forged_host(cluster, account, sdk):
    batch = sdk.create_batch(SEQ, [JOB], device_type="EMU_FREE", wait=True)
    job_id = batch.ordered_jobs[0].id
    headers = auth(account)
    forged = requests.get(
        f"{cluster.core_url}/api/v1/jobs/{job_id}/results_link",
        headers={**headers, "Host": "evil.example"},
        timeout=30,
    ).json()["data"]["results_link"]
    assert forged.startswith(cluster.base_url + "/core-fast/api/v1/results/"), forged
    download = requests.get(forged, timeout=30)
    assert download.status_code == 200 and "counter" in download.json()
    signature = forged.split("signature=")[1]

    def logs() -> str:
        return "".join(p.read_text() for p in Path(cluster.cluster.log_dir).glob("*.log"))

    # The request is logged (once the response is sent), without its signature.
    wait_for(lambda: f"GET /core-fast/api/v1/results/{job_id} " in logs(), timeout_s=10)
    assert signature not in logs() and "signature=" not in logs()


def test_results_links_name_the_called_host_only_when_it_is_allowed(strict):
    account = strict.new_account()
    batch = strict.sdk(account).create_batch(SEQ, [JOB], device_type="EMU_FREE", wait=True)
    path = f"/api/v1/jobs/{batch.ordered_jobs[0].id}/results_link"

    def link(host: str) -> str:
        headers = {**auth(account), "Host": host}
        response = requests.get(strict.core_url + path, headers=headers, timeout=30)
        return str(response.json()["data"]["results_link"])

    assert link("tweezer.lab.example").startswith("http://tweezer.lab.example/core-fast/")
    assert link("evil.example").startswith(strict.base_url + "/core-fast/")


def test_every_response_carries_the_security_headers(cluster, account):
    answers = {
        "list": call_api(cluster, account, "GET", "/api/v1/batches"),
        "unknown route": requests.get(cluster.base_url + "/nowhere", timeout=30),
        "no token": requests.get(cluster.core_url + "/api/v1/batches", timeout=30),
        "login": requests.post(
            cluster.base_url + "/oauth/token",
            data={"grant_type": "password", "username": "x", "password": "y"},
            timeout=30,
        ),
        "health": requests.get(cluster.base_url + "/healthz", timeout=30),
        "ready": requests.get(cluster.base_url + "/readyz", timeout=30),
    }
    for name, response in answers.items():
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
        assert response.headers["X-Frame-Options"] == "DENY", name
        assert response.headers["Referrer-Policy"] == "no-referrer", name
        assert "no-store" in response.headers["Cache-Control"], name
        assert "default-src 'none'" in response.headers["Content-Security-Policy"], name


# -- 7. files others can read ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="acting as `nobody` needs root to switch users")
def test_another_account_can_neither_read_the_data_dir_nor_open_its_redis(tmp_path):
    """`tweezer up` in a directory everyone may enter, on a machine other people use: its data
    dir and every file under it (keys, cluster.json, the AOF with password hashes, logs) are its
    account's alone; its Redis answers no one without the generated password, which shows in
    no process list and no output; the admin commands still find the cluster by themselves."""
    open_parent = tmp_path / "shared"
    open_parent.mkdir()
    for path in (tmp_path, open_parent):
        path.chmod(0o755)
    data_dir = open_parent / "data"
    output = tmp_path / "up.log"
    port = free_port()
    with output.open("w") as out:
        up = tweezer_up(port, data_dir, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Tweezer is up" in output.read_text(), timeout_s=90)
        paths = [data_dir, *data_dir.rglob("*")]
        loose = {str(p): oct(p.stat().st_mode & 0o777) for p in paths if p.stat().st_mode & 0o077}
        assert not loose
        files = [str(p) for p in paths if p.is_file()]
        assert any(f.endswith(".aof") for f in files) and any(f.endswith(".key") for f in files)
        read = as_nobody(sys.executable, "-c", _READ_EACH, str(data_dir), *files)
        assert read.returncode == 0, read.stderr
        assert json.loads(read.stdout) == {}, read.stdout

        info = json.loads((data_dir / "cluster.json").read_text())
        redis_port = str(redis.connection.parse_url(info["redis_url"])["port"])
        for command in (["--scan"], ["GET", "tz"], ["SET", "tweezer:user:mallory", "admin"]):
            answer = as_nobody("redis-cli", "-p", redis_port, *command)
            assert "NOAUTH" in answer.stdout + answer.stderr, (command, answer)
        own = redis.Redis.from_url(info["redis_url"], decode_responses=True)
        assert not own.exists("tweezer:user:mallory")
        # A full store refuses writes before the host runs out of memory.
        assert int(own.config_get("maxmemory")["maxmemory"]) == default_maxmemory_bytes()

        password = (data_dir / "redis.key").read_text().strip()
        listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert "redis-server" in listing and password not in listing
        admin = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli.main",
                "device",
                "list",
                "--data-dir",
                str(data_dir),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert admin.returncode == 0 and "EMU_FREE" in admin.stdout, admin.stderr
    finally:
        up.terminate()
        up.wait(60)
    logged = output.read_text() + "".join(
        p.read_text(errors="replace") for p in data_dir.rglob("*.log")
    )
    assert password not in logged


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    """`argv` run as the unprivileged `nobody` account: another user of this machine."""
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )


#: Run as `nobody`: lists the directory and reads each file, printing what it could open.
_READ_EACH = """
import json, os, sys
opened = {}
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            opened[path] = len(os.listdir(path))
        else:
            opened[path] = len(open(path, 'rb').read())
    except PermissionError:
        pass
print(json.dumps(opened))
"""


def _time(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _get(cluster, account: Account, path: str) -> dict[str, Any]:
    response = call_api(cluster, account, "GET", path)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data
