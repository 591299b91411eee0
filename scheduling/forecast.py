"""When will a waiting batch start? The live policy run forward in the simulator from the
cluster's current state: the batches waiting and their predicted QPU time, what the running
batches have left of theirs, each project's usage. The real policy, not an average.

The scheduler writes each device type's forecast to Redis every `forecast_interval_s`
(core/forecasts.py); the API shows it on the batch (`queue_position`, `estimated_start_at`,
`estimated_end_at`) and `tweezer queue` as a table. A forecast assumes the device stays UP and
nothing more is submitted.
"""

from __future__ import annotations

from core.device_types import qpu_name
from core.forecasts import Forecast
from scheduling.policies import Policy
from scheduling.simulator import Busy, SimBatch, Simulation
from scheduling.snapshot import Snapshot

#: A running batch past its predicted end is expected to end this much later still.
OVERRUN_S = 1.0
#: Of each project's queue per level, the batches a forecast looks at.
FORECAST_WINDOW = 1000


def forecast(
    policy: Policy, snapshot: Snapshot, qpu_count: int, half_life_s: float
) -> dict[str, Forecast]:
    """Each batch of `snapshot` (waiting, or holding one of the type's `qpu_count` QPUs) with
    its expected start and end; waiting ones numbered in the order they are expected to
    start."""
    now = snapshot.now_s
    out: dict[str, Forecast] = {}
    busy = []
    for index, holding in enumerate(snapshot.holding[:qpu_count]):
        left = holding.predicted_qpu_s - (now - holding.started_s)
        until = now + (left if left > 0 else OVERRUN_S)
        busy.append(Busy(qpu_name(snapshot.device_type, index), until, holding))
        out[holding.id] = Forecast(0, holding.started_s, until)
    batches = [SimBatch.of_waiting(w) for w in snapshot.waiting]
    simulation = Simulation(
        policy,
        {snapshot.device_type: qpu_count},
        half_life_s,
        snapshot.shares,
        {snapshot.device_type: dict(snapshot.usage)},
        start_s=now,
    )
    outcomes = simulation.run(batches, busy, present_s=now)
    for position, outcome in enumerate(outcomes, start=1):
        out[outcome.batch.id] = Forecast(position, outcome.start_s, outcome.end_s)
    return out
