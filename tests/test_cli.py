"""The README's way: `tweezer up` in the foreground, `tweezer demo` against it, Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import requests

from cli.redis_server import free_port
from tests.helpers import wait_for


@pytest.mark.slow
def test_tweezer_up_demo_and_ctrl_c(tmp_path):
    port = free_port()
    data_dir = tmp_path / "data"
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "up",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--open-batch-timeout",
            "30",
            "--bridge-speedup",
            "100",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        info_path = data_dir / "cluster.json"
        wait_for(lambda: info_path.exists(), timeout_s=60)
        info = json.loads(info_path.read_text())
        assert set(info) >= {"core_url", "account_url", "token", "project_id"}
        wait_for(lambda: _healthy(port), timeout_s=60)

        demo = subprocess.run(
            [sys.executable, "-m", "cli.main", "demo", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert ": DONE" in demo.stdout
        assert demo.stdout.count("status: DONE, result: {") == 2

        devices = subprocess.run(
            [sys.executable, "-m", "cli.main", "device", "list", "--data-dir", str(data_dir)],
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
    assert (data_dir / "redis" / "appendonlydir").is_dir()  # AOF on, in the data dir


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
