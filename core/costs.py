"""Predicted QPU time: what the scheduling policies (shortest-first) and the ETAs are told a batch
will take, computed at submission and kept on the batch (`predicted_qpu_s`).

- A QPU behind the bridge (FRESNEL): the device's timing, as the virtual QPU runs it: loading
  the batch's register once, then each job's shots at the shot rate (both divided by the
  speedup).
- The emulator (EMU_FREE): seconds per job per (1 + µs of pulse), by atom count, fitted on the
  cluster's own finished jobs: `commit_jobs.lua` folds each first-attempt run into
  `device:{type}:costs` (an exponentially weighted mean, weight 0.2). Before any job of that
  atom count ran, `emulator_default`, measured on a 2-core machine, stands in.
- Pasqal's emulators (EMU_SV, EMU_MPS, EMU_FRESNEL): likewise, with their engines' defaults
  (core/engines.py), and each job scaled by its engine settings (`cost_scale`: a finer time step,
  noise trajectories), which the fit divides out.

A QPU runs `Settings.pool_size` jobs at once, so each job adds its time divided by that to its
batch's hold of the QPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import redis

from core.device_types import DeviceKind
from core.engines import Engine, engine_for
from core.engines import default_seconds as engines_default
from core.keys import Keys
from core.settings import Settings


def emulator_default(atoms: int) -> float:
    """Seconds per job per (1 + µs of pulse) before the cluster measured any: QuTiP's state
    grows as 2**atoms (4 atoms: ~0.05 s a job; 12 atoms: ~0.2 s per µs)."""
    return 0.05 + 5e-5 * float(2**atoms)


@dataclass(frozen=True)
class CostModel:
    """The cost model of one device type."""

    kind: DeviceKind
    #: Jobs a QPU runs at once (Settings.pool_size).
    capacity: int
    shot_rate_hz: float = 5.0
    register_load_s: float = 20.0
    #: Fitted seconds per job per (1 + µs of pulse), by atom count (emulators), of jobs at
    #: their engine's default settings (each run is folded divided by its `cost_scale`).
    fitted: Mapping[int, float] | None = None
    #: Which emulator's defaults stand in before a fit (core/engines.py): "" for EMU_FREE's.
    device_type: str = ""

    def job_seconds(
        self, atoms: int, duration_ns: int, runs: int, cost_scale: float = 1.0
    ) -> float:
        """How long one job runs; `cost_scale`: its engine settings' (core/engines.py)."""
        if self.kind is DeviceKind.QPU:
            return runs / self.shot_rate_hz
        per = (self.fitted or {}).get(atoms) or self.default_seconds(atoms)
        return float(per * (1 + duration_ns / 1000) * cost_scale)

    def default_seconds(self, atoms: int) -> float:
        engine = engine_for(self.device_type, atoms)
        if engine is Engine.QUTIP:
            return emulator_default(atoms)
        return engines_default(engine, atoms)

    def qpu_share_s(self, job_seconds: float) -> float:
        """What one job adds to its batch's hold of the QPU."""
        return job_seconds / self.capacity

    @property
    def batch_base_s(self) -> float:
        """What a batch holds its QPU for before any job: loading its register on a QPU."""
        return self.register_load_s if self.kind is DeviceKind.QPU else 0.0


class Costs:
    """Cost models of the served device types, with the emulator fits read from Redis."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.keys = Keys(settings.namespace)
        self.settings = settings

    def model(self, device_type: str, kind: DeviceKind) -> CostModel:
        s = self.settings
        if kind is DeviceKind.QPU:
            return CostModel(
                kind,
                s.pool_size(device_type),
                shot_rate_hz=s.bridge_shot_rate_hz * s.bridge_speedup,
                register_load_s=s.bridge_register_load_s / s.bridge_speedup,
            )
        raw: dict[str, str] = self.redis.hgetall(self.keys.device_costs(device_type))
        fitted = {int(atoms): float(per) for atoms, per in raw.items()}
        return CostModel(kind, s.pool_size(device_type), fitted=fitted, device_type=device_type)
