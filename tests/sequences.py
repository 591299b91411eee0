"""Pulser sequences the tests submit: 1-2 atoms and short pulses, so QuTiP stays fast."""

from __future__ import annotations

from pulser import Pulse, Register, Sequence
from pulser.devices import MockDevice
from pulser.register import RegisterLayout
from pulser.waveforms import ConstantWaveform

from cli.demo import guide_sequence


def parametrized() -> str:
    """The guide's sequence (the demo's too): two atoms under a pulse of amplitude `omega_max`
    (rad/µs), so the guide's own values (6 and 10.5) fit AnalogDevice's channel."""
    return guide_sequence()


def fixed(duration: int = 100, atoms: int = 1, amplitude: float = 1.0) -> str:
    """A non-parametrized sequence (for job-level sequences)."""
    register = Register.rectangle(1, atoms, spacing=6, prefix="q")
    sequence = Sequence(register, MockDevice)
    sequence.declare_channel("rydberg", "rydberg_global")
    sequence.add(Pulse.ConstantPulse(duration, amplitude, 0.0, 0.0), "rydberg")
    return str(sequence.to_abstract_repr())


def many_pulses(count: int) -> str:
    """`count` short pulses in a row (each one operation of the abstract repr)."""
    register = Register.rectangle(1, 1, prefix="q")
    sequence = Sequence(register, MockDevice)
    sequence.declare_channel("rydberg", "rydberg_global")
    for _ in range(count):
        sequence.add(Pulse.ConstantPulse(4, 1.0, 0.0, 0.0), "rydberg")
    return str(sequence.to_abstract_repr())


def slow() -> str:
    """10 atoms for 12 µs: a few seconds of QuTiP, long enough to kill a worker mid-job."""
    return fixed(duration=12_000, atoms=10)


def mappable() -> str:
    """A mappable register: jobs choose traps with the `qubits` variable."""
    layout = RegisterLayout([(0, 0), (6, 0), (0, 6), (6, 6)])
    register = layout.make_mappable_register(2, prefix="q")
    sequence = Sequence(register, MockDevice)
    sequence.declare_channel("rydberg", "rydberg_global")
    sequence.add(Pulse.ConstantDetuning(ConstantWaveform(100, 1.0), 0.0, 0.0), "rydberg")
    return str(sequence.to_abstract_repr())


def fresnel(device: object, duration: int = 500, atoms: int = 2) -> Sequence:
    """A sequence for the served FRESNEL device: a register from its calibrated layout, a
    global pulse of amplitude `omega_max`."""
    layout = device.pre_calibrated_layouts[0]  # type: ignore[attr-defined]
    register = layout.define_register(*range(atoms), qubit_ids=[f"q{i}" for i in range(atoms)])
    sequence = Sequence(register, device)
    sequence.declare_channel("rydberg", "rydberg_global")
    omega_max = sequence.declare_variable("omega_max")
    sequence.add(Pulse.ConstantDetuning(ConstantWaveform(duration, omega_max), 0.0, 0.0), "rydberg")
    sequence.measure("ground-rydberg")
    return sequence
