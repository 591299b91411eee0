"""Job variables a load test sets for the devices (`tweezer load`), which Pulser ignores: no
sequence declares them, and the API stores undeclared variables with a warning."""

from __future__ import annotations

#: The QPU seconds a synthetic device takes for the job (`tweezer up --synthetic-devices`).
QPU_SECONDS_VARIABLE = "tweezer_qpu_s"
#: The seed of the job's sampled shots (the emulator's and a synthetic device's): derived from
#: the workload's seed and the job's place in it, so a replay gives the same counts.
SEED_VARIABLE = "tweezer_seed"
