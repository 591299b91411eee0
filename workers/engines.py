"""Pasqal's emulators on a worker: a job of EMU_SV, EMU_MPS or EMU_FRESNEL run on emu-sv or
emu-mps (PyTorch), from the `emulators` extra. Only this module imports them.

The job's `backend_configuration` (checked and priced by the API, core/engines.py) becomes the
engine's own config, with what the platform decides rather than the sender: the shots are the
job's (as on EMU_FREE), the engine logs only warnings (it prints a line per time step), a GPU is
used only where there is one, checkpoints go to a temp dir of the job's own, removed after it,
and torch uses the threads this pool process was given.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from typing import Any

from pulser.backend.config import EmulationConfig

from core.device_types import DeviceType
from core.engines import Engine, engine_for, engine_options
from core.execution import JobInputs
from core.hints import SEED_VARIABLE
from core.quiet import quiet
from core.sequences import FRESNEL_NOISE, job_sequence
from workers.emulation import job_config, results_document

#: The note a job gets when it asked for a GPU on a worker that has none.
NO_GPU = "a GPU was asked for; this worker has none, so the job ran on its CPU"


class PasqalEmulator:
    """Runs each job of one device type on emu-sv or emu-mps."""

    def __init__(self, device_type: str, threads: int) -> None:
        import torch

        self.device_type = device_type
        self.notes: tuple[str, ...] = ()
        # One pool process's share of the cores: torch would take them all in each process.
        torch.set_num_threads(threads)
        self._has_gpu = bool(torch.cuda.is_available())

    def run(self, inputs: JobInputs, progress: Callable[[int], None]) -> dict[str, Any]:
        import torch

        self.notes = ()
        sequence = job_sequence(inputs.sequence, inputs.variables)
        engine = engine_for(self.device_type, len(sequence.register.qubit_ids))
        config = job_config(inputs.backend_configuration, inputs.runs)
        seed = (inputs.variables or {}).get(SEED_VARIABLE)
        seed = seed if isinstance(seed, int) else None  # a load test's (core/hints.py)
        if seed is not None:
            torch.manual_seed(seed % 2**63)
        with tempfile.TemporaryDirectory(prefix="tweezer-emu-") as workdir:
            config = self._engine_config(config, engine, workdir)
            backend_type = _backend(engine)
            with quiet():  # Pulser and the engines warn about solver details
                results = backend_type(sequence, config=config).run()
        return results_document(results, inputs.backend_configuration is not None, seed)

    def abort(self) -> None:
        """An engine run cannot be interrupted; a cancelled job's result is refused at commit."""

    def _engine_config(self, config: EmulationConfig, engine: Engine, workdir: str) -> Any:
        """The engine's own config from the job's generic one."""
        options, self.notes = engine_options_for(
            config._backend_options, engine, self.device_type, self._has_gpu, workdir
        )
        if engine is Engine.SV:
            from emu_sv import SVConfig

            return SVConfig(**options)
        from emu_mps import MPSConfig

        return MPSConfig(**options)


def engine_options_for(
    given: dict[str, Any], engine: Engine, device_type: str, has_gpu: bool, workdir: str
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The options of the engine's own config (SVConfig, MPSConfig) from a job's generic one,
    with what is the platform's to decide, and the notes the job gets. Pure: no torch."""
    options = dict(given)
    notes: tuple[str, ...] = ()
    # `num_gpus_to_use` is emu-mps's deprecated spelling of `gpu` (RemoteMPSBackend's).
    gpus = options.pop("num_gpus_to_use", None)
    if gpus is not None and options.get("gpu") is None:
        options["gpu"] = bool(gpus)
    # What the other engine takes but this one does not (EMU_FRESNEL runs either).
    mine = engine_options(DeviceType.EMU_SV if engine is Engine.SV else DeviceType.EMU_MPS)
    for name in set(engine_options(DeviceType.EMU_FRESNEL)) - set(mine):
        options.pop(name, None)
    if options.get("gpu") and not has_gpu:
        notes = (NO_GPU,)
        options["gpu"] = False
    options["log_level"] = logging.WARNING  # the engines print a line per time step
    if engine is Engine.MPS:
        options["autosave_prefix"] = f"{workdir}/emu_mps_save_"
    if device_type == DeviceType.EMU_FRESNEL:
        options["noise_model"] = FRESNEL_NOISE
    return options, notes


def _backend(engine: Engine) -> Any:
    if engine is Engine.SV:
        from emu_sv import SVBackend

        return SVBackend
    from emu_mps import MPSBackend

    return MPSBackend
