"""Forecasts, made away from the scheduling loop: when each waiting batch is expected to start
(scheduling/forecast.py runs the live policy forward in the simulator), written for the API,
`tweezer queue` and `tweezer status` with the time they were made (core/forecasts.py).

A forecast re-simulates every waiting batch: at tens of thousands of them it takes seconds of
CPU. Inside the loop that stalled lease renewals, grants and dispatch behind it (leases were
lost); in a thread it would still take the GIL from the loop for whole seconds. So each
scheduler starts a process of its own for them (`start`), and the loop never waits for one.

A round is incremental where it can be: the waiting batches it read before are kept (a closed
batch does not change while it waits: scheduler/reader.py), and only the first positions are
simulated choice by choice (scheduling/forecast.py). Rounds are paced to use at most a
quarter of a core: after a round of t seconds of CPU, the next starts no sooner than 3t later.

One forecaster of a cluster works at a time: `forecast_turn` names the one whose turn it is
(SET NX PX, renewed by its holder each round); another takes over once it expires (its
scheduler stopped). A forecast outlives three rounds, so one slow round leaves the last one up.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time

import redis

from core.db import Db, open_db
from core.device_types import device_type_of_qpu
from core.forecasts import ForecastBook
from core.liveness import alive_since
from core.qpu import QpuControl
from core.settings import Settings
from core.timefmt import now_us, to_ms
from scheduler.reader import SnapshotCache, SnapshotReader
from scheduling.forecast import forecast
from scheduling.policies import Policy, load_policy

log = logging.getLogger("tweezer.forecaster")

#: The CPU a forecaster may use on average: a round of t CPU seconds is followed by a pause of
#: at least t x (1 / CPU_SHARE - 1).
CPU_SHARE = 0.25


def pause_after(round_cpu_s: float, interval_s: float) -> float:
    """Seconds to wait after a round that took `round_cpu_s` of CPU: the interval, or longer
    when rounds are long, so that forecasting uses at most CPU_SHARE of a core."""
    return max(interval_s, round_cpu_s * (1 / CPU_SHARE - 1))


class Forecaster:
    def __init__(self, settings: Settings, db: Db, policy: Policy) -> None:
        self.settings = settings
        self.db = db
        self.policy = policy
        self.control = QpuControl(db)
        self.snapshots = SnapshotReader(db, settings.fair_share_half_life_s)
        self.book = ForecastBook(db.client, db.namespace)
        self.id = secrets.token_hex(8)
        #: Per device type, what earlier rounds read (the closed waiting batches).
        self.cache: dict[str, SnapshotCache] = {}
        #: How long the last round and the pause after it took (s): a forecast and the turn
        #: outlive three of them.
        self.cycle_s = settings.forecast_interval_s

    def run(self, stop: threading.Event) -> None:
        """A round at once, then every `forecast_interval_s` until `stop`; Redis outages are
        waited out."""
        while not stop.is_set():
            cpu, wall = time.process_time(), time.monotonic()
            try:
                self.run_once(now_us())
            except redis.exceptions.ConnectionError as exc:
                log.warning("redis unavailable (%s); retrying", exc)
            except Exception:
                log.exception("forecast failed; the next round tries again")
            pause = pause_after(time.process_time() - cpu, self.settings.forecast_interval_s)
            self.cycle_s = time.monotonic() - wall + pause
            stop.wait(pause)

    def run_once(self, now: int) -> bool:
        """Forecasts every device type served, if it is this forecaster's turn."""
        if not self.take_turn(self.cycle_s):
            return False
        s = self.settings
        started = time.monotonic()
        for device_type, qpus in sorted(self.served(now).items()):
            cache = self.cache.setdefault(device_type, SnapshotCache())
            snapshot = self.snapshots.read(device_type, qpus, None, now, cache)
            expected = forecast(self.policy, snapshot, len(qpus), s.fair_share_half_life_s)
            # This round's own length says how long until the next one ends.
            took = time.monotonic() - started
            cycle_s = max(self.cycle_s, took + pause_after(took, s.forecast_interval_s))
            self.book.write(device_type, expected, ttl_s=3 * cycle_s, at_us=now, writer=self.id)
            self.take_turn(cycle_s)  # renewed for as long
        return True

    def take_turn(self, cycle_s: float) -> bool:
        """True when this forecaster holds the cluster's turn (taking it if it is free), for
        three rounds of `cycle_s`."""
        key = self.db.keys.forecast_turn()
        ttl_ms = to_ms(3 * cycle_s)
        client = self.db.client
        if client.set(key, self.id, nx=True, px=ttl_ms):
            return True
        # Ours already: renewed. (Two commands: a turn that expires between them is simply
        # taken by whoever asks next; two forecasts of one round write the same thing.)
        if client.get(key) == self.id:
            client.pexpire(key, ttl_ms)
            return True
        return False

    def served(self, now: int) -> dict[str, list[str]]:
        """The QPUs of each device type served: configured, or announced by their workers."""
        by_type: dict[str, list[str]] = {}
        for qpu in self.control.served(self.settings.qpus, alive_since(now)):
            by_type.setdefault(device_type_of_qpu(qpu), []).append(qpu)
        return by_type


def start(settings: Settings) -> subprocess.Popen[bytes]:
    """The forecaster's process, started: `python -P -m scheduler.forecaster`, with the
    scheduler's settings in its environment (a fresh interpreter that imports only what
    forecasting needs, nothing of the scheduler's threads or locks)."""
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "scheduler.forecaster", str(os.getpid())],
        env={**os.environ, **settings.to_env()},
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stops the forecaster (SIGTERM: it ends its round's wait at once; SIGKILL after 10 s)."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main(parent: int) -> None:
    """The forecaster process: rounds until its scheduler stops it or dies."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    # Ctrl-C reaches the whole process group: the scheduler stops us, not the signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = Settings.from_env()

    def orphaned() -> None:
        # A SIGKILLed scheduler leaves us to init: stop within a second.
        while not stop.wait(1.0):
            if os.getppid() != parent:
                stop.set()

    threading.Thread(target=orphaned, name="tweezer-orphaned", daemon=True).start()
    Forecaster(settings, open_db(settings), load_policy(settings.policy)).run(stop)


if __name__ == "__main__":
    main(int(sys.argv[1]))
