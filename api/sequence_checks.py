"""The Pulser checks of a submission: each sequence deserialised with Pulser's own schema,
checked against its device (a QPU's every rule, by moving it onto the QPU's device), and built
with each job's variables; what was checked is remembered across requests (a variational loop
sends one sequence again and again with new variables)."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from pulser import Sequence
from pulser.backend.abc import Backend
from pulser.devices._device_datacls import BaseDevice

from core.devices import DeviceSpec
from core.errors import InvalidSequence
from core.lru import Newest
from core.quiet import quiet
from core.sequences import built

#: Builds each checked sequence remembers (the newest; a variable set's canonical JSON is its
#: key, at most a few hundred bytes): 64 sequences x 128 builds stay within a few MB.
BUILDS_PER_SEQUENCE = 128


@dataclass
class Checked:
    """A sequence deserialised and checked against one device (for a QPU: moved onto it), what
    building it with each variable set found, and the lock its builds take: Pulser's `build`
    sets the sequence's variables in place, so two requests must not build one shared sequence
    at once."""

    sequence: Sequence
    atoms: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    max_builds: int = BUILDS_PER_SEQUENCE
    #: Canonical variables (JSON) -> (warnings, duration ns) of a build that passed its checks.
    builds: Newest[str, tuple[list[str], int]] = field(init=False)

    def __post_init__(self) -> None:
        self.builds = Newest(self.max_builds)

    def build(
        self, variables: dict[str, Any], spec: DeviceSpec, what: str
    ) -> tuple[list[str], int]:
        """`_check_build` once per distinct variable set, across requests: building is half of
        a request's time, and sweeps, retries and load tests send the same sets again and
        again. Pure in (sequence, device, variables), so a remembered result is the result. A
        set that fails is not remembered: its error names the job that sent it."""
        key = json.dumps(variables, sort_keys=True, default=str)
        with self.lock:
            found = self.builds.get(key)
            if found is None:
                found = _check_build(self.sequence, variables, spec, what)
                self.builds.put(key, found)
        return list(found[0]), found[1]


class CheckedSequences:
    """Sequences this API process checked, by (sha256 of the text, device type), the newest
    `size` kept: a variational loop submits the same sequence again and again with new
    variables, and each submission reuses the checked form instead of deserialising it (a
    fifth of a request's time) and checking it anew. Shared by the request threads."""

    def __init__(self, size: int = 64) -> None:
        self._items: Newest[tuple[str, str], Checked] = Newest(size)
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Checked | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: tuple[str, str], checked: Checked) -> None:
        with self._lock:
            self._items.put(key, checked)


class SequenceCache:
    """One request's view of its sequences: each distinct text deserialised and checked once
    (or found checked by an earlier request), each distinct variable set built once (or found
    built by an earlier one: Checked.build)."""

    def __init__(self, max_operations: int, shared: CheckedSequences) -> None:
        self.max_operations = max_operations
        self.shared = shared
        #: As deserialized (the device is read from it when the request names none).
        self._raw: dict[str, Sequence] = {}
        #: sha256 of each text seen.
        self._sha: dict[str, str] = {}

    def sha(self, text: str) -> str:
        if text not in self._sha:
            self._sha[text] = hashlib.sha256(text.encode()).hexdigest()
        return self._sha[text]

    def checked(self, text: str, spec: DeviceSpec, what: str) -> Checked:
        key = (self.sha(text), spec.device_type)
        found = self.shared.get(key)
        if found is None:
            sequence = self._deserialize(text, what)
            atoms = len(sequence.get_register(include_mappable=True).qubit_ids)
            if spec.checked_as_qpu:
                # Pulser checks every limit of the QPU's device, the atom count among them.
                sequence = _as_for_qpu(sequence, spec, what)
            elif atoms > spec.max_atoms:
                # A sequence built for any device runs on the emulator, so Pulser's checks
                # are those of its own device: the emulator's cost limit is checked here.
                raise InvalidSequence(
                    f"{what} has {atoms} atoms; {spec.device_type} allows at most {spec.max_atoms}"
                )
            found = Checked(sequence, atoms)
            self.shared.put(key, found)
        return found

    def parse(self, text: str, spec: DeviceSpec, what: str) -> Sequence:
        return self.checked(text, spec, what).sequence

    def device(self, text: str) -> BaseDevice:
        """The device the sequence was built for."""
        device: BaseDevice = self._deserialize(text, "sequence").device
        return device

    def _deserialize(self, text: str, what: str) -> Sequence:
        sequence = self._raw.get(text)
        if sequence is None:
            operations = _count_operations(text)
            if operations > self.max_operations:
                raise InvalidSequence(
                    f"{what} has {operations} operations; "
                    f"at most {self.max_operations} are accepted"
                )
            sequence = self._raw[text] = _deserialize(text, what)
        return sequence


