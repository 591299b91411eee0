"""Scale (issue #30): the scheduler and the API with 300, 1,000, 10,000 and 100,000 batches
waiting over 1,000 projects, with 1 and with 32 QPUs of a synthetic device (jobs of zero
seconds: what is measured is the platform), each figure beside the same figure at 1,000
waiting (the drain rate's goal is beside the rate at 300: bench/goals.py).

The cluster is `tweezer up`'s (its API, its workers, its Redis) but for its scheduler: the bench
stops that one and runs the same `Scheduler` class in its own thread, timing every pass. Its
QPUs are first held by open HIGH-priority batches, so the batches written in (straight into the
store, as bench/lists.py does: 100,000 submissions through the API would take minutes) wait.
At each size:

  plain pass      p50/p99 of 200 passes while every QPU is held (renewals, reconciling,
                  dispatch; nothing to grant), woken as the API and workers wake it
  forecast        one forecaster round from cold (every waiting batch read) and one warm
                  (only what changed read): wall and CPU seconds, and the share of a core the
                  forecaster's pacing leaves it (scheduler/forecaster.py)
  decision        a QPU freed (its open batch closed) -> the end of the pass that leased it
                  to the next batch, RUNNING (ms)
  drain           one-job batches finished per second once the QPUs are freed (DRAIN of
                  them), with the cores the cluster's processes used meanwhile, by kind (the
                  scheduler is this process): the median of DRAIN_ROUNDS, each from the size
                  (the decision latency likewise)
  API             GET /api/v1/batches?status=PENDING&limit=100 (the admin's project, one of
                  the 1,000), GET /api/v2/batches/{id} of waiting batches, and a page of
                  GET /admin/api/v1/queue (offset 5,000, limit 100): p99 ms
  Redis           bytes per waiting batch (used_memory growth / batches), beside the
                  sequence each stores

`python -m bench.scale` runs it alone; `make bench` runs it with the rest.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psutil
import redis
import requests

from bench.clusters import BenchCluster, bench_cluster
from cli.demo import guide_sequence
from core.db import Db
from core.keys import Keys
from core.records import Batch, Job
from core.status import BatchStatus, JobStatus
from core.store import Store
from scheduler.forecaster import Forecaster, pause_after
from scheduler.loop import Scheduler, make_producer
from scheduling.policies import load_policy

SIZES = (300, 1_000, 10_000, 100_000)
QPU_COUNTS = (1, 32)
PROJECTS = 1_000
PASSES = 200
DRAIN = 300
DRAIN_ROUNDS = 3
REQUESTS = 200


class TimedScheduler(Scheduler):
    """The live scheduler, each pass timed (s), and when it granted a QPU to a new batch:
    the bench reads both afterwards, never polling while the scheduler works (a polling
    thread of the same process would take the GIL from it)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.passes: list[float] = []
        #: perf_counter() at the start and end of each pass; at the end of each that leased a
        #: QPU to a new batch.
        self.spans: list[tuple[float, float]] = []
        self.grants: list[float] = []

    def run_once(self, now: int | None = None) -> None:
        start = time.perf_counter()
        before = {qpu: lease.batch_id for qpu, lease in self.leases.items()}
        super().run_once(now)
        end = time.perf_counter()
        self.passes.append(end - start)
        self.spans.append((start, end))
        if any(before.get(q) != lease.batch_id for q, lease in self.leases.items()):
            self.grants.append(end)


def measure(sizes: tuple[int, ...] = SIZES, qpu_counts: tuple[int, ...] = QPU_COUNTS) -> dict:
    figures: dict[str, float] = {}
    for qpus in qpu_counts:
        figures.update(_measure(qpus, sizes))
    return figures


