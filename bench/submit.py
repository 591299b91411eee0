"""`make bench`: figures of a real cluster on this machine, side by side with bench/baseline.json.

  submit    create-batch requests (1 job each, gzip, as the SDK sends them) from 8 threads, and
            10-job batches from 16 clients (issue #14: 2x 100 batches/s, p99 <= 100 ms), with
            the guide's two variable sets, then with every set new (a variational loop's)
  list      GET /batches with a status filter and a page of 100, with every submitted batch present
  run       one closed batch of 100 two-atom jobs, submission to DONE, on one EMU_FREE QPU
  spread    a zero-cost device (bench/spread.py): jobs/s with its worker on another network
            host beside the same on this host, and Redis's CPU and commands per job
  simulate  a 100,000-job SWF trace through each built-in policy (bench/simulate.py), beside
            the time the trace spans
  ceiling   jobs/s and batches/s on a synthetic device (bench/ceiling.py), beside bare Celery's
            no-op tasks/s on the same machine and Redis durability
  emulation 100 four-atom jobs through a cluster with default settings, beside the same jobs
            in a plain Python loop, and one job at 8 to 16 atoms (bench/emulation.py)
  emulators EMU_SV beside EMU_FREE at 12-16 atoms, EMU_SV at 20 and EMU_MPS at 60 atoms within
            the job time limit, EMU_SV beside emu-sv called directly (bench/emulators.py, #24)
  memory    Redis bytes per stored job beyond its result (bench/memory.py)
  lists     a filtered page of 100 at 1,000 and at 100,000 matching batches (bench/lists.py)
  scale     the scheduler, forecasts and the API with 300 to 100,000 batches waiting over
            1,000 projects, 1 and 32 QPUs (bench/scale.py, issue #30)

Ends with issues #14's, #24's and #30's goals, each figure beside its anchor (bench/goals.py).
Every run's figures go to bench/last-run.json; `make bench ARGS=--save` records them as the new
baseline.
`make bench ARGS=--quick` (under a minute) measures only the zero-cost, Redis-commands,
emulation and memory goals, once each and smaller.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import requests

from api.schemas import MAX_CANCEL_BATCHES
from bench import ceiling, emulation, emulators, goals, lists, memory, scale, simulate, spread
from bench.clusters import bench_cluster
from cli.demo import guide_sequence
from launch.cluster import Cluster

BASELINE = Path(__file__).with_name("baseline.json")
#: Every run's figures, beside the baseline (not committed).
LAST_RUN = Path(__file__).with_name("last-run.json")
SUBMISSIONS = 400
THREADS = 8
BIG_SUBMISSIONS = 400
BIG_CLIENTS = 16
LISTS = 200
RUN_JOBS = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--save", action="store_true", help="record these figures as the baseline")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="under a minute: the throughput, Redis commands, emulation and memory goals only, "
        "each measured once and smaller (no submit, list or simulate figures)",
    )
    args = parser.parse_args()
    if args.quick:
        if args.save:
            parser.error("--save records a full run only")
        quick()
        return
    # One token submits as fast as 8 threads can: the figures are the platform's, not the
    # per-token rate limit's (which would answer 429 past 200 at once).
    with bench_cluster(rate_limit_per_s=0) as bench:
        figures = measure(bench.info)
        figures.update(peak_memory(bench.cluster))
    figures.update(spread.measure())
    simulated = simulate.measure()
    limits = ceiling.measure()
    emulated = emulation.measure()
    engines = emulators.measure()
    stored = memory.measure()
    listed = lists.measure()
    scaled = scale.measure()
    show(figures)
    show_spread(figures)
    simulate.show(simulated)
    ceiling.show(limits)
    emulation.show(emulated)
    emulators.show(engines)
    memory.show(stored)
    lists.show(listed)
    scale.show(scaled)
    figures.update(simulated)
    figures.update(limits)
    figures.update(emulated)
    figures.update(engines)
    figures.update(stored)
    figures.update(listed)
    figures.update(scaled)
    goals.show(figures)
    LAST_RUN.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nfigures saved to {LAST_RUN}")
    if args.save:
        BASELINE.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"baseline saved to {BASELINE}")


def quick() -> None:
    """`make bench ARGS=--quick`: the goals a change to the job path would move, measured once
    each in clusters of their own, with their anchors beside them."""
    figures = spread.measure(rounds=1, remote=False)
    figures.update(ceiling.measure(quick=True))
    figures.update(emulation.measure(quick=True))
    figures.update(memory.measure())
    show_spread(figures)
    ceiling.show(figures)
    emulation.show(figures)
    memory.show(figures)
    goals.show(figures)
    LAST_RUN.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nfigures saved to {LAST_RUN}")


def measure(info: dict[str, Any]) -> dict[str, float]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {info['token']}"
    # A kept-alive connection per client thread, as each real client has its own (requests
    # keeps 10 by default, and more threads would connect anew for every request).
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=BIG_CLIENTS))
    core = info["core_url"]
    sequence = guide_sequence()

    def body(
        runs: int, jobs: int = 1, open_: bool = False, omegas: tuple[float, ...] = (6, 10.5)
    ) -> bytes:
        payload = {
            "sequence_builder": sequence,
            "webhook": None,
            "open": open_,
            "device_type": "EMU_FREE",
            "project_id": info["project_id"],
            # By default the guide's two values of omega_max, alternating.
            "jobs": [
                {"runs": runs, "variables": {"omega_max": omegas[i % len(omegas)]}}
                for i in range(jobs)
            ],
        }
        return gzip.compress(json.dumps(payload).encode())

    def post(data: bytes) -> tuple[float, str]:
        start = time.perf_counter()
        response = session.post(
            core + "/api/v1/batches", data=data, headers={"Content-Encoding": "gzip"}, timeout=30
        )
        response.raise_for_status()
        return time.perf_counter() - start, response.json()["data"]["id"]

    # Hold the QPU so the submitted batches queue instead of competing for the CPU.
    _, holder = post(body(1, jobs=0, open_=True))
    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        submitted = list(pool.map(lambda _: post(body(10)), range(SUBMISSIONS)))
    submit_s = time.perf_counter() - start
    latencies = sorted(t for t, _ in submitted)
    # Issue #14's figure: batches of 10 jobs from 16 clients at once (the body encoded once:
    # clients run elsewhere, and their CPU is not the API's).
    ten = body(10, jobs=10)
    with ThreadPoolExecutor(BIG_CLIENTS) as pool:
        # Each client connects first (the slowest requests were those that opened one).
        warm = list(pool.map(lambda _: post(ten), range(BIG_CLIENTS)))
        start = time.perf_counter()
        big = list(pool.map(lambda _: post(ten), range(BIG_SUBMISSIONS)))
        big_s = time.perf_counter() - start
        # The same with every variable set new, as a variational loop sends them: the API
        # builds each job's sequence (a sweep sent again finds its builds made).
        fresh = [
            body(10, jobs=10, omegas=tuple(5 + (10 * i + j) / 1000 for j in range(10)))
            for i in range(BIG_SUBMISSIONS)
        ]
        start = time.perf_counter()
        new = list(pool.map(post, fresh))
        new_s = time.perf_counter() - start
    big_latencies = sorted(t for t, _ in big)
    new_latencies = sorted(t for t, _ in new)

    list_times = []
    for _ in range(LISTS):
        t0 = time.perf_counter()
        session.get(
            core + "/api/v1/batches", params={"status": "PENDING", "limit": 100}, timeout=30
        ).raise_for_status()
        list_times.append(time.perf_counter() - t0)
    list_times.sort()

    # Cancelled before the run figure, which would otherwise wait behind them: in requests
    # of as many as the route takes.
    ids = [i for _, i in submitted + warm + big + new] + [holder]
    for start in range(0, len(ids), MAX_CANCEL_BATCHES):
        session.patch(
            core + "/api/v1/batches/cancel",
            json={"batch_ids": ids[start : start + MAX_CANCEL_BATCHES]},
            timeout=120,
        ).raise_for_status()
    t0 = time.perf_counter()
    _, run_id = post(body(20, jobs=RUN_JOBS))
    while (
        session.get(f"{core}/api/v1/batches/{run_id}/status", timeout=30).json()["data"]["status"]
        != "DONE"
    ):
        time.sleep(0.05)
    run_s = time.perf_counter() - t0
    return {
        "submit batches/s": SUBMISSIONS / submit_s,
        "submit p50 ms": 1000 * statistics.median(latencies),
        "submit p95 ms": 1000 * latencies[int(0.95 * len(latencies))],
        "submit 10-job batches/s, 16 clients": BIG_SUBMISSIONS / big_s,
        "submit 10-job p50 ms, 16 clients": 1000 * statistics.median(big_latencies),
        "submit 10-job p99 ms, 16 clients": 1000 * big_latencies[int(0.99 * len(big)) - 1],
        "submit 10-job batches/s, 16 clients, new variables": BIG_SUBMISSIONS / new_s,
        "submit 10-job p50 ms, 16 clients, new variables": 1000 * statistics.median(new_latencies),
        "submit 10-job p99 ms, 16 clients, new variables": 1000
        * new_latencies[int(0.99 * len(new)) - 1],
        "list p50 ms": 1000 * statistics.median(list_times),
        "list p95 ms": 1000 * list_times[int(0.95 * len(list_times))],
        "run jobs/s": RUN_JOBS / run_s,
    }


def peak_memory(cluster: Cluster) -> dict[str, float]:
    """Peak resident memory (MB) of each process type after the figures above, each with its
    own children (gunicorn's workers, Celery's pool): what deploy/k8s requests are sized from."""
    peaks = {}
    for child in cluster.children:
        if child.process is None:
            continue
        root = psutil.Process(child.process.pid)
        tree = [root, *root.children(recursive=True)]
        kind = child.name.split()[0]  # "api", "scheduler", "worker"
        peaks[f"peak MB, {kind}"] = max(peaks.get(f"peak MB, {kind}", 0.0), _peak_mb(tree))
    return peaks


def _peak_mb(processes: list[psutil.Process]) -> float:
    """The sum of each process's high-water mark of resident memory (VmHWM), in MB."""
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error, OSError):
            status = Path(f"/proc/{process.pid}/status").read_text()
            if match := re.search(r"VmHWM:\s+(\d+) kB", status):
                total += int(match.group(1))
    return total / 1024


