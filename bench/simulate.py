"""`make bench`: the simulator on a 100,000-job SWF trace, beside the time the trace spans.

The trace is synthetic but shaped like the Parallel Workloads Archive's logs (Poisson arrivals
that overload the QPUs at times, log-normal run times, 200 users in 20 groups, three queues,
one job in twenty following an earlier one of its user after a think time). It is generated
from a fixed seed, written as SWF and read back through lab/traces.py, so the figure
covers parsing too.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from pathlib import Path

from lab.traces import read_swf
from scheduling.policies import BUILT_IN
from scheduling.simulator import Simulation

JOBS = 100_000
QPUS = {"EMU_FREE": 4}


def synthetic_swf(path: Path, jobs: int = JOBS, seed: int = 7) -> None:
    rng = random.Random(seed)
    lines = ["; Version: 2.2", "; Computer: synthetic (bench/simulate.py)", f"; MaxJobs: {jobs}"]
    now = 0.0
    last_of_user: dict[int, int] = {}
    for number in range(1, jobs + 1):
        now += rng.expovariate(1 / 40.0)
        run = min(36_000.0, math.exp(rng.gauss(4.5, 1.2)))  # median ~90 s
        processors = rng.choice((1, 1, 1, 2, 4, 8))
        user = rng.randrange(200)
        preceding, think = -1, -1.0
        if user in last_of_user and rng.random() < 0.05:
            preceding, think = last_of_user[user], rng.uniform(5, 300)
        last_of_user[user] = number
        fields = [
            number,
            round(now),
            -1,
            round(run, 1),
            processors,
            -1,
            -1,
            processors,
            -1,
            -1,
            1,
            user,
            user % 20,
            -1,
            rng.choice((1, 2, 2, 3)),
            1,
            preceding,
            round(think, 1),
        ]
        lines.append(" ".join(str(f) for f in fields))
    path.write_text("\n".join(lines) + "\n")


def measure() -> dict[str, float]:
    """Per built-in policy, the seconds to read and simulate the trace, and the trace's span."""
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic.swf"
        synthetic_swf(path)
        for name, policy in BUILT_IN.items():
            started = time.perf_counter()
            batches = read_swf(path, "EMU_FREE")
            outcomes = Simulation(policy(), QPUS).run(batches)
            figures[f"simulate 100k SWF, {name} (s)"] = time.perf_counter() - started
        figures["trace span (s)"] = max(o.end_s for o in outcomes) - min(
            b.submit_s for b in batches
        )
        figures["batches simulated"] = float(len(outcomes))
    return figures


def show(figures: dict[str, float]) -> None:
    span = figures["trace span (s)"]
    print(f"\n{'figure':<44}{'Tweezer':>10}{'anchor':>10}{'ratio':>8}")
    print(f"(anchor: the {span / 86_400:.0f} days the trace spans; ratio: times faster than real)")
    for name, seconds in figures.items():
        if name.startswith("simulate"):
            print(f"{name:<44}{seconds:>10.2f}{span:>10.0f}{span / seconds:>8.0f}")


if __name__ == "__main__":
    show(measure())
