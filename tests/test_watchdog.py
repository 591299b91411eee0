"""The worker's watchdog (workers/watchdog.py): the rule, then the thread against real Redis."""

from __future__ import annotations

import threading

from workers.watchdog import stalled_since, watch


def test_stalled_only_while_messages_wait_and_nothing_runs():
    assert stalled_since(waiting=0, busy=0, since=None, now=10.0) is None  # idle, nothing waits
    assert stalled_since(waiting=3, busy=1, since=5.0, now=10.0) is None  # busy: they wait fairly
    assert stalled_since(waiting=3, busy=0, since=None, now=10.0) == 10.0  # starts to look stuck
    assert stalled_since(waiting=3, busy=0, since=5.0, now=10.0) == 5.0  # and still does


def test_a_queue_left_waiting_ends_the_worker_and_a_busy_one_does_not(redis_only):
    redis_only.rpush("q", "message")
    stalled = threading.Event()
    stop = threading.Event()
    busy_watch = threading.Thread(
        target=watch, args=(redis_only, "q", lambda: 1, 0.3, stop, stalled.set)
    )
    busy_watch.start()
    idle_watch = threading.Thread(
        target=watch, args=(redis_only, "q", lambda: 0, 0.3, stop, stalled.set)
    )
    idle_watch.start()
    assert stalled.wait(5)  # the idle one called on_stall...
    idle_watch.join(5)
    assert not idle_watch.is_alive()  # ...once, and stopped
    assert busy_watch.is_alive()  # the busy one goes on watching
    stop.set()
    busy_watch.join(5)
