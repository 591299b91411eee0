"""Pasqal's emulators through the platform (issue #24), each figure beside its anchor measured in
the same run, on the issue's workload: a 2 µs adiabatic sweep of a 1D chain, 100 shots, on a
cluster with `tweezer up`'s default settings (an EMU_SV or EMU_MPS QPU is one pool process with
torch on every core; EMU_FREE's pool has a process per core, one job runs on one).

- EMU_SV beside EMU_FREE on the same 12-, 14- and 16-atom jobs, submission to the end the batch
  records: the ratio (goal: EMU_SV at least 3x faster at 16 atoms).
- The largest register run within the default job time limit: one measured job of EMU_SV at
  20 atoms and of EMU_MPS at 60 (goals: they run, DONE, within the limit).
- What the platform adds to a job: the 16-atom EMU_SV job beside the same engine called
  directly in this process with the same threads (goal: at most 1.1).
"""

from __future__ import annotations

import math
import os
import time
from datetime import datetime
from typing import Any

from bench.clusters import bench_cluster, run_batch

SIZES = (12, 14, 16)
RUNS = 100
DURATION_NS = 2000
SV_GOAL_ATOMS, MPS_GOAL_ATOMS = 20, 60
SPEEDUP_GOAL, OVERHEAD_GOAL = 3.0, 1.1


def sweep(atoms: int, duration: int = DURATION_NS) -> str:
    """The issue's sequence: Ω rises and falls while δ sweeps through resonance, 6 µm apart."""
    from pulser import Pulse, Register, Sequence
    from pulser.devices import MockDevice
    from pulser.waveforms import InterpolatedWaveform

    register = Register.rectangle(1, atoms, spacing=6, prefix="q")
    sequence = Sequence(register, MockDevice)
    sequence.declare_channel("rydberg", "rydberg_global")
    omega = InterpolatedWaveform(duration, [1e-9, 2 * math.pi, 1e-9])
    delta = InterpolatedWaveform(duration, [-4 * math.pi, 0, 4 * math.pi])
    sequence.add(Pulse(omega, delta, 0), "rydberg")
    return str(sequence.to_abstract_repr())


def through(info: dict[str, Any], device_type: str, text: str) -> float:
    """Seconds from one job's submission to the end its batch records."""
    batch = run_batch(info, text, [{"runs": RUNS}], device_type=device_type)
    return datetime.fromisoformat(batch["end_datetime"]).timestamp() - batch["submitted_at"]


def direct_sv(text: str) -> float:
    """The anchor of the overhead: emu-sv called as a user would on this machine, with the
    worker's threads and log level."""
    import logging

    import torch
    from emu_sv import SVBackend, SVConfig
    from pulser import Sequence
    from pulser.backend import BitStrings

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    start = time.perf_counter()
    sequence = Sequence.from_abstract_repr(text)
    config = SVConfig(observables=[BitStrings(num_shots=RUNS)], log_level=logging.WARNING)
    SVBackend(sequence, config=config).run()
    return time.perf_counter() - start


def measure(quick: bool = False) -> dict[str, float]:
    """`quick`: the 12-atom pair only."""
    sizes = SIZES[:1] if quick else SIZES
    figures: dict[str, float] = {}
    with bench_cluster(qpus={"EMU_FREE": 1, "EMU_SV": 1, "EMU_MPS": 1}) as bench:
        for device_type in ("EMU_FREE", "EMU_SV", "EMU_MPS"):  # each pool imports its engine
            through(bench.info, device_type, sweep(4, 200))
        for n in sizes:
            figures[f"EMU_FREE {n} atoms s"] = through(bench.info, "EMU_FREE", sweep(n))
            figures[f"EMU_SV {n} atoms s"] = through(bench.info, "EMU_SV", sweep(n))
        if not quick:
            figures[f"EMU_SV {SV_GOAL_ATOMS} atoms s"] = through(
                bench.info, "EMU_SV", sweep(SV_GOAL_ATOMS)
            )
            figures[f"EMU_MPS {MPS_GOAL_ATOMS} atoms s"] = through(
                bench.info, "EMU_MPS", sweep(MPS_GOAL_ATOMS)
            )
        figures["job time limit s"] = bench.settings.job_soft_time_limit_s
    largest = sizes[-1]
    figures[f"EMU_SV {largest} atoms s, direct"] = direct_sv(sweep(largest))
    return figures


def show(figures: dict[str, float]) -> None:
    print(f"\n{'2 µs sweep, 100 shots, one job':<34}{'EMU_SV s':>10}{'EMU_FREE s':>12}{'ratio':>8}")
    sizes = [n for n in SIZES if f"EMU_SV {n} atoms s" in figures]
    for n in sizes:
        sv, free = figures[f"EMU_SV {n} atoms s"], figures[f"EMU_FREE {n} atoms s"]
        print(f"{f'{n} atoms':<34}{sv:>10.2f}{free:>12.2f}{free / sv:>8.2f}x")
    limit = figures["job time limit s"]
    for key in (f"EMU_SV {SV_GOAL_ATOMS} atoms s", f"EMU_MPS {MPS_GOAL_ATOMS} atoms s"):
        if key in figures:
            print(
                f"{key.removesuffix(' s') + ', DONE in':<34}{figures[key]:>10.1f} s"
                f"  (job time limit {limit:g} s)"
            )
    largest = sizes[-1]
    ours, anchor = (
        figures[f"EMU_SV {largest} atoms s"],
        figures[f"EMU_SV {largest} atoms s, direct"],
    )
    print(
        f"{f'EMU_SV {largest} atoms vs emu-sv direct':<34}{ours:>10.2f}{anchor:>12.2f}"
        f"{ours / anchor:>8.2f}"
    )


if __name__ == "__main__":
    show(measure())
