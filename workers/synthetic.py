"""A synthetic device (`tweezer up --synthetic-devices`): each job takes exactly the QPU seconds
its load test gives it (the job variable `tweezer_qpu_s`, core/costs.py), else its predicted
time, and returns bitstrings drawn from a generator seeded by the job's `tweezer_seed`
(else its id). No QuTiP: a replayed
trace keeps its timing, and thousands of jobs a minute exercise the API, the store, the
scheduler and the workers rather than the emulator.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from core.execution import JobInputs
from core.hints import SEED_VARIABLE, given_qpu_seconds
from workers.drivers import Aborted

#: Progress is reported (and an abort noticed) at least this often.
TICK_S = 0.05


class SyntheticDevice:
    def __init__(self, capacity: int) -> None:
        #: Jobs a QPU runs at once: a job's predicted share of its batch times this is its time.
        self.capacity = capacity
        self._aborted = threading.Event()

    def seconds(self, inputs: JobInputs) -> float:
        given = given_qpu_seconds(inputs.variables)
        return inputs.qpu_s * self.capacity if given is None else given

    notes: tuple[str, ...] = ()

    def run(self, inputs: JobInputs, progress: Callable[[int], None]) -> dict[str, Any]:
        self._aborted.clear()
        total = self.seconds(inputs)
        elapsed = 0.0
        while elapsed < total:
            step = min(TICK_S, total - elapsed)
            if self._aborted.wait(step):
                raise Aborted("aborted by the synthetic device")
            elapsed += step
            progress(int(inputs.runs * elapsed / total))
        seed = (inputs.variables or {}).get(SEED_VARIABLE)
        rng = random.Random(seed if isinstance(seed, int) else inputs.job_id)
        bits = max(1, inputs.atoms)
        shots = ["".join(rng.choice("01") for _ in range(bits)) for _ in range(inputs.runs)]
        return {"counter": dict(Counter(shots)), "raw": shots}

    def abort(self) -> None:
        self._aborted.set()
