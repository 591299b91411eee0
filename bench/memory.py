"""Redis memory per stored job (issue #14, goal 6: at most 2 KB beyond its result).

Five batches of 100 jobs run to DONE on a synthetic device (no emulation: only the records are
measured); then what every key takes (MEMORY USAGE) grown since before the first submission,
less what their results take, divided by the jobs: the job's record, its indexes, its history,
its share of its batch's record and sequence, and the cluster's counters.
"""

from __future__ import annotations

from typing import Any

import redis

from bench.clusters import bench_cluster, run_batch
from bench.emulation import atoms_sequence
from core.hints import QPU_SECONDS_VARIABLE
from core.keys import Keys

BATCHES = 5
JOBS = 100
GOAL_BYTES = 2048


def measure() -> dict[str, float]:
    with bench_cluster(qpus={"EMU_FREE": 1}, synthetic_devices=True, rate_limit_per_s=0) as bench:
        client = redis.Redis.from_url(bench.redis_server.url, decode_responses=True)
        before = _stored(client)
        batch_ids = [_run_batch(bench.info) for _ in range(BATCHES)]
        after = _stored(client)
        keys = Keys(bench.settings.namespace)
        job_ids = [j for b in batch_ids for j in client.zrange(keys.batch_jobs(b), 0, -1)]
        results = sum(client.memory_usage(keys.job_result(j)) or 0 for j in job_ids)
    jobs = BATCHES * JOBS
    return {
        "Redis bytes per stored job beyond its result": (after - before - results) / jobs,
        "Redis bytes per job result": results / jobs,
    }


def _stored(client: redis.Redis) -> int:
    """Bytes the keys take (MEMORY USAGE of each, every element counted): the data, not the
    server's buffers and caches, which `used_memory` adds and which do not grow with jobs."""
    return sum(client.memory_usage(key, samples=0) or 0 for key in client.scan_iter(count=1000))


def _run_batch(info: dict[str, Any]) -> str:
    jobs = [{"runs": 100, "variables": {QPU_SECONDS_VARIABLE: 0}}] * JOBS
    batch_id: str = run_batch(info, atoms_sequence(4), jobs)["id"]
    return batch_id


def show(figures: dict[str, float]) -> None:
    per_job = figures["Redis bytes per stored job beyond its result"]
    print(f"\n{'figure':<44}{'Tweezer':>10}{'goal':>10}")
    print(
        f"{'Redis bytes per stored job beyond its result':<44}{per_job:>10.0f}"
        f"{'<= ' + str(GOAL_BYTES):>10}"
    )
    print(
        f"{'Redis bytes per job result (100 shots)':<44}"
        f"{figures['Redis bytes per job result']:>10.0f}"
    )


if __name__ == "__main__":
    show(measure())
