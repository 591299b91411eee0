"""A device that costs nothing: every shot of every job is all atoms in the ground state, at
once. It measures the platform itself (API, store, scheduler, workers, Redis) with no emulator
or device time in the way: `TWEEZER_BRIDGE_DRIVER=workers.drivers.instant:InstantQpu`."""

from __future__ import annotations

from collections.abc import Callable

from pulser import Sequence

from core.settings import Settings


class InstantQpu:
    def __init__(self, settings: Settings) -> None:
        self.atoms = 0

    def load(self, sequence: Sequence) -> None:
        self.atoms = len(sequence.register.qubit_ids)

    def run(self, shots: int, progress: Callable[[int], None]) -> list[str]:
        progress(shots)
        return ["0" * self.atoms] * shots

    def abort(self) -> None:
        """Nothing runs long enough to stop."""
