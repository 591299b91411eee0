"""Submission checks, without a cluster: a sequence checked by one request is reused by the
next (a variational loop's same sequence with new variables), bounded, per device type; each
distinct variable set is built once across requests (bounded; failures are not remembered);
and the shared sequence is built by one request thread at a time, so no request sees another's
variables."""

from __future__ import annotations

import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from pulser import Pulse, Register, Sequence
from pulser.devices import MockDevice

import api.sequence_checks as sequence_checks
from api.schemas import CreateBatchIn
from api.sequence_checks import Checked, CheckedSequences
from api.submission import Submission
from core.devices import device_registry
from core.errors import InvalidSequence
from core.records import Principal
from core.settings import Settings
from tests import sequences

SETTINGS = Settings(qpus={"EMU_FREE": 1})
PROJECT = str(uuid.uuid4())
ME = Principal("u", frozenset({PROJECT}))


def body(text: str, *variables: dict) -> CreateBatchIn:
    return CreateBatchIn(
        sequence_builder=text,
        jobs=[{"runs": 5, "variables": v} for v in variables],
        device_type="EMU_FREE",
        project_id=PROJECT,
    )


def waiting(length_var: str = "wait") -> str:
    """A sequence whose duration is its variable: a delay of `wait` ns, then a pulse."""
    sequence = Sequence(Register.rectangle(1, 2, spacing=6, prefix="q"), MockDevice)
    sequence.declare_channel("rydberg", "rydberg_global")
    wait = sequence.declare_variable(length_var, dtype=int)
    sequence.delay(wait, "rydberg")
    sequence.add(Pulse.ConstantPulse(100, 1.0, 0.0, 0.0), "rydberg")
    return str(sequence.to_abstract_repr())


def test_a_sequence_is_deserialised_once_across_requests(monkeypatch):
    calls = []
    real = sequence_checks._deserialize
    monkeypatch.setattr(sequence_checks, "_deserialize", lambda t, w: calls.append(w) or real(t, w))
    checks = Submission(SETTINGS, device_registry(SETTINGS))
    text = sequences.parametrized()
    for omega in (6, 7, 8):  # three rounds of a variational loop
        _, jobs = checks.new_batch(body(text, {"omega_max": omega}, {"omega_max": 6}), ME, "LOW")
        assert [j.variables for j in jobs] == [{"omega_max": omega}, {"omega_max": 6}]
    assert len(calls) == 1
    # A bad variable set is still refused on a checked sequence, naming its job.
    with pytest.raises(InvalidSequence, match=r"jobs\[1\].variables: missing value"):
        checks.new_batch(body(text, {"omega_max": 6}, {}), ME, "LOW")


def test_the_shared_checks_are_bounded_and_per_device_type():
    shared = CheckedSequences(size=2)
    entry = Checked(Sequence.from_abstract_repr(sequences.fixed()), 1)
    for key in [("a", "EMU_FREE"), ("a", "FRESNEL"), ("b", "EMU_FREE")]:
        shared.put(key, entry)
    assert shared.get(("a", "EMU_FREE")) is None  # the oldest went
    assert shared.get(("a", "FRESNEL")) is entry and shared.get(("b", "EMU_FREE")) is entry


def test_concurrent_requests_build_the_shared_sequence_with_their_own_variables():
    checks = Submission(SETTINGS, device_registry(SETTINGS))
    text = waiting()
    checks.new_batch(body(text, {"wait": 4}), ME, "LOW")  # checked and shared

    def submit(wait: int) -> int:
        _, [job] = checks.new_batch(body(text, {"wait": wait}), ME, "LOW")
        assert job.duration_ns is not None
        return job.duration_ns

    waits = [4 * (i + 1) for i in range(200)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads preempt each other mid-build as often as they can
    try:
        with ThreadPoolExecutor(8) as pool:
            durations = list(pool.map(submit, waits))
    finally:
        sys.setswitchinterval(switch)
    assert durations == [w + 100 for w in waits]


def test_each_variable_set_is_built_once_across_requests(monkeypatch):
    built = []
    real = sequence_checks._check_build
    monkeypatch.setattr(
        sequence_checks,
        "_check_build",
        lambda seq, v, spec, what: built.append(v) or real(seq, v, spec, what),
    )
    checks = Submission(SETTINGS, device_registry(SETTINGS))
    text = waiting()
    for _ in range(3):  # a sweep sent again, and again
        _, jobs = checks.new_batch(body(text, {"wait": 8}, {"wait": 12}, {"wait": 8}), ME, "LOW")
        assert [j.duration_ns for j in jobs] == [108, 112, 108]
    assert built == [{"wait": 8}, {"wait": 12}]
    # A set that fails is not remembered: each request that sends it is refused, naming its job.
    for _ in range(2):
        with pytest.raises(InvalidSequence, match=r"jobs\[1\]: the sequence cannot be built"):
            checks.new_batch(body(text, {"wait": 8}, {"wait": "long"}), ME, "LOW")
    assert built[2:] == [{"wait": "long"}] * 2


def test_the_remembered_builds_are_bounded_and_their_warnings_are_copies():
    entry = Checked(Sequence.from_abstract_repr(waiting()), 2, max_builds=2)
    spec = device_registry(SETTINGS)["EMU_FREE"]
    for wait in (4, 8, 12):
        entry.build({"wait": wait}, spec, "jobs[0]")
    assert list(entry.builds) == ['{"wait": 8}', '{"wait": 12}']  # the oldest went
    notes, _ = entry.build({"wait": 8, "extra": 1}, spec, "jobs[0]")
    assert notes and "extra" in notes[0]
    notes.append("changed by a caller")
    assert entry.build({"wait": 8, "extra": 1}, spec, "jobs[0]")[0] == notes[:1]


def test_quiet_silences_only_its_own_thread():
    """Pulser's warnings are dropped in the thread that checks a request, while another thread's
    warnings still show (catch_warnings would swap the filters under both)."""
    import threading
    import warnings

    from core.quiet import quiet

    inside, release = threading.Event(), threading.Event()

    def checking() -> None:
        with quiet():
            inside.set()
            release.wait(5)
            warnings.warn("from the quiet thread", UserWarning, stacklevel=1)

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        thread = threading.Thread(target=checking)
        thread.start()
        assert inside.wait(5)
        warnings.warn("from another thread", UserWarning, stacklevel=1)
        release.set()
        thread.join()
    assert [str(w.message) for w in shown] == ["from another thread"]


def test_a_batch_without_a_device_type_built_for_fresnel_goes_to_the_qpu_not_its_emulation():
    """FRESNEL and EMU_FRESNEL both serve Fresnel's device: Pulser's QPUBackend (no device
    type) means the QPU, whichever order `--qpus` names them in."""
    settings = SETTINGS.replace(qpus={"EMU_FRESNEL": 1, "FRESNEL": 1})
    registry = device_registry(settings)
    text = sequences.fresnel(registry["FRESNEL"].pulser_device).to_abstract_repr()
    request = CreateBatchIn(
        sequence_builder=text,
        jobs=[{"runs": 10, "variables": {"omega_max": 1.0}}],
        project_id=PROJECT,
    )
    batch, _ = Submission(settings, registry).new_batch(request, ME, "MEDIUM")
    assert batch.device_type == "FRESNEL"
    on_emulation = request.model_copy(update={"device_type": "EMU_FRESNEL"})
    batch, [job] = Submission(settings, registry).new_batch(on_emulation, ME, "MEDIUM")
    assert batch.device_type == "EMU_FRESNEL" and job.cost_scale > 1  # a density matrix
