"""`run_emulation`, the pure function under every worker, tested directly."""

from __future__ import annotations

from collections import Counter

import pytest
from pulser.backend import BitStrings, Occupation
from pulser.backend.config import EmulationConfig
from pulser.backend.results import Results

from core.sequences import PARSED_SEQUENCES, job_sequence, parsed
from tests import sequences
from workers.emulation import EmulationOptions, run_emulation


def test_samples_exactly_runs_shots_in_register_order():
    document = run_emulation(
        sequences.parametrized(), {"omega_max": 6}, 123, EmulationOptions(), seed=1
    )
    assert sum(document["counter"].values()) == 123
    assert Counter(document["raw"]) == Counter(document["counter"])
    assert {len(bits) for bits in document["raw"]} == {2}
    assert "serialised_results" not in document


def test_backend_configuration_observables_and_shot_override():
    config = EmulationConfig(
        observables=[BitStrings(num_shots=999), Occupation(evaluation_times=[0.5, 1.0])]
    ).to_abstract_repr()
    document = run_emulation(
        sequences.parametrized(),
        {"omega_max": 6},
        17,
        EmulationOptions(backend_configuration=config),
    )
    results = Results.from_abstract_repr(document["serialised_results"])
    assert sum(results.final_bitstrings.values()) == 17  # the job's runs, not the config's 999
    assert set(results.get_result_tags()) == {"occupation", "bitstrings"}
    assert document["counter"] == dict(results.final_bitstrings)


def test_noise_changes_statistics_of_a_deterministic_sequence():
    # Without noise a sequence with no drive leaves every atom in the ground state.
    quiet = sequences.fixed(duration=100, atoms=2, amplitude=0.0)
    clean = run_emulation(quiet, None, 2000, EmulationOptions())
    noisy = run_emulation(quiet, None, 2000, EmulationOptions(with_noise=True))
    assert clean["counter"] == {"00": 2000}
    assert noisy["counter"].get("00", 0) < 2000  # SPAM errors flip some measurements


def test_mappable_register_is_built_with_the_chosen_traps():
    document = run_emulation(
        sequences.mappable(), {"qubits": {"q0": 0, "q1": 3}}, 9, EmulationOptions()
    )
    assert sum(document["counter"].values()) == 9


def test_unbuildable_job_raises():
    with pytest.raises(TypeError, match="omega_max"):
        run_emulation(sequences.parametrized(), {}, 5, EmulationOptions())


def test_a_seed_gives_the_same_shots_and_another_seed_others():
    """A load test's `tweezer_seed` (core/hints.py) makes a replay's counts the same."""
    sequence, variables = sequences.parametrized(), {"omega_max": 6, "tweezer_seed": 1}

    def shots(seed: int) -> list[str]:
        return run_emulation(sequence, variables, 200, EmulationOptions(), seed)["raw"]

    assert shots(7) == shots(7)
    assert shots(7) != shots(8)


def test_a_worker_parses_each_sequence_once_and_builds_each_job_afresh():
    """The jobs of a batch share one sequence text: parsed once per process (a bounded cache
    by content), then built with each job's own variables, which never leak into another's."""
    parsed.cache_clear()
    text = sequences.parametrized()
    low = job_sequence(text, {"omega_max": 6})
    high = job_sequence(text, {"omega_max": 10.5})
    again = job_sequence(text, {"omega_max": 6})
    assert parsed.cache_info().misses == 1 and parsed.cache_info().hits == 2

    def amplitude(sequence) -> float:
        [pulse] = [
            slot.type for slot in sequence._schedule["rydberg"] if hasattr(slot.type, "amplitude")
        ]
        return float(pulse.amplitude.samples[0])

    assert (amplitude(low), amplitude(high), amplitude(again)) == (6.0, 10.5, 6.0)
    assert parsed.cache_info().maxsize == PARSED_SEQUENCES
    # Emulated from the cached sequence, a job gets exactly its shots, again and again.
    for _ in range(2):
        document = run_emulation(text, {"omega_max": 6}, 25, EmulationOptions(), seed=3)
        assert sum(document["counter"].values()) == 25
