"""A second QPU driver, for tests only: proves the bridge needs nothing but the interface.

Every shot measures all atoms in state 1; each call is appended to the file named by
TWEEZER_TEST_DRIVER_LOG; a job with more than 1000 runs blocks until it is aborted, and a job of
exactly 999 runs kills its own worker process (a poison job), and one of exactly 1600 runs
ignores Celery's soft time limit (only the hard limit stops it).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

from celery.exceptions import SoftTimeLimitExceeded
from pulser import Sequence

from core.settings import Settings
from workers.drivers import Aborted

#: Runs above this make `run` wait for `abort` (a job that would take forever).
BLOCKING_RUNS = 1000
#: This many runs makes `run` SIGKILL its own process, every time.
POISON_RUNS = 999
#: This many runs makes `run` swallow SoftTimeLimitExceeded and keep waiting.
STUBBORN_RUNS = 1600


class ScriptedDriver:
    def __init__(self, settings: Settings) -> None:
        self._aborted = threading.Event()
        self._atoms = 0

    def load(self, sequence: Sequence) -> None:
        self._aborted.clear()
        self._atoms = len(sequence.register.qubit_ids)
        _log(f"load {self._atoms}")

    def run(self, shots: int, progress: Callable[[int], None]) -> list[str]:
        _log(f"run {shots}")
        if shots == POISON_RUNS:
            os.kill(os.getpid(), signal.SIGKILL)
        while shots == STUBBORN_RUNS:
            try:
                self._aborted.wait(60)
            except SoftTimeLimitExceeded:
                _log("ignored the soft time limit")
        if shots > BLOCKING_RUNS and self._aborted.wait(60):
            _log("aborted")
            raise Aborted("aborted")
        progress(shots)
        return ["1" * self._atoms] * shots

    def abort(self) -> None:
        self._aborted.set()


def _log(line: str) -> None:
    with open(os.environ["TWEEZER_TEST_DRIVER_LOG"], "a") as log:
        log.write(line + "\n")
