"""The device types this cluster serves, their Pulser specs and their limits.

`/devices/specs` serves each spec as a Pulser device abstract repr, so Pulser's
`fetch_available_devices()` deserializes every entry; the API checks each job against the limits
before anything is stored. QPU names (`EMU_FREE-0`, …) are derived from `Settings.qpus`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pulser.devices import AnalogDevice, MockDevice
from pulser.devices._device_datacls import BaseDevice

from core.settings import Settings

EMULATOR = "emulator"
QPU = "qpu"


@dataclass(frozen=True)
class DeviceSpec:
    """One device type: what it is, what it accepts, how many QPUs serve it."""

    device_type: str
    kind: str
    pulser_device: BaseDevice
    max_atoms: int
    max_runs: int
    max_duration_ns: int
    qpu_count: int

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

    @property
    def qpus(self) -> list[str]:
        return [qpu_name(self.device_type, index) for index in range(self.qpu_count)]


def qpu_name(device_type: str, index: int) -> str:
    return f"{device_type}-{index}"


def device_type_of_qpu(qpu: str) -> str:
    """`EMU_FREE-0` -> `EMU_FREE`."""
    return qpu.rsplit("-", 1)[0]


def device_registry(settings: Settings) -> dict[str, DeviceSpec]:
    """Every served device type, keyed by its SDK `DeviceTypeName`."""
    registry = {}
    if "EMU_FREE" in settings.qpus:
        # The QuTiP emulator runs sequences built for any device; its own limits are about cost
        # (a state vector of 2**atoms amplitudes), so it is served as a virtual device.
        emu_free = dataclasses.replace(
            MockDevice,
            name="EmuFree",
            max_atom_num=settings.emu_free_max_atoms,
            max_runs=settings.emu_free_max_runs,
            max_sequence_duration=settings.emu_free_max_duration_ns,
        )
        registry["EMU_FREE"] = DeviceSpec(
            device_type="EMU_FREE",
            kind=EMULATOR,
            pulser_device=emu_free,
            max_atoms=settings.emu_free_max_atoms,
            max_runs=settings.emu_free_max_runs,
            max_duration_ns=settings.emu_free_max_duration_ns,
            qpu_count=settings.qpus["EMU_FREE"],
        )
    if "FRESNEL" in settings.qpus:
        # The QPU behind the bridge: Pulser's AnalogDevice under the name users build for, with
        # its own limits (80 atoms, 6 µs, 2000 runs, registers from a layout).
        fresnel = dataclasses.replace(AnalogDevice, name="Fresnel")
        registry["FRESNEL"] = DeviceSpec(
            device_type="FRESNEL",
            kind=QPU,
            pulser_device=fresnel,
            max_atoms=int(fresnel.max_atom_num or 0),
            max_runs=int(fresnel.max_runs or 0),
            max_duration_ns=int(fresnel.max_sequence_duration or 0),
            qpu_count=settings.qpus["FRESNEL"],
        )
    return registry


def _specs_but_name(abstract_repr: str) -> dict[str, Any]:
    specs: dict[str, Any] = json.loads(abstract_repr)
    specs.pop("name", None)
    return specs


def all_qpus(settings: Settings) -> list[str]:
    return [qpu for spec in device_registry(settings).values() for qpu in spec.qpus]
