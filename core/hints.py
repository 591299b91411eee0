"""Job variables a load test sets for the devices (`tweezer load`), which Pulser ignores: no
sequence declares them, and the API stores undeclared variables with a warning."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The QPU seconds a synthetic device takes for the job (`tweezer up --synthetic-devices`).
QPU_SECONDS_VARIABLE = "tweezer_qpu_s"
#: The seed of the job's sampled shots (the emulator's and a synthetic device's): derived from
#: the workload's seed and the job's place in it, so a replay gives the same counts.
SEED_VARIABLE = "tweezer_seed"


def given_qpu_seconds(variables: Mapping[str, Any] | None) -> float | None:
    """The QPU seconds a load test gives a job (QPU_SECONDS_VARIABLE), or None."""
    given = (variables or {}).get(QPU_SECONDS_VARIABLE)
    if isinstance(given, bool) or not isinstance(given, int | float) or given < 0:
        return None
    return float(given)
