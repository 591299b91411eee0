"""Emulation through the platform beside a hand-written loop (issue #14, goals 1 and 5).

Tweezer: one closed batch of 100 four-atom jobs (500 ns), from its submission to the end the
batch records (polled every 0.25 s, so the client takes no CPU from the jobs), on a cluster with
`tweezer up`'s default settings (an emulator QPU's pool has a process per core). Anchor: the
same jobs in one plain Python process: parse the sequence, build it, QutipBackendV2, sample the
shots. Medians of 3, in the same run; the goal is a ratio of at most 0.60 on two cores (the
physical limit is 1 / cores). Then one job (500 ns, 100 shots) at 8, 10, 12, 14 and 16 atoms,
submission to DONE, beside the same job run directly: what the platform adds to a big job, and
the cost model's prediction that admitted it.
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime
from typing import Any

from bench.clusters import bench_cluster, run_batch
from core.costs import emulator_default

JOBS = 100
RUNS = 100
REPEATS = 3
GOAL = 0.60


ATOMS = (8, 10, 12, 14, 16)


def four_atoms() -> str:
    return atoms_sequence(4)


def atoms_sequence(atoms: int) -> str:
    from pulser import Pulse, Register, Sequence
    from pulser.devices import MockDevice

    register = Register.rectangle(1, atoms, spacing=6, prefix="q")
    sequence = Sequence(register, MockDevice)
    sequence.declare_channel("rydberg", "rydberg_global")
    sequence.add(Pulse.ConstantPulse(500, 1.0, 0.0, 0.0), "rydberg")
    return str(sequence.to_abstract_repr())


def direct(text: str, jobs: int = JOBS) -> float:
    """The anchor: what a user would write without Tweezer, one process."""
    import warnings

    from pulser import Sequence
    from pulser.backend import BitStrings
    from pulser.backend.config import EmulationConfig
    from pulser_simulation import QutipBackendV2

    start = time.perf_counter()
    for _ in range(jobs):
        sequence = Sequence.from_abstract_repr(text)
        config = EmulationConfig(observables=[BitStrings(num_shots=RUNS)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            QutipBackendV2(sequence, config=config).run()
    return time.perf_counter() - start


def through_tweezer(info: dict[str, Any], text: str, jobs: int = JOBS) -> float:
    """Seconds from the submission to the end the batch records."""
    batch = run_batch(info, text, [{"runs": RUNS}] * jobs)
    return datetime.fromisoformat(batch["end_datetime"]).timestamp() - batch["submitted_at"]


def measure(quick: bool = False) -> dict[str, float]:
    """`quick`: one run of each side, and no job at 8 to 16 atoms."""
    text = four_atoms()
    repeats, sizes = (1, ()) if quick else (REPEATS, ATOMS)
    # `tweezer up`'s defaults but for the QPUs (only the emulator is measured).
    with bench_cluster(qpus={"EMU_FREE": 1}) as bench:
        through_tweezer(bench.info, text, jobs=4)  # every pool process imports QuTiP first
        platform = [through_tweezer(bench.info, text) for _ in range(repeats)]
        big = {n: through_tweezer(bench.info, atoms_sequence(n), jobs=1) for n in sizes}
    anchor = [direct(text) for _ in range(repeats)]
    figures = {
        "emulation s, 100 four-atom jobs": statistics.median(platform),
        "emulation s, direct loop": statistics.median(anchor),
    }
    for n in sizes:
        figures[f"{n}-atom job s"] = big[n]
        figures[f"{n}-atom job s, direct"] = direct(atoms_sequence(n), jobs=1)
        figures[f"{n}-atom job s, predicted"] = emulator_default(n) * (1 + 500 / 1000)
    return figures


def show(figures: dict[str, float]) -> None:
    ours, anchor = figures["emulation s, 100 four-atom jobs"], figures["emulation s, direct loop"]
    print(f"\n{'figure':<44}{'Tweezer':>10}{'anchor':>10}{'ratio':>8}{'goal':>8}")
    print(
        f"{'100 four-atom jobs, submit to DONE, s':<44}{ours:>10.2f}{anchor:>10.2f}"
        f"{ours / anchor:>8.2f}{'<= ' + str(GOAL):>8}"
    )
    if f"{ATOMS[0]}-atom job s" not in figures:
        return
    print(
        f"\n{'one job, 500 ns, 100 shots':<30}{'Tweezer s':>10}{'direct s':>10}{'ratio':>8}"
        f"{'predicted s':>13}"
    )
    for n in ATOMS:
        ours, anchor = figures[f"{n}-atom job s"], figures[f"{n}-atom job s, direct"]
        print(
            f"{f'{n} atoms':<30}{ours:>10.2f}{anchor:>10.2f}{ours / anchor:>8.2f}"
            f"{figures[f'{n}-atom job s, predicted']:>13.2f}"
        )


if __name__ == "__main__":
    result = measure()
    show(result)
