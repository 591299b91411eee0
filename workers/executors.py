"""What runs a job on a worker: the QuTiP emulator (EMU_FREE), Pasqal's emulators (EMU_SV,
EMU_MPS, EMU_FRESNEL: workers/engines.py) or the bridge to a QPU (FRESNEL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from core.device_types import TORCH_ENGINES, DeviceKind, device_type_of_qpu, kind_of_qpu
from core.execution import JobInputs
from core.hints import SEED_VARIABLE
from core.settings import Settings
from workers.emulation import EmulationOptions, run_emulation


class Executor(Protocol):
    #: What it noted on its last run (added to the job's warnings).
    notes: tuple[str, ...]

    def run(self, inputs: JobInputs, progress: Callable[[int], None]) -> dict[str, Any]:
        """Runs one job; returns its results document."""

    def abort(self) -> None:
        """Asks a running `run` to stop (the job was cancelled); called from another thread."""


class Emulator:
    """The pure `run_emulation` on QuTiP."""

    notes: tuple[str, ...] = ()

    def run(self, inputs: JobInputs, progress: Callable[[int], None]) -> dict[str, Any]:
        options = EmulationOptions(
            backend_configuration=inputs.backend_configuration,
            with_noise=bool((inputs.configuration or {}).get("with_noise", False)),
        )
        seed = (inputs.variables or {}).get(SEED_VARIABLE)
        seed = seed if isinstance(seed, int) else None  # a load test's (core/hints.py)
        return run_emulation(inputs.sequence, inputs.variables, inputs.runs, options, seed)

    def abort(self) -> None:
        """An emulation cannot be interrupted; a cancelled job's result is refused at commit."""


def executor_for(settings: Settings, qpu: str) -> Executor:
    if settings.synthetic_devices:
        from workers.synthetic import SyntheticDevice

        return SyntheticDevice(settings.pool_size(device_type_of_qpu(qpu)))
    device_type = device_type_of_qpu(qpu)
    if device_type in TORCH_ENGINES:
        from workers.engines import PasqalEmulator

        return PasqalEmulator(device_type, settings.emulator_thread_count(device_type))
    if kind_of_qpu(qpu) is DeviceKind.EMULATOR:
        return Emulator()
    from workers.bridge import Bridge
    from workers.drivers import load_driver

    return Bridge(load_driver(settings))
