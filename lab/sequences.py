"""The Pulser sequences load tests send: `atoms` atoms under one constant pulse of `pulse_ns`
(the emulator's cost grows with both), for any device type, built once per shape."""

from __future__ import annotations

import threading

from core.device_types import DeviceType
from core.settings import Settings

_SEQUENCES: dict[tuple[str, int, int], str] = {}
_SEQUENCES_LOCK = threading.Lock()


def sequence_for(device_type: str, atoms: int, pulse_ns: int, settings: Settings) -> str:
    """A sequence of `atoms` atoms under a constant pulse of `pulse_ns`, for the device type
    (the emulator's cost grows with both); built once per shape."""
    key = (device_type, atoms, pulse_ns)
    with _SEQUENCES_LOCK:
        if key not in _SEQUENCES:
            _SEQUENCES[key] = _build_sequence(device_type, atoms, pulse_ns, settings)
        return _SEQUENCES[key]


def _build_sequence(device_type: str, atoms: int, pulse_ns: int, settings: Settings) -> str:
    from pulser import Pulse, Register, Sequence
    from pulser.devices import MockDevice
    from pulser.waveforms import ConstantWaveform

    from core.devices import pulser_device

    if device_type == DeviceType.FRESNEL:
        device = pulser_device(DeviceType.FRESNEL, settings)
        layout = device.pre_calibrated_layouts[0]  # type: ignore[attr-defined]
        register = layout.define_register(*range(atoms), qubit_ids=[f"q{i}" for i in range(atoms)])
    else:
        device = MockDevice
        register = Register.from_coordinates([(6.0 * i, 0.0) for i in range(atoms)], prefix="q")
    sequence = Sequence(register, device)
    sequence.declare_channel("rydberg", "rydberg_global")
    sequence.add(Pulse.ConstantDetuning(ConstantWaveform(pulse_ns, 1.0), 0.0, 0.0), "rydberg")
    sequence.measure("ground-rydberg")
    return str(sequence.to_abstract_repr())
