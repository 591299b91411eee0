"""The README's way: `tweezer up` in the foreground, `tweezer demo` against it, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import psutil
import pytest
import requests

from cli.demo import connect_sdk
from launch.cluster import LOG_BACKUPS, pump_output
from launch.redis_server import free_port
from tests import sequences
from tests.factories import tweezer_up
from tests.helpers import wait_for


@pytest.mark.slow
def test_tweezer_up_demo_and_ctrl_c(tmp_path):
    port = free_port()
    data_dir = tmp_path / "data"
    up = tweezer_up(
        port,
        data_dir,
        "--open-batch-timeout",
        "30",
        "--policy",
        "shortest-first",
        "--fair-share-half-life",
        "3600",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        info_path = data_dir / "cluster.json"
        # A script that waits for the file connects the instant it appears: the API answers
        # and the cluster is ready, first time.
        wait_for(lambda: info_path.exists(), timeout_s=60, interval_s=0.005)
        info = json.loads(info_path.read_text())
        assert requests.get(info["api_url"] + "/healthz", timeout=5).status_code == 200
        ready = requests.get(info["api_url"] + "/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json()["data"]["qpus"] == {"EMU_FREE-0": True, "FRESNEL-0": True}
        assert set(info) >= {
            "core_url",
            "account_url",
            "token",
            "project_id",
            "token_url",
            "admin_username",
            "admin_password",
        }
        assert info["policy"] == "shortest-first"  # what every child runs under
        # By default an emulator QPU's pool has a process per core; the bridge's one.
        pools = {}
        for child in psutil.Process(up.pid).children():
            argv = child.cmdline()
            if "worker" in argv:
                pools[argv[argv.index("--qpu") + 1]] = len(child.children())
        assert pools == {"EMU_FREE-0": len(os.sched_getaffinity(0)), "FRESNEL-0": 1}
        wait_for(lambda: _healthy(port), timeout_s=60)
        login = requests.post(
            info["token_url"],
            timeout=30,
            data={
                "grant_type": "password",
                "username": info["admin_username"],
                "password": info["admin_password"],
            },
        )
        assert login.status_code == 200 and login.json()["expires_in"] > 60
        # qrmi's on-premises URL of a device type: cluster.json's, then the type.
        accessible = requests.get(info["pasqal_local_url"] + "/FRESNEL/accessible", timeout=5)
        assert accessible.json() == {"is_accessible": True, "message": "FRESNEL is UP"}

        # From another directory, the cluster found through TWEEZER_DATA_DIR.
        demo = subprocess.run(
            [sys.executable, "-m", "cli.main", "demo"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={**os.environ, "TWEEZER_DATA_DIR": str(data_dir), "PYTHONPATH": os.getcwd()},
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert ": DONE" in demo.stdout
        assert demo.stdout.count("status: DONE, result: {") == 2

        devices = subprocess.run(
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
        assert devices.returncode == 0, devices.stderr
        assert [line.split()[:2] for line in devices.stdout.splitlines()] == [
            ["EMU_FREE", "UP"],
            ["FRESNEL", "UP"],
        ]
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert "Tweezer is up" in output and "FRESNEL-0" in output
    # The banner was the last thing printed at start-up: what the children said is in their
    # log files, not here (Celery's banner, gunicorn's request lines).
    started = output[: output.index("Ctrl-C stops the cluster.")]
    assert started.lstrip().startswith("Tweezer is up"), started
    logs = {p.name: p.read_text() for p in (data_dir / "logs").glob("*.log")}
    assert set(logs) == {
        "api.log",
        "scheduler.log",
        "worker-EMU_FREE-0.log",
        "worker-FRESNEL-0.log",
    }
    assert "[queues]" not in output and "[queues]" in logs["worker-EMU_FREE-0.log"]
    assert "GET /healthz" not in output and "GET /healthz" in logs["api.log"]
    assert (data_dir / "redis" / "appendonlydir").is_dir()  # AOF on, in the data dir


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.slow
def test_tweezer_up_restarts_every_child_killed_mid_batch(tmp_path):
    port = free_port()
    data_dir = tmp_path / "data"
    # The lost job is run again once its heartbeats stop for the TTL: 3 s, not the default 15.
    env = {**os.environ, "TWEEZER_JOB_HEARTBEAT_TTL_S": "3"}
    terminal = tmp_path / "terminal.txt"
    with terminal.open("w") as out:
        up = tweezer_up(
            port,
            data_dir,
            "--qpus",
            "EMU_FREE=1",
            "--verbose",
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        info_path = data_dir / "cluster.json"  # there once the cluster serves
        info = json.loads(wait_for(lambda: info_path.exists() and info_path.read_text(), 60))
        sdk = connect_sdk(info)
        batch = sdk.create_batch(
            sequences.slow(), [{"runs": 10}, {"runs": 10}], device_type="EMU_FREE"
        )
        wait_for(
            lambda: sdk.get_job_status(batch.ordered_jobs[0].id).value == "RUNNING", timeout_s=60
        )
        children = psutil.Process(up.pid).children()
        victims = [c for c in children if "redis-server" not in " ".join(c.cmdline())]
        assert len(victims) == 3  # the API, the scheduler, the worker
        for child in victims:
            for process in [*child.children(recursive=True), child]:
                process.kill()
        # All come back (with backoff) and the batch in flight still completes.
        wait_for(lambda: _healthy(port), timeout_s=60)
        done = wait_for(
            lambda: (b := sdk.get_batch(batch.id)).status == "DONE" and b, timeout_s=120
        )
        assert [j.status for j in done.ordered_jobs] == ["DONE", "DONE"]
        restarted = {c.pid for c in psutil.Process(up.pid).children()}
        assert not restarted & {v.pid for v in victims}
        # --verbose: what every child says shows in the terminal too, named, and the restarts.
        shown = terminal.read_text()
        assert "[worker EMU_FREE-0]" in shown and "[api]" in shown and "[scheduler]" in shown
        assert "exited" in shown and "restarting" in shown
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)


def test_tweezer_up_refuses_a_policy_it_cannot_load(tmp_path):
    """Before any child starts: the message names the policy and what is allowed."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "up",
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            str(free_port()),
            "--policy",
            "round-robin",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown policy 'round-robin'" in done.stderr and "fair-share" in done.stderr