def _measure(qpus: int, sizes: tuple[int, ...]) -> dict[str, float]:
    figures: dict[str, float] = {}
    with bench_cluster(
        appendfsync="no",
        qpus={"EMU_FREE": qpus},
        synthetic_devices=True,
        rate_limit_per_s=0,
        # The holders keep their QPUs, idle, while 100,000 batches are written behind them.
        open_batch_contended_idle_s=3600.0,
        open_batch_timeout_s=3600.0,
    ) as bench:
        scheduler = bench.cluster.child("scheduler").process
        assert scheduler is not None
        scheduler.terminate()  # it stops its forecaster too
        scheduler.wait(30)
        client = redis.Redis.from_url(bench.redis_server.url, decode_responses=True)
        db = Db.of(client, bench.settings.namespace)
        world = _World(Store(db), client, bench)
        timed = TimedScheduler(bench.settings, db, make_producer(bench.settings))
        with _running(timed):
            world.hold(qpus)
            for size in sizes:
                before = int(client.info("memory")["used_memory"])
                world.fill(size - world.waiting())
                grown = int(client.info("memory")["used_memory"]) - before
                tag = f"{size} waiting, {qpus} QPUs"
                figures[f"scale Redis bytes per waiting batch, {tag}"] = grown / max(1, size)
                figures.update(_passes(timed, world, tag))
                figures.update(_forecasts(bench.settings, db, world, tag))
                figures.update(_api(world, tag))
                # A drain takes a second or two: the median of a few, each from the size.
                rounds = []
                for _ in range(DRAIN_ROUNDS):
                    world.fill(size - world.waiting())
                    rounds.append(world.release_and_drain(timed, tag))
                    world.hold(qpus)
                figures.update({k: statistics.median(r[k] for r in rounds) for k in rounds[0]})
    figures["scale sequence bytes per batch"] = float(len(guide_sequence()))
    return figures


@contextmanager
def _running(scheduler: Scheduler) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


