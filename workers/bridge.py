"""Running a job on a QPU through its driver (the FRESNEL worker's executor)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from core.execution import JobInputs
from core.sequences import job_sequence
from workers.drivers import QpuDriver


class Bridge:
    """Loads each job's built sequence into the driver and collects its shots."""

    def __init__(self, driver: QpuDriver) -> None:
        self.driver = driver

    notes: tuple[str, ...] = ()

    def run(self, inputs: JobInputs, progress: Callable[[int], None]) -> dict[str, Any]:
        self.driver.load(job_sequence(inputs.sequence, inputs.variables))
        shots = self.driver.run(inputs.runs, progress)
        # QPU results as Pasqal serves them: counts and the shots themselves.
        return {"counter": dict(Counter(shots)), "raw": shots}

    def abort(self) -> None:
        self.driver.abort()
