"""The virtual QPU: behaves like the device until a real one is plugged in.

Results come from Pulser's emulator under the device's noise (state preparation and measurement
errors, dephasing), so they look like hardware counts; time passes as on hardware: loading a new
register takes `bridge_register_load_s`, shots come at `bridge_shot_rate_hz`, both divided by
`bridge_speedup`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
from pulser import Sequence
from pulser.backend import BitStrings
from pulser.backend.config import EmulationConfig
from pulser_simulation import QutipBackendV2

from core.quiet import quiet
from core.sequences import FRESNEL_NOISE
from core.settings import Settings
from workers.drivers import Aborted

#: How many shots are delivered between progress reports (and abort checks).
CHUNK = 10


class VirtualQpu:
    def __init__(self, settings: Settings) -> None:
        self.shot_period_s = 1.0 / (settings.bridge_shot_rate_hz * settings.bridge_speedup)
        self.register_load_s = settings.bridge_register_load_s / settings.bridge_speedup
        self._aborted = threading.Event()
        self._loaded_register: str | None = None
        self._sequence: Sequence | None = None

    def load(self, sequence: Sequence) -> None:
        self._aborted.clear()
        register = sequence.register.to_abstract_repr()
        if register != self._loaded_register:
            # Trapping and arranging a new register is the slow part of starting a batch.
            self._wait(self.register_load_s)
            self._loaded_register = register
        self._sequence = sequence

    def run(self, shots: int, progress: Callable[[int], None]) -> list[str]:
        if self._sequence is None:
            raise RuntimeError("run() before load()")
        config: EmulationConfig = EmulationConfig(
            observables=[BitStrings(num_shots=shots)], noise_model=FRESNEL_NOISE
        )
        with quiet():
            counts = QutipBackendV2(self._sequence, config=config).run().final_bitstrings
        outcomes = [str(bits) for bits, n in counts.items() for _ in range(int(n))]
        np.random.default_rng().shuffle(outcomes)
        for done in range(0, shots, CHUNK):
            self._wait(self.shot_period_s * min(CHUNK, shots - done))
            progress(min(done + CHUNK, shots))
        return outcomes

    def abort(self) -> None:
        self._aborted.set()

    def _wait(self, seconds: float) -> None:
        if self._aborted.wait(seconds):
            raise Aborted("aborted by the bridge")
