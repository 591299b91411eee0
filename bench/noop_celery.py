"""Bare Celery, the anchor of the platform ceiling (bench/ceiling.py): a no-op task that only
counts itself, on a worker like Tweezer's (one process, acks_late, the same Redis durability)."""

from __future__ import annotations

import os

import redis
from celery import Celery

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")
COUNTER = "bench:noop:done"

app = Celery("bench-noop", broker=BROKER)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)
_client = redis.Redis.from_url(BROKER)


@app.task(name="noop")
def noop() -> None:
    _client.incr(COUNTER)
