"""`GET /batches` with a filter and a page of 100 against 1,000 and against 100,000 matching
batches (issue #14, goal 3: p99 at most 20 ms at 100,000; the cost grows with the page, not with
the matches, and `total` stays exact).

The batches are written straight into the store (a FRESNEL type no QPU serves, so they stay
PENDING), on a Redis without fsync: a list writes nothing to the AOF, so its durability setting
does not change what is timed, and filling it stays quick.
"""

from __future__ import annotations

import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import redis
import requests

from bench.clusters import bench_cluster
from core.db import Db
from core.records import Batch
from core.status import BatchStatus
from core.store import Store

SIZES = (1_000, 100_000)
REQUESTS = 200
GOAL_P99_MS = 20.0


def measure() -> dict[str, float]:
    figures: dict[str, float] = {}
    with bench_cluster(appendfsync="no", qpus={"EMU_FREE": 1}, rate_limit_per_s=0) as bench:
        client = redis.Redis.from_url(bench.redis_server.url, decode_responses=True)
        store = Store(Db.of(client, bench.settings.namespace))
        info = bench.info
        stored = 0
        for size in SIZES:
            _fill(store, info["project_id"], info["user_id"], size - stored)
            stored = size
            p50, p99, total = _time_lists(info)
            assert total == size, (total, size)  # exact
            figures[f"list p50 ms, {size} matching"] = p50
            figures[f"list p99 ms, {size} matching"] = p99
    return figures


def _fill(store: Store, project_id: str, user_id: str, count: int) -> None:
    def one(_: int) -> None:
        batch = Batch(
            id=str(uuid.uuid4()),
            project_id=project_id,
            user_id=user_id,
            device_type="FRESNEL",
            status=BatchStatus.PENDING,
            open=True,
            queue_priority="MEDIUM",
            created_us=0,
            updated_us=0,
        )
        store.create_batch(batch, [], time.time_ns() // 1000)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))


def _time_lists(info: dict[str, str]) -> tuple[float, float, int]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {info['token']}"
    url = info["core_url"] + "/api/v1/batches"
    params = {"status": "PENDING", "limit": 100}
    session.get(url, params=params, timeout=30).raise_for_status()  # warm
    times, total = [], 0
    for _ in range(REQUESTS):
        start = time.perf_counter()
        answer = session.get(url, params=params, timeout=30)
        times.append(1000 * (time.perf_counter() - start))
        answer.raise_for_status()
        total = answer.json()["pagination"]["total"]
    times.sort()
    return statistics.median(times), times[int(0.99 * len(times)) - 1], total


def show(figures: dict[str, float]) -> None:
    small, big = SIZES
    print(
        f"\n{'GET /batches?status=PENDING&limit=100':<44}{'p50 ms':>10}{'p99 ms':>10}{'goal':>10}"
    )
    for size in SIZES:
        goal = f"<= {GOAL_P99_MS:g}" if size == big else ""
        print(
            f"{f'{size:,} matching batches':<44}{figures[f'list p50 ms, {size} matching']:>10.1f}"
            f"{figures[f'list p99 ms, {size} matching']:>10.1f}{goal:>10}"
        )
    ratio = figures[f"list p99 ms, {big} matching"] / figures[f"list p99 ms, {small} matching"]
    print(f"p99 at {big:,} / at {small:,}: {ratio:.2f} (the page is the same: ~1 is the goal)")


if __name__ == "__main__":
    show(measure())