@pytest.mark.parametrize("command", [["demo"], ["queue"], ["device", "list"], ["status"]])
def test_commands_without_a_cluster_say_how_to_find_one(tmp_path, command):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWEEZER_")}
    env["PYTHONPATH"] = os.getcwd()
    found = subprocess.run(
        [sys.executable, "-m", "cli.main", *command],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert found.returncode == 2, found.stderr
    assert "Traceback" not in found.stderr
    assert f"no cluster in {tmp_path / '.tweezer'}" in found.stderr
    assert "--data-dir" in found.stderr and "TWEEZER_DATA_DIR" in found.stderr
    elsewhere = subprocess.run(
        [sys.executable, "-m", "cli.main", *command],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**env, "TWEEZER_DATA_DIR": str(tmp_path / "nowhere")},
    )
    assert elsewhere.returncode == 2 and "(from TWEEZER_DATA_DIR)" in elsewhere.stderr


def test_demo_against_a_stopped_cluster_says_so(tmp_path):
    port = free_port()
    (tmp_path / "cluster.json").write_text(
        json.dumps(
            {
                "api_url": f"http://127.0.0.1:{port}",
                "core_url": f"http://127.0.0.1:{port}/core-fast",
            }
        )
    )
    demo = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert demo.returncode == 2 and "Traceback" not in demo.stderr
    assert f"API at http://127.0.0.1:{port} does not answer" in demo.stderr