class _World:
    """The bench's side of the cluster: its store, the holders of the QPUs, the waiting."""

    def __init__(self, store: Store, client: redis.Redis, bench: BenchCluster) -> None:
        self.store, self.client, self.info = store, client, bench.info
        self.keys = Keys(bench.settings.namespace)
        self.cluster = bench.cluster
        self.redis_pid = int(client.info("server")["process_id"])
        self.sequence = guide_sequence()
        self.holders: list[str] = []
        #: Holders closed so far.
        self.released = 0
        self.filled: list[str] = []

    def batch(self, project: str, priority: str, open_: bool, created: int) -> tuple[Batch, list]:
        batch = Batch(
            id=str(uuid.uuid4()),
            project_id=project,
            user_id=self.info["user_id"],
            device_type="EMU_FREE",
            status=BatchStatus.PENDING,
            open=open_,
            queue_priority=priority,
            created_us=0,
            updated_us=0,
            sequence_builder=self.sequence,
        )
        jobs = [] if open_ else [self._job(batch)]
        self.store.create_batch(batch, jobs, created)
        return batch, jobs

    def _job(self, batch: Batch) -> Job:
        return Job(
            id=str(uuid.uuid4()),
            batch_id=batch.id,
            project_id=batch.project_id,
            user_id=batch.user_id,
            status=JobStatus.PENDING,
            runs=10,
            created_us=0,
            updated_us=0,
            variables={"omega_max": 6, "tweezer_qpu_s": 0},
            atoms=2,
            duration_ns=1000,
            qpu_s=0.01,
        )

    def hold(self, qpus: int) -> None:
        """Every QPU held by an open HIGH batch (they start before anything waiting)."""
        self.holders = [
            self.batch(f"holder-{i}", "HIGH", True, time.time_ns() // 1000)[0].id
            for i in range(qpus)
        ]
        _wait(lambda: all(self._status(b) == BatchStatus.RUNNING for b in self.holders))

    def _status(self, batch_id: str) -> str | None:
        return self.client.hget(self.keys.batch(batch_id), "status")

    def _total(self, status: str) -> int:
        """Batches of the type in `status` now: one field of the totals, not a read of each
        batch (a poll that read 100,000 statuses would take the scheduler's GIL)."""
        return int(self.client.hget(self.keys.totals(), f"batch:EMU_FREE:{status}") or 0)

    def waiting(self) -> int:
        return self._total(BatchStatus.PENDING)

    def fill(self, count: int) -> None:
        """`count` more closed one-job batches, each of one of PROJECTS projects (the admin's
        among them), created in order."""
        projects = [self.info["project_id"], *(f"scale-{i}" for i in range(1, PROJECTS))]
        base = time.time_ns() // 1000

        def one(i: int) -> str:
            return self.batch(projects[i % PROJECTS], "MEDIUM", False, base + i)[0].id

        with ThreadPoolExecutor(8) as pool:
            self.filled += pool.map(one, range(count))

    def release_and_drain(self, timed: TimedScheduler, tag: str) -> dict[str, float]:
        """Closes the holders: how long until a filled batch runs on the first freed QPU, and
        how fast one-job batches then finish."""
        done_before = self._done()
        timed.passes.clear()
        timed.spans.clear()
        cpu = _cpu_seconds(self.processes)
        start = time.perf_counter()
        for holder in self.holders:
            self.store.close_batch(holder, time.time_ns() // 1000, "bench")
        self.released += len(self.holders)
        _wait(lambda: self._done() - done_before >= DRAIN, timeout_s=300)
        drained_s = time.perf_counter() - start
        used = {name: t - cpu.get(name, 0.0) for name, t in _cpu_seconds(self.processes).items()}
        during = sorted(1000 * t for t in timed.passes)
        granted = min(t for t in timed.grants if t > start)
        figures = {
            f"scale drain pass p50 ms, {tag}": statistics.median(during),
            f"scale decision ms, {tag}": 1000 * (granted - start),
            # Passes begun after the QPU's release up to its grant (1: the first granted it).
            f"scale decision passes, {tag}": sum(
                start < a and b <= granted for a, b in timed.spans
            ),
            f"scale drain batches/s, {tag}": (self._done() - done_before) / drained_s,
            # Of the machine's cores, how busy while draining, and with what.
            f"scale drain CPU busy, {tag}": sum(used.values()) / drained_s / _cores(),
        }
        figures.update(
            {f"scale drain CPU {name}, {tag}": t / drained_s for name, t in used.items()}
        )
        return figures

    @property
    def processes(self) -> dict[str, list[psutil.Process]]:
        """The cluster's processes by kind, with their children (gunicorn's, Celery's), and
        Redis; this process is the scheduler."""
        kinds: dict[str, list[psutil.Process]] = {"scheduler": [psutil.Process()]}
        for child in self.cluster.children:
            if child.process is not None and child.process.poll() is None:
                root = psutil.Process(child.process.pid)
                kind = child.name.split()[0]
                kinds.setdefault(kind, []).extend([root, *root.children(recursive=True)])
        kinds["redis"] = [psutil.Process(self.redis_pid)]
        return kinds

    def _done(self) -> int:
        """Filled batches DONE (the holders, closed empty, are DONE too)."""
        return self._total(BatchStatus.DONE) - self.released


def _passes(timed: TimedScheduler, world: _World, tag: str) -> dict[str, float]:
    """PASSES passes, each woken as the API wakes it (LPUSH on the wake-up list)."""
    timed.passes.clear()
    for _ in range(PASSES):
        world.client.lpush(world.keys.wakeup(), "1")
        time.sleep(0.01)
    _wait(lambda: len(timed.passes) >= PASSES)
    times = sorted(1000 * t for t in timed.passes[:PASSES])
    return {
        f"scale pass p50 ms, {tag}": statistics.median(times),
        f"scale pass p99 ms, {tag}": times[int(0.99 * len(times)) - 1],
    }


def _forecasts(settings: Any, db: Db, world: _World, tag: str) -> dict[str, float]:
    """A forecaster's round from cold, then one warm (its reads incremental)."""
    forecaster = Forecaster(settings, db, load_policy(settings.policy))
    figures = {}
    for round_ in ("cold", "warm"):
        world.client.delete(world.keys.forecast_turn())
        cpu, wall = time.thread_time(), time.perf_counter()
        assert forecaster.run_once(time.time_ns() // 1000)
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        figures[f"scale forecast {round_} s, {tag}"] = wall
        figures[f"scale forecast {round_} CPU s, {tag}"] = cpu
    pause = pause_after(cpu, settings.forecast_interval_s)
    figures[f"scale forecaster core share, {tag}"] = cpu / (wall + pause)
    return figures


def _api(world: _World, tag: str) -> dict[str, float]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {world.info['token']}"
    core = world.info["core_url"]
    picks = random.Random(1).sample(world.filled, min(REQUESTS, len(world.filled)))
    lists, gets, pages = [], [], []
    for batch_id in picks:
        start = time.perf_counter()
        session.get(
            world.info["api_url"] + "/admin/api/v1/queue",
            params={"offset": 5000, "limit": 100},
            timeout=30,
        ).raise_for_status()
        pages.append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        session.get(
            core + "/api/v1/batches", params={"status": "PENDING", "limit": 100}, timeout=30
        ).raise_for_status()
        lists.append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        answer = session.get(f"{core}/api/v2/batches/{batch_id}", timeout=30)
        gets.append(1000 * (time.perf_counter() - start))
        # Another project's batch is 404 to the admin's token: timed all the same.
        assert answer.status_code in (200, 404)
    lists.sort()
    gets.sort()
    pages.sort()
    return {
        f"scale queue page p99 ms, {tag}": pages[int(0.99 * len(pages)) - 1],
        f"scale list p99 ms, {tag}": lists[int(0.99 * len(lists)) - 1],
        f"scale get p99 ms, {tag}": gets[int(0.99 * len(gets)) - 1],
    }


def _cpu_seconds(kinds: dict[str, list[psutil.Process]]) -> dict[str, float]:
    """CPU seconds used so far by each kind of process."""
    used: dict[str, float] = {}
    for kind, processes in kinds.items():
        for process in processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                used[kind] = used.get(kind, 0.0) + times.user + times.system
    return used


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _wait(condition: Any, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the cluster did not get there in time")
        time.sleep(0.05)


#: (figure, its key's stem): shown per QPU count, each size beside the first size.
ROWS = (
    ("plain pass p50 ms", "scale pass p50 ms"),
    ("plain pass p99 ms", "scale pass p99 ms"),
    ("forecast from cold s", "scale forecast cold s"),
    ("forecast warm s", "scale forecast warm s"),
    ("forecast warm CPU s", "scale forecast warm CPU s"),
    ("forecaster share of a core", "scale forecaster core share"),
    ("decision latency ms", "scale decision ms"),
    ("  passes begun meanwhile", "scale decision passes"),
    ("drain batches/s", "scale drain batches/s"),
    ("  pass p50 ms while draining", "scale drain pass p50 ms"),
    ("  machine's cores busy", "scale drain CPU busy"),
    ("  cores: scheduler", "scale drain CPU scheduler"),
    ("  cores: workers", "scale drain CPU worker"),
    ("  cores: API", "scale drain CPU api"),
    ("  cores: Redis", "scale drain CPU redis"),
    ("PENDING list p99 ms", "scale list p99 ms"),
    ("get p99 ms", "scale get p99 ms"),
    ("admin queue page p99 ms", "scale queue page p99 ms"),
    ("Redis bytes per waiting batch", "scale Redis bytes per waiting batch"),
)


def show(figures: dict[str, float], sizes: tuple[int, ...] = SIZES) -> None:
    """A table per QPU count; growth is each figure at the largest size over the same at
    1,000 waiting (or the smallest size measured)."""
    for qpus in sorted({int(k.rsplit(", ", 1)[1].split()[0]) for k in figures if "QPUs" in k}):
        first = 1_000 if 1_000 in sizes else sizes[0]
        head = "".join(f"{f'{size:,}':>12}" for size in sizes)
        print(f"\nscale, {qpus} QPU(s); waiting:{'':<20}{head}{'growth':>9}")
        for label, stem in ROWS:
            values = [figures.get(f"{stem}, {size} waiting, {qpus} QPUs") for size in sizes]
            if None in values:
                continue
            shown = "".join(f"{v:>12.2f}" for v in values)
            base = values[sizes.index(first)] or 1e-9
            print(f"{label:<37}{shown}{values[-1] / base:>9.2f}")
        print(f"(growth: the figure at {sizes[-1]:,} over the same at {first:,})")
    if "scale sequence bytes per batch" in figures:
        print(f"each batch stores a {figures['scale sequence bytes per batch']:.0f}-byte sequence")


if __name__ == "__main__":
    import sys

    chosen = tuple(int(s) for s in sys.argv[1].split(",")) if len(sys.argv) > 1 else SIZES
    counts = tuple(int(s) for s in sys.argv[2].split(",")) if len(sys.argv) > 2 else QPU_COUNTS
    show(measure(chosen, counts), chosen)
