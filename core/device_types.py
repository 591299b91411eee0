"""The device types a cluster can serve and how its QPUs are named: plain names, no Pulser.

The scheduler, the workers, the API and the CLI all learn device types and QPU names here; what
each type accepts (its Pulser device and limits) is core/devices.py, which only the processes
that check or run sequences import.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class DeviceType(StrEnum):
    """The SDK's `DeviceTypeName`s this platform serves."""

    #: The QuTiP emulator (pulser-simulation), run by the workers themselves.
    EMU_FREE = "EMU_FREE"
    #: The QPU behind the hardware bridge (workers/bridge.py and a driver).
    FRESNEL = "FRESNEL"


class DeviceKind(StrEnum):
    """How a device type's jobs run."""

    EMULATOR = "emulator"
    QPU = "qpu"


KIND = {DeviceType.EMU_FREE: DeviceKind.EMULATOR, DeviceType.FRESNEL: DeviceKind.QPU}

#: QPUs per device type when `TWEEZER_QPUS` says nothing.
DEFAULT_QPUS = {DeviceType.EMU_FREE.value: 1, DeviceType.FRESNEL.value: 1}


def qpu_name(device_type: str, index: int) -> str:
    """`EMU_FREE`, 0 -> `EMU_FREE-0`: a QPU is a Celery queue and a lock of its own."""
    return f"{device_type}-{index}"


def device_type_of_qpu(qpu: str) -> str:
    """`EMU_FREE-0` -> `EMU_FREE`."""
    return qpu.rsplit("-", 1)[0]


def kind_of_qpu(qpu: str) -> DeviceKind:
    """`EMU_FREE-0` -> EMULATOR, `FRESNEL-0` -> QPU."""
    return KIND[DeviceType(device_type_of_qpu(qpu))]


def qpu_names(qpus: Mapping[str, int]) -> list[str]:
    """Every QPU of `Settings.qpus` (device type -> count), in order."""
    return [qpu_name(device_type, i) for device_type, count in qpus.items() for i in range(count)]
