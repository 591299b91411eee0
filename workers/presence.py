"""A worker tells the schedulers that its QPU is alive, every few seconds: how a QPU added on
another host (`tweezer worker --qpu EMU_FREE-1` there, with TWEEZER_QPUS naming it) is served
without restarting the API or the schedulers (scheduler/loop.py Scheduler.serving)."""

from __future__ import annotations

import contextlib
import threading

import redis

from core.liveness import worker_name
from core.qpu import PRESENCE_TTL_S, QpuControl
from core.timefmt import now_us


def announce_forever(control: QpuControl, qpu: str, stop: threading.Event) -> None:
    """Announces `qpu` and this worker now and every PRESENCE_TTL_S / 6 until `stop`; then
    says this worker left."""
    worker = worker_name(qpu)
    while True:
        # Redis away: Celery's reconnection is in charge; say it again next time.
        with contextlib.suppress(redis.exceptions.RedisError):
            control.announce(qpu, now_us(), worker)
        if stop.wait(PRESENCE_TTL_S / 6):
            break
    with contextlib.suppress(redis.exceptions.RedisError):
        control.depart(worker)
