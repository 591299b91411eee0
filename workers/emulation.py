"""`run_emulation`: one job on the QuTiP emulator, as a pure function.

It knows nothing of Redis or Celery (DESIGN rule 5): a sequence in, a results document out. The
API validated the inputs already; anything that still goes wrong raises and the task records the
message in the job's `errors`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from pulser.backend import BitStrings, Results
from pulser.backend.config import EmulationConfig
from pulser_simulation import QutipBackendV2

from core.quiet import quiet
from core.sequences import SPAM_NOISE, job_sequence


@dataclass(frozen=True)
class EmulationOptions:
    """What besides the sequence shapes a run: the batch's SDK `configuration` and Pulser
    `backend_configuration` (an EmulationConfig abstract repr)."""

    backend_configuration: str | None = None
    with_noise: bool = False


def run_emulation(
    sequence_json: str,
    variables: dict[str, Any] | None,
    runs: int,
    options: EmulationOptions,
    seed: int | None = None,
) -> dict[str, Any]:
    """Builds the sequence with `variables`, emulates it once and samples `runs` shots.

    Returns the results document served by the results link: `counter` (bitstring -> count,
    summing to `runs`, bits in register order), `raw` (one bitstring per shot), and, when a
    backend configuration was given, `serialised_results` (a Pulser `Results` abstract repr
    with every observable it asked for).
    """
    sequence = job_sequence(sequence_json, variables)

    config = job_config(options.backend_configuration, runs)
    if options.with_noise and not config.noise_model.noise_types:
        config = config.with_changes(noise_model=SPAM_NOISE)
    if seed is not None:
        # Pulser samples shots (and SPAM flips) from numpy's global generator.
        np.random.seed(seed % 2**32)
    with quiet():  # QuTiP and Pulser warn about solver details, not the user's business
        results = QutipBackendV2(sequence, config=config).run()

    return results_document(results, options.backend_configuration is not None, seed)


def results_document(results: Results, serialised: bool, seed: int | None) -> dict[str, Any]:
    """What the results link serves: the final bitstrings as `counter` and `raw`, and with a
    backend configuration the whole `Results` as `serialised_results`."""
    counter = Counter({str(k): int(v) for k, v in results.final_bitstrings.items()})
    document: dict[str, Any] = {"counter": dict(counter), "raw": _shots(counter, seed)}
    if serialised:
        document["serialised_results"] = results.to_abstract_repr()
    return document


def job_config(backend_configuration: str | None, runs: int) -> EmulationConfig:
    """The user's config (or a plain one) whose bitstrings are sampled `runs` times at the end of
    the sequence: the job's `runs` is the shot count, whatever the config said."""
    if backend_configuration is not None:
        config = EmulationConfig.from_abstract_repr(backend_configuration)
    else:
        config = EmulationConfig(observables=[BitStrings(num_shots=runs)])
    observables = []
    for observable in config.observables:
        if isinstance(observable, BitStrings):
            times = observable.evaluation_times
            observable = BitStrings(
                evaluation_times=None if times is None else sorted({*times, 1.0}),
                num_shots=runs,
                one_state=observable.one_state,
            )
        observables.append(observable)
    if not any(isinstance(o, BitStrings) for o in observables):
        observables.append(BitStrings(evaluation_times=[1.0], num_shots=runs))
    return config.with_changes(observables=observables)


def _shots(counter: Counter[str], seed: int | None) -> list[str]:
    """One bitstring per shot. The emulator samples shots independently, so a random order of
    the counted outcomes is distributed exactly as the shots were drawn."""
    shots = list(counter.elements())
    np.random.default_rng(seed).shuffle(shots)
    return shots