def show_spread(figures: dict[str, float]) -> None:
    """The remote-worker figure beside its anchor measured in the same run, and what Redis
    itself spends per job (so how many jobs/s, hence QPUs and workers, one Redis serves)."""
    here = figures["zero-cost jobs/s, worker on this host"]
    print(f"\n{'figure':<44}{'Tweezer':>10}{'anchor':>10}{'ratio':>8}")
    far = figures.get("zero-cost jobs/s, worker on another host")
    if far is not None:
        print(
            f"{'zero-cost jobs/s, worker on another host':<44}{far:>10.1f}{here:>10.1f}"
            f"{far / here:>8.2f}"
        )
    cpu_ms = figures["Redis CPU ms per job"]
    print(f"{'Redis CPU ms per job':<44}{cpu_ms:>10.2f}")
    print(f"{'Redis commands per job':<44}{figures['Redis commands per job']:>10.1f}")
    print(f"{'Redis scripts per job':<44}{figures['Redis scripts per job']:>10.2f}")
    print(f"one Redis core would serve ~{1000 / cpu_ms:.0f} jobs/s: at 1 s a job, that many QPUs")


def show(figures: dict[str, float]) -> None:
    baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    print(f"\n{'figure':<20}{'baseline':>12}{'now':>12}{'change':>10}")
    for name, value in figures.items():
        before = baseline.get(name)
        change = f"{100 * (value - before) / before:+.0f}%" if before else "-"
        shown = f"{before:.1f}" if before else "-"
        print(f"{name:<20}{shown:>12}{value:>12.1f}{change:>10}")


if __name__ == "__main__":
    main()