def _count_operations(text: str) -> int:
    """The length of the abstract repr's `operations` list (0 if it is not a sequence at all:
    Pulser's own parse then says what is wrong)."""
    try:
        operations = json.loads(text).get("operations", [])
    except (ValueError, AttributeError, RecursionError):
        return 0
    return len(operations) if isinstance(operations, list) else 0


def _deserialize(text: str, what: str) -> Sequence:
    try:
        with quiet():
            return Sequence.from_abstract_repr(text)
    except Exception as exc:  # jsonschema, Pulser and JSON errors all mean "not a sequence".
        raise InvalidSequence(
            f"{what} is not a valid Pulser sequence (abstract representation): {first_line(exc)}"
        ) from None


def _as_for_qpu(sequence: Sequence, spec: DeviceSpec, what: str) -> Sequence:
    """The sequence on the QPU's own device, checked as the QPU itself would: every channel,
    limit and layout rule of the device (Pulser's strict switch and its QPU validation)."""
    try:
        with quiet():
            on_device = sequence.with_new_device(spec.pulser_device, strict=True)
            Backend.validate_sequence(on_device, mimic_qpu=True)
    except Exception as exc:  # Pulser signals each rule with its own exception type.
        raise InvalidSequence(
            f"{what} cannot run on {spec.device_type}: {first_line(exc)}"
        ) from None
    return on_device


def _check_build(
    sequence: Sequence, variables: dict[str, Any], spec: DeviceSpec, what: str
) -> tuple[list[str], int]:
    """Builds the job's sequence as a worker will, and checks the result against the device.
    Returns warnings for the job (variables the sequence does not declare are ignored, as
    Pulser's own `build` does: qiskit-pasqal-provider sends the values of a sequence it built
    already; missing ones and values of the wrong shape are refused) and its duration (ns)."""
    declared = set(sequence.declared_variables)
    mappable = sequence.is_register_mappable()
    allowed = declared | ({"qubits"} if mappable else set())
    unknown = sorted(set(variables) - allowed)
    notes = []
    if unknown:
        notes.append(
            f"variable(s) {', '.join(unknown)} ignored: the sequence declares "
            f"{', '.join(sorted(allowed)) or 'none'}"
        )
        variables = {name: value for name, value in variables.items() if name in allowed}
    missing = sorted((declared | ({"qubits"} if mappable else set())) - set(variables))
    if missing:
        raise InvalidSequence(f"{what}.variables: missing value(s) for {', '.join(missing)}")
    try:
        with quiet():
            on_device = built(sequence, variables)
    except Exception as exc:  # Pulser's own checks: shapes, channel limits, trap ids...
        raise InvalidSequence(
            f"{what}: the sequence cannot be built with these variables: {first_line(exc)}"
        ) from None
    # An int, not numpy's: it is stored, and FRESNEL's modulated duration comes from numpy.
    duration = int(on_device.get_duration(include_fall_time=True))
    if duration == 0:
        raise InvalidSequence(f"{what}: the sequence is empty (no pulse or delay on any channel)")
    if duration > spec.max_duration_ns:
        raise InvalidSequence(
            f"{what}: the sequence lasts {duration} ns; {spec.device_type} allows at most "
            f"{spec.max_duration_ns} ns"
        )
    return notes, duration


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
