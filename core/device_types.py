"""The device types a cluster can serve and how its QPUs are named: plain names, no Pulser.

The scheduler, the workers, the API and the CLI all learn device types and QPU names here; what
each type accepts (its Pulser device and limits) is core/devices.py, which only the processes
that check or run sequences import.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from enum import StrEnum


class DeviceType(StrEnum):
    """The SDK's `DeviceTypeName`s this platform serves."""

    #: The QuTiP emulator (pulser-simulation), run by the workers themselves.
    EMU_FREE = "EMU_FREE"
    #: Pasqal's state-vector emulator (emu-sv, PyTorch): the `emulators` extra.
    EMU_SV = "EMU_SV"
    #: Pasqal's matrix-product-state emulator (emu-mps, PyTorch): the `emulators` extra.
    EMU_MPS = "EMU_MPS"
    #: FRESNEL's device, checks and noise, emulated (emu-sv or emu-mps by register size).
    EMU_FRESNEL = "EMU_FRESNEL"
    #: The QPU behind the hardware bridge (workers/bridge.py and a driver).
    FRESNEL = "FRESNEL"


class DeviceKind(StrEnum):
    """How a device type's jobs run."""

    EMULATOR = "emulator"
    QPU = "qpu"


KIND = {
    DeviceType.EMU_FREE: DeviceKind.EMULATOR,
    DeviceType.EMU_SV: DeviceKind.EMULATOR,
    DeviceType.EMU_MPS: DeviceKind.EMULATOR,
    DeviceType.EMU_FRESNEL: DeviceKind.EMULATOR,
    DeviceType.FRESNEL: DeviceKind.QPU,
}

#: Device types whose engines are Pasqal's PyTorch emulators: only a host with the `emulators`
#: extra installed runs their workers (torch and its libraries are ~0.2-3 GB).
TORCH_ENGINES = frozenset({DeviceType.EMU_SV, DeviceType.EMU_MPS, DeviceType.EMU_FRESNEL})

#: The command that installs them, in every message that asks for it.
EMULATORS_EXTRA = "pip install 'tweezer[emulators]' (in a checkout: pip install -e '.[emulators]')"

#: The SDK's device types Pasqal retired, and what replaces each.
RETIRED = {"EMU_TN": DeviceType.EMU_MPS}

#: QPUs per device type when `TWEEZER_QPUS` says nothing.
DEFAULT_QPUS = {DeviceType.EMU_FREE.value: 1, DeviceType.FRESNEL.value: 1}


def qpu_name(device_type: str, index: int) -> str:
    """`EMU_FREE`, 0 -> `EMU_FREE-0`: a QPU is a Celery queue and a lock of its own."""
    return f"{device_type}-{index}"


def device_type_of_qpu(qpu: str) -> str:
    """`EMU_FREE-0` -> `EMU_FREE`."""
    return qpu.rsplit("-", 1)[0]


def missing_engines(device_types: Iterable[str]) -> str | None:
    """Why this host cannot run the workers of `device_types` (None if it can): Pasqal's
    emulators are an extra, and a worker without them would fail every job."""
    wanted = sorted(t for t in device_types if t in TORCH_ENGINES)
    if not wanted:
        return None
    missing = [m for m in ("emu_sv", "emu_mps", "torch") if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (
        f"{', '.join(wanted)} run on Pasqal's emulators (emu-sv, emu-mps), which are not "
        f"installed here ({', '.join(missing)} missing): {EMULATORS_EXTRA}"
    )


def retired_message(device_type: str) -> str | None:
    """Why a retired device type is not served, and what to send instead; None if it is not."""
    successor = RETIRED.get(device_type)
    if successor is None:
        return None
    return (
        f"device_type {device_type} is deprecated by Pasqal and not served: "
        f"use {successor.value} (the same tensor-network emulation, in emu-mps)"
    )


def kind_of_qpu(qpu: str) -> DeviceKind:
    """`EMU_FREE-0` -> EMULATOR, `FRESNEL-0` -> QPU."""
    return KIND[DeviceType(device_type_of_qpu(qpu))]


def qpu_names(qpus: Mapping[str, int]) -> list[str]:
    """Every QPU of `Settings.qpus` (device type -> count), in order."""
    return [qpu_name(device_type, i) for device_type, count in qpus.items() for i in range(count)]
