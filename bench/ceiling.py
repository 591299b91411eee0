"""The platform's ceiling (README, "Load tests"): jobs/s and batches/s through the whole platform
(API, store, scheduler, worker) on a synthetic device whose jobs take no time
(`tweezer up --synthetic-devices`), beside bare Celery's no-op tasks/s on the same machine and
the same Redis durability (appendfsync always), in the same run."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from bench.spread import _finish
from core.hints import QPU_SECONDS_VARIABLE
from core.settings import Settings
from launch.cluster import Cluster, bootstrap, secret
from launch.redis_server import RedisServer, free_port
from tests import sequences

JOBS = 300
BATCHES = 100
TASKS = 1000


def measure(quick: bool = False) -> dict[str, float]:
    """`quick`: jobs/s only (no batches/s), and a third of the anchor's tasks."""
    tasks = TASKS // 3 if quick else TASKS
    return {**_platform(batches=not quick), "bare Celery no-op tasks/s": _bare_celery(tasks)}


def _platform(batches: bool = True) -> dict[str, float]:
    import requests

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = RedisServer(root / "redis", password=secret(root, "redis")).start()
        settings = Settings(
            redis_url=server.url,
            qpus={"EMU_FREE": 1},
            synthetic_devices=True,
            rate_limit_per_s=0,
            results_secret=secret(root, "results"),
            auth_secret=secret(root, "auth"),
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        info = bootstrap(settings, root, base, base + "/core-fast", base + "/account")
        with Cluster(settings, root, "127.0.0.1", port, server, log_dir=root / "logs"):
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {info['token']}"
            core = info["core_url"]
            job = {"runs": 1, "variables": {QPU_SECONDS_VARIABLE: 0}}
            body = {
                "sequence_builder": sequences.fixed(),
                "device_type": "EMU_FREE",
                "project_id": info["project_id"],
                "open": False,
            }
            _finish(session, core, {**body, "jobs": [job] * 5})  # warm every process up
            started = time.perf_counter()
            _finish(session, core, {**body, "jobs": [job] * JOBS})
            jobs_s = JOBS / (time.perf_counter() - started)
            if not batches:
                return {"synthetic device jobs/s": jobs_s}
            started = time.perf_counter()
            for _ in range(BATCHES - 1):
                session.post(core + "/api/v1/batches", json={**body, "jobs": [job]}, timeout=60)
            _finish(session, core, {**body, "jobs": [job]})  # the QPU runs them in order
            batches_s = BATCHES / (time.perf_counter() - started)
    return {"synthetic device jobs/s": jobs_s, "synthetic device batches/s": batches_s}


def _bare_celery(tasks: int = TASKS) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis", password=secret(Path(tmp), "redis")).start()
        env = {**os.environ, "BENCH_BROKER_URL": server.url}
        argv = [
            *(sys.executable, "-m", "celery", "-A", "bench.noop_celery", "worker"),
            *("-c", "1", "-P", "prefork", "--without-mingle", "--without-gossip"),
            *("--loglevel", "WARNING"),
        ]
        worker = subprocess.Popen(
            argv,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            os.environ["BENCH_BROKER_URL"] = server.url
            from bench import noop_celery

            noop_celery.app.conf.broker_url = server.url
            client = redis.Redis.from_url(server.url)
            noop_celery._client = client
            noop_celery.noop.delay()  # warm up: the worker is up once one task ran
            _wait(client, 1)
            started = time.perf_counter()
            for _ in range(tasks):
                noop_celery.noop.delay()
            _wait(client, tasks + 1)
            return tasks / (time.perf_counter() - started)
        finally:
            worker.terminate()
            worker.wait(30)
            server.stop()


def _wait(client: redis.Redis, count: int) -> None:
    deadline = time.monotonic() + 300
    while int(client.get("bench:noop:done") or 0) < count:
        if time.monotonic() > deadline:
            raise TimeoutError("the Celery worker did not run the tasks")
        time.sleep(0.01)


def show(figures: dict[str, float]) -> None:
    anchor = figures["bare Celery no-op tasks/s"]
    print(f"\n{'figure':<44}{'Tweezer':>10}{'anchor':>10}{'ratio':>8}")
    print("(anchor: bare Celery no-op tasks/s, -c 1, acks_late, the same Redis durability)")
    for name in ("synthetic device jobs/s", "synthetic device batches/s"):
        if name not in figures:
            continue
        value = figures[name]
        print(f"{name:<44}{value:>10.1f}{anchor:>10.1f}{value / anchor:>8.2f}")


if __name__ == "__main__":
    show(measure())
