"""Pasqal's emulators (emu-sv, emu-mps) as the API and the workers both see them: which engine a
job runs on, which of a backend configuration's options it takes (and within which bounds), what
it will cost in time and memory. Pure: no torch here, so the API checks and prices a job without
the `emulators` extra; only the worker that runs it imports the engine (workers/engines.py).

Time is priced like EMU_FREE's (core/costs.py): seconds per job per (1 + µs of pulse), by atom
count, fitted on the cluster's own finished jobs, with the defaults below before any ran. A
job's engine settings scale it (`cost_scale`: a smaller time step, noise trajectories, a density
matrix); the fit folds each run divided by its scale, so one user's settings never reprice
another's jobs.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core.device_types import DeviceType


class Engine(StrEnum):
    QUTIP = "qutip"
    SV = "emu-sv"
    MPS = "emu-mps"


#: EMU_FRESNEL runs on emu-sv up to this many atoms, beyond on emu-mps: FRESNEL's dephasing is
#: Lindbladian, so emu-sv evolves a density matrix (4**atoms entries: 12 atoms is 256 MB).
FRESNEL_SV_MAX_ATOMS = 10

#: The smallest register each engine runs: emu-mps refuses fewer than 3 qubits.
MIN_ATOMS = {Engine.QUTIP: 1, Engine.SV: 1, Engine.MPS: 3}

#: The largest register any emulator type accepts, whatever memory would allow (FRESNEL's 80 and
#: the 20-100 atoms of real neutral-atom experiments).
MAX_REGISTER = 100

#: What a pool process holds before its job's state: Python, torch, Pulser (measured ~400 MB).
PROCESS_BASE_BYTES = 512 * 2**20

#: Each engine's default time step (ns) and Krylov basis, and emu-mps's bond dimension: the
#: settings the default prices were measured with.
DEFAULT_DT_NS = 10.0
DEFAULT_KRYLOV_DIM = 100
DEFAULT_MAX_BOND_DIM = 1024

#: TDVP's working memory beside the state (environments, Krylov vectors of two-site tensors),
#: as a multiple of the largest state's size (a bound: sweeps on chains stay far below it).
MPS_WORKSPACE = 2

#: Noise types emu-base does not solve with Lindblad operators (emu_base.pulser_adapter): SPAM's
#: measurement errors are applied when sampling, the others draw one Hamiltonian per trajectory.
_NON_LINDBLADIAN = frozenset({"SPAM", "doppler", "amplitude", "detuning", "register"})
#: Most runs of one emulation with noise drawn per run (Pulser's default is 40).
MAX_TRAJECTORIES = 10_000


@dataclass(frozen=True)
class Option:
    """One backend option an engine takes: its type and bounds (inclusive; None: unbounded)."""

    kind: type
    low: float | None = None
    high: float | None = None
    #: For str options, the values allowed.
    choices: tuple[str, ...] = ()


_SV_OPTIONS = {
    "dt": Option(float, 1.0, 1000.0),
    "max_krylov_dim": Option(int, 2, 500),
    "krylov_tolerance": Option(float, 1e-14, 0.1),
    "gpu": Option(bool),
    "interaction_cutoff": Option(float, 0.0, 1e6),
    "log_level": Option(int, 0, 100),
    "solver": Option(str, choices=("default", "montecarlo", "lindblad")),
}
_MPS_OPTIONS = {
    "dt": Option(float, 1.0, 1000.0),
    "precision": Option(float, 1e-12, 0.5),
    "max_bond_dim": Option(int, 1, 16384),
    "max_krylov_dim": Option(int, 2, 500),
    "extra_krylov_tolerance": Option(float, 1e-12, 1.0),
    "gpu": Option(bool),
    # Deprecated by emu-mps for `gpu`, and still what pasqal-cloud's RemoteMPSBackend sends.
    "num_gpus_to_use": Option(int, 0, 64),
    "optimize_qubit_ordering": Option(bool),
    "interaction_cutoff": Option(float, 0.0, 1e6),
    "log_level": Option(int, 0, 100),
    # Checkpoints: written under the worker's own temp dir, removed after the job.
    "autosave_dt": Option(float, 10.0 + 1e-9, math.inf),
    "solver": Option(str, choices=("tdvp", "dmrg")),
}
#: Options that would make the worker write where the sender says: refused, never followed.
_REFUSED = {
    "log_file": "the worker keeps its own logs; a path on its host is not the sender's to choose",
    "autosave_prefix": "checkpoints go to the worker's own temp dir and are removed after the job",
}


def engine_options(device_type: str) -> dict[str, Option]:
    """The engine-specific options a device type's configuration may carry."""
    if device_type == DeviceType.EMU_SV:
        return _SV_OPTIONS
    if device_type == DeviceType.EMU_MPS:
        return _MPS_OPTIONS
    # EMU_FRESNEL picks its engine by register size: an option of either applies where it can.
    return {**_SV_OPTIONS, **_MPS_OPTIONS}


def engine_for(device_type: str, atoms: int) -> Engine:
    if device_type == DeviceType.EMU_SV:
        return Engine.SV
    if device_type == DeviceType.EMU_MPS:
        return Engine.MPS
    if device_type == DeviceType.EMU_FRESNEL:
        return Engine.SV if atoms <= FRESNEL_SV_MAX_ATOMS else Engine.MPS
    return Engine.QUTIP