def test_a_childs_log_is_rotated_and_echoed_only_when_verbose(tmp_path, capfd):
    read, write = os.pipe()
    with os.fdopen(write, "wb") as child:
        child.writelines(f"line {i} of a chatty child\n".encode() for i in range(400))
    with os.fdopen(read, "rb") as stream:
        pump_output(stream, tmp_path, "worker EMU_FREE-0", echo=False, max_bytes=2000)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [
        "worker-EMU_FREE-0.log",
        *(f"worker-EMU_FREE-0.log.{i}" for i in range(1, LOG_BACKUPS + 1)),
    ]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    assert (tmp_path / "worker-EMU_FREE-0.log").read_text().endswith("line 399 of a chatty child\n")
    assert capfd.readouterr().err == ""

    read, write = os.pipe()
    with os.fdopen(write, "wb") as child:
        child.write(b"celery is ready\n")
    with os.fdopen(read, "rb") as stream:
        pump_output(stream, tmp_path / "v", "scheduler", echo=True)
    assert capfd.readouterr().err == "[scheduler] celery is ready\n"


def _cluster_processes(up: subprocess.Popen) -> list[psutil.Process]:
    """`tweezer up` and everything it started (redis-server, the API and its workers, the
    scheduler, the worker pools and their processes)."""
    root = psutil.Process(up.pid)
    return [root, *root.children(recursive=True)]


@pytest.mark.slow
def test_a_killed_tweezer_up_takes_its_whole_cluster_with_it_and_frees_its_data_dir(tmp_path):
    port, data_dir = free_port(), tmp_path / "data"
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    up = tweezer_up(port, data_dir, **quiet)
    try:
        wait_for(lambda: (data_dir / "cluster.json").exists(), timeout_s=60)
        processes = _cluster_processes(up)
        commands = " ".join(" ".join(p.cmdline()) for p in processes)
        assert "redis-server" in commands and "worker" in commands and "api" in commands

        # While it runs, a second cluster on the data dir is refused, naming who holds it; so
        # is one on its port (it would crash-loop there, and its readiness reach the first).
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli.main",
                "up",
                "--data-dir",
                str(data_dir),
                "--port",
                str(free_port()),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2, second.stderr
        assert "is in use" in second.stderr and f"pid {up.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        same_port = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli.main",
                "up",
                "--data-dir",
                str(tmp_path / "other"),
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert same_port.returncode == 2 and f"127.0.0.1:{port}" in same_port.stderr
        assert json.loads((data_dir / "cluster.json").read_text())["api_url"].endswith(str(port))

        # SIGKILL, as the OOM killer sends it: nothing of the cluster survives.
        up.kill()
        up.wait()
        wait_for(
            lambda: not any(p.is_running() and p.status() != "zombie" for p in processes),
            timeout_s=30,
        )
    finally:
        if up.poll() is None:
            up.kill()
    # The data dir is free again; the next `tweezer up` on it serves, with its own children.
    info_path = data_dir / "cluster.json"
    left = info_path.stat().st_ino  # the killed run's: the new one replaces it once it serves
    again = tweezer_up(port, data_dir, **quiet)
    try:
        wait_for(lambda: info_path.exists() and info_path.stat().st_ino != left, timeout_s=60)
        assert _healthy(port)
        assert again.poll() is None
    finally:
        again.send_signal(signal.SIGINT)
        assert again.wait(60) == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--limit", "0"], "0 is not between 1 and 10000"),
        (["--limit", "100001"], "100001 is not between 1 and 10000"),
        (["--offset", "-1"], "-1 is not between 0 and 1000000000"),
        (["--offset", "1e9"], "'1e9' is not an integer"),
    ],
)
def test_a_queue_page_out_of_bounds_is_refused_before_any_cluster_is_read(tmp_path, flags, message):
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "queue", *flags, "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr and "no cluster" not in done.stderr
