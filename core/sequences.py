"""How a job's Pulser sequence becomes the one that runs, and the SPAM noise numbers: shared by
the API's checks, the emulator and the bridge so that all three run the same thing.

Imports Pulser: the scheduler never imports this module.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pulser import NoiseModel, Sequence

from core.quiet import quiet

#: State preparation error (eta), false positives (epsilon) and false negatives (epsilon'):
#: Pulser's historical defaults, the noise of `EmuFreeConfig(with_noise=True)` and part of
#: the virtual QPU's.
SPAM_NOISE = NoiseModel(state_prep_error=0.005, p_false_pos=0.01, p_false_neg=0.05)

#: FRESNEL's noise: what makes the virtual QPU's counts imperfect like a real one's, and what
#: EMU_FRESNEL emulates. How many runs it is drawn over is the config's `n_trajectories` (one
#: unless a job's config says otherwise), not the noise model's deprecated `runs`.
FRESNEL_NOISE = NoiseModel(
    state_prep_error=SPAM_NOISE.state_prep_error,
    p_false_pos=SPAM_NOISE.p_false_pos,
    p_false_neg=SPAM_NOISE.p_false_neg,
    dephasing_rate=0.05,
)


def built(sequence: Sequence, variables: dict[str, Any] | None) -> Sequence:
    """The sequence a job runs: built with its variables when it declares any or when its
    register is mappable (the `qubits` variable places it), else as it is."""
    if variables or sequence.is_parametrized() or sequence.is_register_mappable():
        with quiet():  # Pulser warns about details users cannot act on here
            return sequence.build(**(variables or {}))
    return sequence


#: Sequences a worker process keeps parsed. The jobs of a batch (and the batches of a
#: variational loop) share one sequence text: each is parsed once per process, not once per
#: job (parsing is a fifth of a four-atom emulation). Bounded: a worker's memory.
PARSED_SEQUENCES = 32


@lru_cache(maxsize=PARSED_SEQUENCES)
def parsed(text: str) -> Sequence:
    """A stored sequence (abstract repr), deserialised; shared, so never changed: building
    with variables makes a new sequence."""
    return Sequence.from_abstract_repr(text)


def job_sequence(text: str, variables: dict[str, Any] | None) -> Sequence:
    """A stored sequence (abstract repr) built for one job."""
    return built(parsed(text), variables)
