"""Forecasts are made beside the scheduler, never in its pass: a process of their own per
scheduler, one at work per cluster, each forecast saying when it was made."""

from __future__ import annotations

import pytest

from core.db import Db
from core.forecasts import FORECAST_AT, ForecastBook
from core.keys import Keys
from core.overview import read_overview
from core.render import forecast_json
from core.timefmt import to_iso
from scheduler.forecaster import Forecaster
from scheduler.loop import Scheduler
from scheduling.policies import load_policy
from tests import sequences
from tests.conftest import make_settings
from tests.factories import NS, QPU, SECOND, T0, RecordingProducer, new_batch
from tests.helpers import hold_qpu, wait_for

SETTINGS = make_settings("redis://127.0.0.1:1/0", namespace=NS, qpus={"EMU_FREE": 1})


def _forecaster(redis_only) -> Forecaster:
    return Forecaster(SETTINGS, Db.of(redis_only, NS), load_policy("fifo"))


def test_a_forecast_says_when_it_was_made(parts, redis_only):
    store, _, _ = parts
    first, _ = new_batch(store)
    second, _ = new_batch(store, now=T0 + SECOND)
    assert _forecaster(redis_only).run_once(T0 + 2 * SECOND)
    batches = store.with_forecasts(store.get_batches([first.id, second.id]))
    assert [b.forecast.position for b in batches] == [1, 2]
    assert {b.forecast.at_us for b in batches} == {T0 + 2 * SECOND}
    shown = forecast_json(batches[0])
    assert shown["queue_position"] == 1 and shown["forecast_at"] == to_iso(T0 + 2 * SECOND)
    overview = read_overview(Db.of(redis_only, NS), [QPU], ["EMU_FREE"], T0 + 3 * SECOND)
    assert overview.forecast_at == {"EMU_FREE": T0 + 2 * SECOND}


def test_the_forecast_order_pages_without_reading_every_batch(parts, redis_only):
    store, _, _ = parts
    ids = [new_batch(store, now=T0 + i * SECOND)[0].id for i in range(4)]
    _forecaster(redis_only).run_once(T0 + 5 * SECOND)
    assert store.forecast_order("EMU_FREE") == ids  # fifo
    page = store.waiting_batches(ids[1:3])
    assert [b.id for b in page] == ids[1:3] and [b.forecast.position for b in page] == [2, 3]
    assert [b.id for b in store.forecast_queue("EMU_FREE")] == ids


def test_an_empty_queues_forecast_still_says_when(redis_only):
    """Nothing waits: the forecast is empty, and its time says it is fresh, not missing."""
    assert _forecaster(redis_only).run_once(T0)
    assert ForecastBook(redis_only, NS).all("EMU_FREE") == {}
    assert redis_only.hget(Keys(NS).forecast("EMU_FREE"), FORECAST_AT) == str(T0)


def test_one_forecaster_works_at_a_time_and_another_takes_over(redis_only):
    one, two = _forecaster(redis_only), _forecaster(redis_only)
    assert one.run_once(T0) and not two.run_once(T0)
    assert one.run_once(T0 + SECOND)  # its turn, renewed
    redis_only.delete(Keys(NS).forecast_turn())  # as its expiry would: its scheduler stopped
    assert two.run_once(T0 + 2 * SECOND) and not one.run_once(T0 + 2 * SECOND)


def test_a_scheduler_pass_makes_no_forecast(parts, redis_only):
    store, _, _ = parts
    new_batch(store)
    new_batch(store, now=T0 + SECOND)
    Scheduler(SETTINGS, Db.of(redis_only, NS), RecordingProducer()).run_once(T0 + 2 * SECOND)
    assert not redis_only.exists(Keys(NS).forecast("EMU_FREE"))


@pytest.fixture(scope="module")
def ponderous(start_cluster):
    """A cluster whose policy thinks 40 ms per choice, with 1.5-s leases renewed every 0.5 s
    and a forecast every 0.5 s: 60 waiting batches take a forecast 2.4 s of CPU, longer than
    a lease lives."""
    return start_cluster(
        qpus={"EMU_FREE": 1},
        policy="tests.policies:Ponderous",
        lease_ttl_s=1.5,
        scheduler_tick_s=0.5,
        forecast_interval_s=0.5,
    )


def test_a_slow_forecast_costs_the_scheduler_no_lease(ponderous):
    """Inside the scheduler's pass such a forecast let the lease of the QPU expire every time;
    beside it, the lease is renewed on time throughout and the queue's forecasts keep coming."""
    cluster = ponderous
    sdk = cluster.sdk(cluster.new_account())
    seq = sequences.parametrized()
    job = {"runs": 5, "variables": {"omega_max": 6}}
    book = ForecastBook(cluster.client, cluster.settings.namespace)
    with hold_qpu(sdk, seq) as holder:
        waiting = [sdk.create_batch(seq, [job], device_type="EMU_FREE") for _ in range(60)]
        # Three whole forecasts of the full queue, each longer than a lease lives.
        made = set()

        def forecasts_of_the_queue() -> bool:
            everything = book.all("EMU_FREE")
            if all(b.id in everything for b in waiting):
                made.add(next(iter(everything.values())).at_us)
            return len(made) >= 3

        wait_for(forecasts_of_the_queue, timeout_s=60)
        assert sdk.get_batch(holder.id).status == "RUNNING"
    log = (cluster.cluster.log_dir / "scheduler.log").read_text()
    assert "lost the lease" not in log, log[-3000:]
