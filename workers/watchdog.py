"""A worker that stopped consuming its queue exits, so that its supervisor starts it afresh.

Celery's Redis consumer can stay silent forever after a broker connection reset (celery#10205,
#10302, still seen with Celery and kombu 5.7): messages wait in the QPU's queue while the worker
runs nothing. Nothing is lost (the message is still queued, and the reconciler dispatches the
job again), but nothing runs either. The watchdog, a thread of the worker's main process, sees
that state from outside Celery's event loop and ends the process; `tweezer up` and the systemd
units restart it, and the new consumer takes the waiting messages.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import redis

log = logging.getLogger("tweezer.worker")

#: How the process ends when stalled (EX_TEMPFAIL: restart me).
STALLED_EXIT_CODE = 75


def stalled_since(waiting: int, busy: int, since: float | None, now: float) -> float | None:
    """When the worker started to look stalled (messages waiting, nothing running), or None
    if it does not now."""
    if waiting == 0 or busy > 0:
        return None
    return now if since is None else since


def watch(
    client: redis.Redis,
    queue_key: str,
    busy: Callable[[], int],
    stall_s: float,
    stop: threading.Event,
    on_stall: Callable[[], None] = lambda: os._exit(STALLED_EXIT_CODE),
) -> None:
    """Checks `stall_s / 5` apart until `stop`; calls `on_stall` once messages have waited in
    `queue_key` for `stall_s` while `busy()` said the worker ran nothing."""
    since: float | None = None
    while not stop.wait(stall_s / 5):
        try:
            waiting = int(client.llen(queue_key))
        except redis.exceptions.RedisError:
            since = None  # Redis itself is away: Celery's own reconnection is in charge
            continue
        now = time.monotonic()
        since = stalled_since(waiting, busy(), since, now)
        if since is not None and now - since >= stall_s:
            log.error(
                "%d message(s) waited %.0f s in %s while this worker ran nothing: its consumer "
                "is stuck; exiting so that its supervisor restarts it",
                waiting,
                now - since,
                queue_key,
            )
            on_stall()
            return
