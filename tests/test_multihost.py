"""A cluster spread over three hosts, made of Linux network namespaces joined by a bridge:
Redis (TLS only, ACL users, the shipped deploy/users.acl), the API and a scheduler on host A;
an EMU_FREE worker pool on host B and another on host C; the unmodified SDK as a client on a
fourth address. Then host B's link is cut mid-job and restored.

Needs root (as CI runs); skipped with the reason where namespaces cannot be made.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from core.accounts import Accounts
from core.db import Db
from core.settings import Settings
from core.store import Store
from launch.netns import ADDRESS, Hosts, can_make_namespaces
from tests import sequences
from tests.conftest import Account, make_sdk, make_settings
from tests.helpers import certificates, wait_for

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
SEQ = sequences.parametrized()
JOB = {"runs": 20, "variables": {"omega_max": 6}}


@dataclass
class Spread:
    hosts: Hosts
    settings: Settings  # the API's and the scheduler's (user `tweezer`)
    worker_url: str  # rediss:// as user `tweezer-worker`
    passwords: dict[str, str]
    client: redis.Redis
    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{ADDRESS['a']}:8000"

    def env(self, **overrides: str) -> dict[str, str]:
        return {**os.environ, **self.settings.to_env(), **overrides}

    def start(self, name: str, host: str, *command: str, **env: str) -> subprocess.Popen:
        argv = [sys.executable, "-m", "cli.main", *command]
        process = self.hosts.run(host, argv, self.env(**env), self.logs / f"{name}.log")
        self.processes[name] = process
        return process

    def account(self) -> Account:
        accounts = Accounts(self.client, self.settings.namespace)
        user = accounts.create_user(f"user-{secrets.token_hex(4)}")
        project = accounts.create_project(f"project-{secrets.token_hex(4)}")
        accounts.add_member(project.id, user)
        return Account(user, project.id, accounts.issue_token(user).token)

    def sdk(self, account: Account) -> Any:
        return make_sdk(self.base_url + "/core-fast", self.base_url + "/account", account)


@pytest.fixture(scope="module")
def spread(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spread]:
    reason = can_make_namespaces()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("spread")
    tls = certificates(root, ADDRESS["a"])
    passwords = {"tweezer": secrets.token_hex(16), "tweezer-worker": secrets.token_hex(16)}
    # The shipped ACL file, with real passwords: what a lab deploys is what is tested.
    acl = (DEPLOY / "users.acl").read_text()
    acl = acl.replace(">change-me-api-password", ">" + passwords["tweezer"])
    acl = acl.replace(">change-me-worker-password", ">" + passwords["tweezer-worker"])
    (root / "users.acl").write_text(acl)
    hosts = Hosts(str(os.getpid() % 10000)).create()
    redis_dir = root / "redis"
    redis_dir.mkdir()
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            hosts.names["a"],
            "redis-server",
            "--bind",
            ADDRESS["a"],
            "--port",
            "0",
            "--tls-port",
            "6380",
            "--protected-mode",
            "yes",
            "--tls-cert-file",
            str(tls["redis.crt"]),
            "--tls-key-file",
            str(tls["redis.key"]),
            "--tls-ca-cert-file",
            str(tls["ca.crt"]),
            "--tls-auth-clients",
            "no",
            "--aclfile",
            str(root / "users.acl"),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(redis_dir),
            "--logfile",
            str(redis_dir / "redis.log"),
        ],
        start_new_session=True,
    )

    def url(user: str) -> str:
        return f"rediss://{user}:{passwords[user]}@{ADDRESS['a']}:6380/0"

    settings = make_settings(
        url("tweezer"),
        namespace="tweezer",  # as users.acl confines each user to it
        qpus={"EMU_FREE": 2},
        redis_tls_ca_file=str(tls["ca.crt"]),
        public_url=f"http://{ADDRESS['a']}:8000",
    )
    client = redis.Redis.from_url(url("tweezer"), decode_responses=True, **settings.redis_tls)
    logs = root / "logs"
    logs.mkdir()
    spread = Spread(hosts, settings, url("tweezer-worker"), passwords, client, logs)
    try:
        wait_for(lambda: _pings(client), timeout_s=30)
        spread.start("api", "a", "api", "--host", ADDRESS["a"], "--port", "8000")
        spread.start("scheduler", "a", "scheduler")
        for name, host, qpu in (("worker-b", "b", "EMU_FREE-0"), ("worker-c", "c", "EMU_FREE-1")):
            spread.start(
                name, host, "worker", "--qpu", qpu, TWEEZER_REDIS_URL=url("tweezer-worker")
            )
        wait_for(lambda: _healthy(spread.base_url), timeout_s=60)
        for worker in ("worker-b", "worker-c"):
            wait_for(lambda w=worker: "ready." in (logs / f"{w}.log").read_text(), timeout_s=60)
        yield spread
    finally:
        for process in spread.processes.values():
            process.terminate()
        for process in spread.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        os.killpg(server.pid, 15)
        server.wait(10)
        hosts.destroy()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


def _healthy(base_url: str) -> bool:
    import requests

    try:
        return requests.get(base_url + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_jobs_run_on_worker_hosts_through_tls_and_acl_users(spread):
    sdk = spread.sdk(spread.account())
    # Two batches at once: each QPU (EMU_FREE-0 on host B, EMU_FREE-1 on host C) takes one.
    batches = [sdk.create_batch(SEQ, [JOB, JOB], device_type="EMU_FREE") for _ in range(2)]
    done = [
        wait_for(lambda b=b: (x := sdk.get_batch(b.id)).status == "DONE" and x, timeout_s=90)
        for b in batches
    ]
    assert [sum(j.result.values()) for b in done for j in b.ordered_jobs] == [20] * 4
    store = Store(Db.of(spread.client, spread.settings.namespace))
    assert {b.qpu for b in store.get_batches(b.id for b in done)} == {"EMU_FREE-0", "EMU_FREE-1"}
    # No worker runs anywhere else: each QPU's jobs ran on its host, as their logs say.
    for host in ("worker-b", "worker-c"):
        assert "succeeded" in (spread.logs / f"{host}.log").read_text()


def test_a_worker_host_cut_off_mid_job_loses_nothing_and_commits_once(spread):
    sdk = spread.sdk(spread.account())
    store = Store(Db.of(spread.client, spread.settings.namespace))
    slow = sdk.create_batch(sequences.slow(), [{"runs": 10}], device_type="EMU_FREE")
    job = slow.ordered_jobs[0]
    wait_for(lambda: sdk.get_job_status(job.id).value == "RUNNING", timeout_s=60)
    host = {"EMU_FREE-0": "b", "EMU_FREE-1": "c"}[store.get_batch(slow.id).qpu]
    spread.hosts.link(host, "down")
    time.sleep(4)  # longer than the heartbeat TTL: the job is presumed lost meanwhile
    spread.hosts.link(host, "up")
    finished = wait_for(lambda: (b := sdk.get_batch(slow.id)).status == "DONE" and b, timeout_s=120)
    [result] = finished.ordered_jobs
    assert result.status == "DONE" and sum(result.result.values()) == 10
    assert finished.jobs_count_per_status["DONE"] == 1  # committed once
    assert 1 <= store.get_job(job.id).attempts <= 2


def test_a_qpu_added_on_another_host_is_served_without_restarting_anything(spread):
    """One command on host C with one setting (TWEEZER_QPUS naming a third EMU_FREE QPU): the
    API and the scheduler, started with two, give it batches once its worker announces it."""
    sdk = spread.sdk(spread.account())
    spread.start(
        "worker-c2",
        "c",
        "worker",
        "--qpu",
        "EMU_FREE-2",
        TWEEZER_REDIS_URL=spread.worker_url,
        TWEEZER_QPUS="EMU_FREE=3",
    )
    wait_for(lambda: "ready." in (spread.logs / "worker-c2.log").read_text(), timeout_s=60)
    holders = [sdk.create_batch(SEQ, [], open=True, device_type="EMU_FREE") for _ in range(2)]
    for holder in holders:  # the two configured QPUs are busy...
        wait_for(lambda h=holder: sdk.get_batch(h.id).status == "RUNNING", timeout_s=30)
    third = sdk.create_batch(SEQ, [JOB], device_type="EMU_FREE")  # ...so a third QPU takes it
    done = wait_for(lambda: (b := sdk.get_batch(third.id)).status == "DONE" and b, timeout_s=60)
    assert sum(done.ordered_jobs[0].result.values()) == 20
    # The holders kept theirs meanwhile, so three QPUs served at once: the new one among them
    # (not always the third batch's: a QPU still finishing the previous test's lost job takes
    # no new batch until it has, and a holder may go to the new QPU first).
    store = Store(Db.of(spread.client, spread.settings.namespace))
    served = {b.qpu for b in store.get_batches([third.id, *(h.id for h in holders)])}
    assert served == {"EMU_FREE-0", "EMU_FREE-1", "EMU_FREE-2"}
    for holder in holders:
        holder.close()


def test_wrong_credentials_or_no_tls_are_refused_and_say_so(spread):
    def worker(url: str) -> subprocess.CompletedProcess[str]:
        argv = [
            "ip",
            "netns",
            "exec",
            spread.hosts.names["c"],
            sys.executable,
            "-m",
            "cli.main",
            "worker",
            "--qpu",
            "EMU_FREE-1",
        ]
        env = spread.env(TWEEZER_REDIS_URL=url)
        if not url.startswith("rediss://"):
            env.pop("TWEEZER_REDIS_TLS_CA_FILE")
        return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)

    wrong = worker(f"rediss://tweezer-worker:not-the-password@{ADDRESS['a']}:6380/0")
    assert wrong.returncode == 2 and "refused our credentials" in wrong.stderr, wrong.stderr
    password = spread.passwords["tweezer-worker"]
    plain = worker(f"redis://tweezer-worker:{password}@{ADDRESS['a']}:6380/0")
    assert plain.returncode == 2 and "use rediss://" in plain.stderr, plain.stderr
    # The worker user may not administer Redis.
    as_worker = redis.Redis.from_url(spread.worker_url, **spread.settings.redis_tls)
    with pytest.raises(redis.exceptions.NoPermissionError):
        as_worker.config_get("*")
    with pytest.raises(redis.exceptions.NoPermissionError):
        as_worker.get("another-namespace:key")


def test_secrets_show_in_no_process_list_and_no_log(spread):
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "cli.main worker" in listing
    logs = "".join(p.read_text(errors="replace") for p in spread.logs.glob("*.log"))
    assert "ready." in logs
    for secret in (*spread.passwords.values(), spread.settings.auth_secret):
        assert secret not in listing and secret not in logs
