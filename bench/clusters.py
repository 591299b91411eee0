"""A whole cluster for one figure of `make bench`, as `tweezer up` starts it: its own
redis-server with a password, the default account, the API, a scheduler and the QPUs' workers."""

from __future__ import annotations

import gzip
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from core.settings import Settings
from launch.cluster import Cluster, bootstrap, secret
from launch.redis_server import RedisServer, free_port


@dataclass
class BenchCluster:
    cluster: Cluster
    redis_server: RedisServer
    settings: Settings
    #: What cluster.json would say: URLs, the admin's token and project.
    info: dict[str, Any]


@contextmanager
def bench_cluster(appendfsync: str = "always", **overrides: Any) -> Iterator[BenchCluster]:
    """Runs a cluster with `tweezer up`'s settings but for `overrides`, until the block ends."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = RedisServer(
            root / "redis", password=secret(root, "redis"), appendfsync=appendfsync
        ).start()
        settings = Settings(
            redis_url=server.url,
            results_secret=secret(root, "results"),
            auth_secret=secret(root, "auth"),
            **overrides,
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        info = bootstrap(settings, root, base, base + "/core-fast", base + "/account")
        with Cluster(settings, root, "127.0.0.1", port, server, log_dir=root / "logs") as cluster:
            yield BenchCluster(cluster, server, settings, info)


def run_batch(
    info: dict[str, Any], text: str, jobs: list[dict[str, Any]], device_type: str = "EMU_FREE"
) -> dict[str, Any]:
    """Submits a closed batch as the SDK does (gzip) and waits for it to be DONE, polling
    slowly (a fast poll would take CPU from the jobs); returns the batch's JSON with
    `submitted_at` (Unix seconds, just before the request). A batch that ends otherwise is
    an error: its figure would mean nothing."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {info['token']}"
    payload = {
        "sequence_builder": text,
        "webhook": None,
        "open": False,
        "device_type": device_type,
        "project_id": info["project_id"],
        "jobs": jobs,
    }
    submitted_at = time.time()
    created = session.post(
        info["core_url"] + "/api/v1/batches",
        data=gzip.compress(json.dumps(payload).encode()),
        headers={"Content-Encoding": "gzip"},
        timeout=60,
    )
    created.raise_for_status()
    url = f"{info['core_url']}/api/v2/batches/{created.json()['data']['id']}"
    while (batch := session.get(url, timeout=30).json()["data"])["status"] != "DONE":
        if batch["status"] in ("ERROR", "CANCELED", "TIMED_OUT"):
            raise RuntimeError(f"{device_type} batch ended {batch['status']}: {batch}")
        time.sleep(0.25)
    return {**batch, "submitted_at": submitted_at}
