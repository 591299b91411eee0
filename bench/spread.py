"""The platform's own cost, on a device that costs nothing (workers/drivers/instant.py), with its
worker on this host (the anchor) and on another network host (a namespace behind a bridge,
as tests/test_multihost.py builds them); and what each job costs Redis itself (CPU and
commands), which says how many QPUs and workers one Redis serves."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import requests

from core.devices import device_registry
from core.settings import Settings
from launch.cluster import Cluster, bootstrap, secret
from launch.netns import ADDRESS, Hosts, can_make_namespaces
from launch.redis_server import RedisServer, free_port
from tests import sequences

#: Jobs of the one closed batch each figure times, submission to DONE.
JOBS = 300
#: The commands that run a script.
SCRIPT_CALLS = ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro")


def measure(rounds: int = 3, remote: bool = True) -> dict[str, float]:
    """jobs/s on loopback and, where namespaces can be made (and `remote`), through a worker on
    another host, alternating `rounds` times (medians: single runs drift by a third on this
    machine); Redis CPU ms and commands per job (loopback runs)."""
    reason = can_make_namespaces() if remote else "not asked for"
    if reason:
        print(f"(remote worker figure skipped: {reason})", file=sys.stderr)
    runs: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, value in _run(remote=False).items():
            runs.setdefault(name, []).append(value)
        if not reason:
            remote = _run(remote=True)["zero-cost jobs/s, worker on this host"]
            runs.setdefault("zero-cost jobs/s, worker on another host", []).append(remote)
    return {name: statistics.median(values) for name, values in runs.items()}


def _run(remote: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hosts = Hosts(str(os.getpid() % 10000)).create() if remote else None
        try:
            # Redis answers on loopback and, for the remote worker, on this host's bridge address.
            bind = ("--bind", "127.0.0.1", ADDRESS["client"]) if remote else ()
            server = RedisServer(root / "redis", password=secret(root, "redis"), extra_args=bind)
            server.start()
            settings = Settings(
                redis_url=server.url,
                qpus={"FRESNEL": 1},
                bridge_driver="workers.drivers.instant:InstantQpu",
                # What the cost model is told of this device: its shots take no time, so
                # its jobs are dispatched in chunks as cheap jobs are (dispatch.lua).
                bridge_shot_rate_hz=1e6,
                bridge_register_load_s=0.0,
                results_secret=secret(root, "results"),
                auth_secret=secret(root, "auth"),
            )
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            info = bootstrap(settings, root, base, base + "/core-fast", base + "/account")
            cluster = Cluster(settings, root, "127.0.0.1", port, server, log_dir=root / "logs")
            worker = None
            if hosts is not None:  # its worker runs on host B instead, started first: the
                # cluster counts as up once every QPU's pool announced itself
                cluster.children = [c for c in cluster.children if c.name != "worker FRESNEL-0"]
                far = server.url.replace("127.0.0.1", ADDRESS["client"])
                env = {**os.environ, **settings.to_env(), "TWEEZER_REDIS_URL": far}
                argv = [sys.executable, "-m", "cli.main", "worker", "--qpu", "FRESNEL-0"]
                worker = hosts.run("b", argv, env, root / "worker-b.log")
            try:
                with cluster:
                    return _time_jobs(settings, info, server)
            finally:
                if worker is not None:
                    worker.terminate()
                    worker.wait(30)
        finally:
            if hosts is not None:
                hosts.destroy()


def _time_jobs(settings: Settings, info: dict[str, Any], server: RedisServer) -> dict[str, float]:
    device = device_registry(settings)["FRESNEL"].pulser_device
    body = {
        "sequence_builder": sequences.fresnel(device).to_abstract_repr(),
        "jobs": [{"runs": 1, "variables": {"omega_max": 6}}] * JOBS,
        "device_type": "FRESNEL",
        "project_id": info["project_id"],
        "open": False,
    }
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {info['token']}"
    core = info["core_url"]
    client = redis.Redis.from_url(server.url)
    # A first batch warms every process up (imports, the worker's pool) before the clock runs.
    _finish(session, core, {**body, "jobs": body["jobs"][:5]})
    cpu, calls, scripts = _redis_cost(client)
    started = time.perf_counter()
    _finish(session, core, body)
    elapsed = time.perf_counter() - started
    cpu_after, calls_after, scripts_after = _redis_cost(client)
    return {
        "zero-cost jobs/s, worker on this host": JOBS / elapsed,
        "Redis CPU ms per job": 1000 * (cpu_after - cpu) / JOBS,
        "Redis commands per job": (calls_after - calls) / JOBS,
        "Redis scripts per job": (scripts_after - scripts) / JOBS,
    }


def _finish(session: requests.Session, core: str, body: dict[str, Any]) -> None:
    response = session.post(core + "/api/v1/batches", json=body, timeout=120)
    response.raise_for_status()
    batch_id = response.json()["data"]["id"]
    deadline = time.monotonic() + 600
    while session.get(f"{core}/api/v1/batches/{batch_id}/status", timeout=30).json()["data"][
        "status"
    ] not in ("DONE", "ERROR", "CANCELED"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch_id} did not finish")
        time.sleep(0.05)


def _redis_cost(client: redis.Redis) -> tuple[float, int, int]:
    """Redis's CPU seconds so far (user + system), commands run (all of them, those the scripts
    ran included) and scripts run."""
    cpu = client.info("cpu")
    stats = client.info("commandstats")
    calls = sum(int(entry["calls"]) for entry in stats.values())
    scripts = sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in SCRIPT_CALLS)
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), calls, scripts