@dataclass(frozen=True)
class EngineSettings:
    """What of a backend configuration shapes a job's cost and memory on its engine."""

    dt: float = DEFAULT_DT_NS
    max_krylov_dim: int = DEFAULT_KRYLOV_DIM
    max_bond_dim: int = DEFAULT_MAX_BOND_DIM
    #: Noise solved with Lindblad operators (dephasing, relaxation...): a density matrix on SV.
    lindblad: bool = False
    #: Runs of the emulation, each with its own draw of shot-to-shot noise (1 without).
    trajectories: int = 1

    @classmethod
    def read(
        cls,
        device_type: str,
        options: Mapping[str, Any],
        generic: Collection[str],
        noise: Any,
        trajectories: int,
    ) -> EngineSettings:
        """Checks a configuration's engine options (its `_backend_options`, of which `generic`
        are Pulser's own, for every backend) and keeps what prices it, with `noise` the Pulser
        NoiseModel in force (None: none) and `trajectories` its `n_trajectories`. Raises
        ValueError naming the first bad option."""
        allowed = engine_options(device_type)
        for name, value in options.items():
            if name in _REFUSED:
                raise ValueError(f"{name} is not accepted: {_REFUSED[name]}")
            if name in generic:
                continue
            option = allowed.get(name)
            if option is None:
                raise ValueError(
                    f"{name!r} is not an option of {device_type}'s engine; accepted: "
                    f"{', '.join(sorted(allowed))}"
                )
            _check(name, value, option)
        _check("n_trajectories", trajectories, Option(int, 1, MAX_TRAJECTORIES))
        types = tuple(noise.noise_types) if noise is not None else ()
        # As emu-base decides (`_has_stochastic_noise`): noise drawn per trajectory.
        stochastic = any(t in _NON_LINDBLADIAN and t != "SPAM" for t in types) or (
            "SPAM" in types and bool(noise.state_prep_error)
        )
        return cls(
            dt=float(options.get("dt", DEFAULT_DT_NS)),
            max_krylov_dim=int(options.get("max_krylov_dim", DEFAULT_KRYLOV_DIM)),
            max_bond_dim=int(options.get("max_bond_dim", DEFAULT_MAX_BOND_DIM)),
            lindblad=any(t not in _NON_LINDBLADIAN for t in types),
            trajectories=int(trajectories) if stochastic else 1,
        )

    def cost_scale(self, engine: Engine, atoms: int) -> float:
        """This job's run time over the same job's at the engine's defaults."""
        scale = DEFAULT_DT_NS / self.dt * self.trajectories
        if engine is Engine.SV and self.lindblad:
            scale *= sv_default_seconds(2 * atoms) / sv_default_seconds(atoms)
        return scale

    def memory_bytes(self, engine: Engine, atoms: int) -> int:
        """The most a pool process holds running it: the state and the engine's workspace
        (Krylov vectors; TDVP environments), beside the process's own."""
        if engine is Engine.SV:
            amplitudes = 1 << (2 * atoms if self.lindblad else atoms)
            return PROCESS_BASE_BYTES + 16 * amplitudes * (self.max_krylov_dim + 6)
        if engine is Engine.MPS:
            return PROCESS_BASE_BYTES + MPS_WORKSPACE * mps_state_bytes(atoms, self.max_bond_dim)
        return PROCESS_BASE_BYTES


def mps_state_bytes(atoms: int, max_bond_dim: int) -> int:
    """The largest matrix product state of `atoms` qubits whose bonds are at most
    `max_bond_dim`: site i holds (bond left) x 2 x (bond right) complex128 numbers, each bond
    bounded by the Hilbert space on either side of it."""

    def bond(i: int) -> int:  # between sites i-1 and i; 1 at either end
        return min(max_bond_dim, 1 << min(i, atoms - i))

    return sum(16 * bond(i) * 2 * bond(i + 1) for i in range(atoms))


def sv_default_seconds(atoms: int) -> float:
    """emu-sv's seconds per job per (1 + µs of pulse) before the cluster measured any, on 2
    cores at dt 10 ns: a setup, then per step a fixed cost and one proportional to the state
    (measured for a 2 µs sweep: 16 atoms 13.5 s, 18 atoms 37 s, 20 atoms 194 s)."""
    return 0.5 + 6.7e-5 * float(2**atoms)


def mps_default_seconds(atoms: int) -> float:
    """emu-mps's, likewise at its default bond dimension: on a chain's adiabatic sweep the bonds
    stay far below it and TDVP's time grows about with the atoms (measured through the platform
    on 2 cores: 60 atoms 165 s for 2 µs)."""
    return 0.5 + 0.9 * atoms


def default_seconds(engine: Engine, atoms: int) -> float:
    return sv_default_seconds(atoms) if engine is Engine.SV else mps_default_seconds(atoms)


def largest_register(engine: Engine, budget_bytes: int) -> int:
    """The most atoms a job may have within `budget_bytes` of memory (what /devices/specs states
    as the device's `max_atom_num`): for emu-sv at its defaults (the state alone is 2**atoms);
    for emu-mps MAX_REGISTER, as its memory is the bond dimension's a job asks for, checked for
    each job (core/engines.py memory_bytes)."""
    if engine is not Engine.SV:
        return MAX_REGISTER
    defaults = EngineSettings()
    atoms = 1
    while atoms < MAX_REGISTER and defaults.memory_bytes(engine, atoms + 1) <= budget_bytes:
        atoms += 1
    return atoms


def _check(name: str, value: Any, option: Option) -> None:
    if option.kind is bool:
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"{name} must be true, false or null, got {value!r}")
        return
    if option.kind is str:
        if value not in option.choices:
            raise ValueError(f"{name} must be one of {', '.join(option.choices)}, got {value!r}")
        return
    number_ok = isinstance(value, int | float) and not isinstance(value, bool)
    if option.kind is int and not (number_ok and float(value).is_integer()):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not number_ok or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    low = -math.inf if option.low is None else option.low
    high = math.inf if option.high is None else option.high
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low:g} to {high:g}, got {value!r}")
