"""When will a waiting batch start? The live policy run forward in the simulator from the
cluster's current state: the batches waiting and their predicted QPU time, what the running
batches have left of theirs, each project's usage. The real policy, not an average.

A scheduler's forecaster (scheduler/forecaster.py) writes each device type's forecast to Redis
every `forecast_interval_s` or so (core/forecasts.py); the API shows it on the batch
(`queue_position`, `estimated_start_at`, `estimated_end_at`) and `tweezer queue` as a table. A
forecast assumes the device stays UP and nothing more is submitted.

**Exact first, coarser far back.** The first EXACT_POSITIONS starts are the policy's own
choices, one `choose` per start, as live; the rest of the queue is placed in the policy's
`backlog_order` (one sort, scheduling/policies.py), each on the QPU that frees first. A choice
costs a pass over every project's queue head, so choosing for each of 100,000 batches would
take minutes; the sort takes a fraction of a second. The bound (README, "Forecasts"): exact
for fifo and priority at every position; for fair-share and shortest-first, the far positions
are approximations whose error tests/test_forecasts.py measures.
"""

from __future__ import annotations

from core.device_types import qpu_name
from core.forecasts import Forecast
from scheduling.policies import Policy
from scheduling.simulator import Busy, SimBatch, Simulation
from scheduling.snapshot import Snapshot

#: A running batch past its predicted end is expected to end this much later still.
OVERRUN_S = 1.0
#: How many of the waiting batches start in a forecast by the policy's own choices.
EXACT_POSITIONS = 1000


def forecast(
    policy: Policy,
    snapshot: Snapshot,
    qpu_count: int,
    half_life_s: float,
    exact_positions: int = EXACT_POSITIONS,
) -> dict[str, Forecast]:
    """Each batch of `snapshot` (waiting, or holding one of the type's `qpu_count` QPUs) with
    its expected start and end; waiting ones numbered in the order they are expected to
    start. `snapshot.waiting` holds every waiting batch (not a policy's window)."""
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
    outcomes = simulation.run(batches, busy, present_s=now, exact_starts=exact_positions)
    for position, outcome in enumerate(outcomes, start=1):
        out[outcome.batch.id] = Forecast(position, outcome.start_s, outcome.end_s)
    return out
