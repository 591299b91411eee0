"""What each device type accepts: its Pulser device, whose limits are the only copy of them.

`/devices/specs` serves each spec as a Pulser device abstract repr, so Pulser's
`fetch_available_devices()` deserializes every entry; the API checks each job against the same
device before anything is stored. Names (device types, QPUs) are core/device_types.py, which the
scheduler uses without importing Pulser.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pulser.devices import AnalogDevice, MockDevice
from pulser.devices._device_datacls import BaseDevice

from core.device_types import KIND, DeviceKind, DeviceType
from core.engines import engine_for, largest_register
from core.settings import Settings


@dataclass(frozen=True)
class DeviceSpec:
    """One device type: what it is, what it accepts, how many QPUs serve it."""

    device_type: str
    pulser_device: BaseDevice
    qpu_count: int

    @property
    def kind(self) -> DeviceKind:
        return KIND[DeviceType(self.device_type)]

    @property
    def checked_as_qpu(self) -> bool:
        """Whether its sequences are checked as the QPU checks them (FRESNEL, and EMU_FRESNEL,
        which refuses what FRESNEL would)."""
        return self.kind is DeviceKind.QPU or self.device_type == DeviceType.EMU_FRESNEL

    @property
    def max_atoms(self) -> int:
        return int(self.pulser_device.max_atom_num or 0)

    @property
    def max_runs(self) -> int:
        return int(self.pulser_device.max_runs or 0)

    @property
    def max_duration_ns(self) -> int:
        return int(self.pulser_device.max_sequence_duration or 0)

    def same_specs(self, device: BaseDevice) -> bool:
        """Whether `device` is this one but for its name (Pulser's AnalogDevice and FRESNEL)."""
        return _specs_but_name(device.to_abstract_repr()) == self._specs_but_name

    @cached_property
    def _specs_but_name(self) -> dict[str, Any]:
        return _specs_but_name(self.specs)

    @cached_property
    def specs(self) -> str:
        """The Pulser abstract repr served by /devices/specs."""
        return str(self.pulser_device.to_abstract_repr())


def pulser_device(device_type: DeviceType, settings: Settings) -> BaseDevice:
    """The Pulser device a device type accepts sequences for."""
    if device_type in (DeviceType.EMU_SV, DeviceType.EMU_MPS):
        # Like EMU_FREE, any sequence; the largest register is what a job at the engine's
        # defaults may hold in a pool process's memory (core/engines.py).
        engine = engine_for(device_type, 1)
        budget = settings.emulator_max_memory_mb * 2**20
        return dataclasses.replace(
            MockDevice,
            name="EmuSV" if device_type is DeviceType.EMU_SV else "EmuMPS",
            max_atom_num=largest_register(engine, budget),
            max_runs=settings.emu_free_max_runs,
            max_sequence_duration=settings.emu_free_max_duration_ns,
        )
    if device_type is DeviceType.EMU_FRESNEL:
        # FRESNEL's device and every rule of it, under its name (a sequence built for Fresnel
        # runs here unchanged); its noise is the virtual QPU's (core/sequences.py).
        return dataclasses.replace(AnalogDevice, name="Fresnel")
    if device_type is DeviceType.EMU_FREE:
        # The QuTiP emulator runs sequences built for any device; its own limits are about cost
        # (a state vector of 2**atoms amplitudes), so it is served as a virtual device.
        return dataclasses.replace(
            MockDevice,
            name="EmuFree",
            max_atom_num=settings.emu_free_max_atoms,
            max_runs=settings.emu_free_max_runs,
            max_sequence_duration=settings.emu_free_max_duration_ns,
        )
    # The QPU behind the bridge: Pulser's AnalogDevice under the name users build for, with
    # its own limits (80 atoms, 6 µs, 2000 runs, registers from a layout).
    return dataclasses.replace(AnalogDevice, name="Fresnel")


def device_registry(settings: Settings) -> dict[str, DeviceSpec]:
    """Every served device type, keyed by its SDK `DeviceTypeName`."""
    return {
        device_type: DeviceSpec(device_type, pulser_device(DeviceType(device_type), settings), n)
        for device_type, n in settings.qpus.items()
    }


def _specs_but_name(abstract_repr: str) -> dict[str, Any]:
    specs: dict[str, Any] = json.loads(abstract_repr)
    specs.pop("name", None)
    return specs
