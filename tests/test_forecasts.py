"""Forecasts are made beside the scheduler, never in its pass: a process of their own per
scheduler, one at work per cluster, each forecast saying when it was made."""

from __future__ import annotations

import random
import time
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.accounts import Accounts
from core.audit import Audit
from core.db import Db
from core.forecasts import FORECAST_AT, WRITE_CHUNK, Forecast, ForecastBook
from core.keys import Keys
from core.overview import read_overview
from core.records import Job
from core.render import forecast_json
from core.status import BatchStatus, JobStatus
from core.timefmt import now_us, to_iso
from scheduler import forecaster
from scheduler.forecaster import CPU_SHARE, Forecaster, pause_after
from scheduler.loop import Scheduler
from scheduler.reader import FULL_READ_EVERY_S, SnapshotCache, SnapshotReader
from scheduling.forecast import forecast
from scheduling.policies import BUILT_IN, load_policy
from scheduling.snapshot import Holding, Snapshot, Waiting
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
    assert store.forecasts.order("EMU_FREE", 0, 10) == (ids, 4)  # fifo
    assert store.forecasts.order("EMU_FREE", 1, 2) == (ids[1:3], 4)
    assert store.forecasts.order("EMU_FREE", 3, 0) == ([], 4)
    page = store.forecast_queue("EMU_FREE", offset=1, limit=2)
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


def _commands(client, action) -> list[str]:
    """The commands Redis ran for `action` (MONITOR; a PING marks the end)."""
    with client.monitor() as monitor:
        action()
        client.ping()
        commands = []
        for event in monitor.listen():
            if event["command"] == "PING":
                return commands
            name = event["command"].split(" ")[0]
            if name not in ("HELLO", "CLIENT", "AUTH", "SELECT"):  # a new connection's
                commands.append(name)
    return commands


def test_a_pass_and_a_grant_cost_the_same_whatever_waits(parts, redis_only):
    """The loop's cost does not grow with the queue: with 60 and with 1,500 batches waiting
    over the same 30 projects, a pass that holds its QPU runs the same commands, and so does
    a grant after one more submission (its snapshot reads again the one queue that changed,
    and the new batch, not the queue). The submissions before were caught up with by the
    pass that followed them, while the QPU was held."""
    store, _, _ = parts
    scheduler = Scheduler(SETTINGS, Db.of(redis_only, NS), RecordingProducer())
    now = T0
    costs = []
    for waiting in (60, 1500):
        holder, _ = new_batch(store, runs=(), open_=True, priority="HIGH", project="holder")
        now += 10 * SECOND
        scheduler.run_once(now)  # frees the QPU of the batch cancelled before, if any
        scheduler.run_once(now + SECOND)  # the holder holds it
        assert scheduler.leases[QPU].batch_id == holder.id
        queued = sum(redis_only.zcard(k) for k in redis_only.keys(f"{NS}:queue:*:*:*"))
        for i in range(queued, waiting):
            new_batch(store, project=f"p{i % 30}", now=now + 2 * SECOND + i)
        now += 10 * SECOND
        scheduler.run_once(now)  # a pass brings its snapshot up to date with them
        cache = scheduler.cache["EMU_FREE"]
        assert cache.version == int(redis_only.get(Keys(NS).snapshot_version("EMU_FREE")))
        assert len(cache.heads) == 30
        assert set(cache.known) == {i for ids in cache.heads.values() for i in ids}
        plain = _commands(redis_only, lambda n=now: scheduler.run_once(n + 1))
        new_batch(store, project="p3", now=now + SECOND)
        store.close_batch(holder.id, now + SECOND, "u")  # the QPU is freed
        granted = _commands(redis_only, lambda n=now: scheduler.run_once(n + 2 * SECOND))
        assert scheduler.leases[QPU].batch_id != holder.id
        costs.append((sorted(plain), sorted(granted)))
        store.cancel_batch(scheduler.leases[QPU].batch_id, now + 3 * SECOND, "u")
    assert costs[0] == costs[1]


def test_a_ranked_grant_sees_only_what_can_be_its_choice(parts, redis_only):
    """Fair share, 50 projects waiting: a grant's snapshot holds the one batch it ranks first,
    and every head of a project holding another QPU (its usage grows while it holds); the
    policy's choice from it is its choice from every head. A submission behind a head is then
    read as one queue, and nothing else."""
    store, control, _ = parts
    for i in range(50):
        new_batch(store, project=f"p{i}", now=T0 + i)
    policy = load_policy("fair-share")
    rank = policy.rank  # type: ignore[attr-defined]
    reader = SnapshotReader(Db.of(redis_only, NS), 86_400.0)
    cache = SnapshotCache()
    now = T0 + SECOND
    first = reader.read_ranked("EMU_FREE", [], 1, now, cache, rank)
    assert [w.project for w in first.waiting] == ["p0"]
    lease = control.acquire(QPU, 30, now)  # p0's batch runs on the other QPU
    assert lease is not None
    new_batch(store, project="p0", now=now)
    seen = reader.read_ranked("EMU_FREE", [QPU], 1, now + SECOND, cache, rank)
    assert sorted(w.project for w in seen.waiting) == ["p0", "p1"]
    assert [h.project for h in seen.holding] == ["p0"]
    full = reader.read("EMU_FREE", [QPU], 1, now + SECOND)
    assert policy.choose(seen) == policy.choose(full) and policy.choose(seen).project == "p1"
    new_batch(store, project="p7", now=now + SECOND)  # behind p7's head
    commands = _commands(
        redis_only, lambda: reader.read_ranked("EMU_FREE", [QPU], 1, now + 2 * SECOND, cache, rank)
    )
    assert commands.count("ZRANGE") == 1 and "EVALSHA" not in commands, commands


def test_renewals_keep_their_period_while_a_long_forecast_runs(parts, redis_only):
    """The loop driven pass by pass (`now` passed in, 0.1 s apart) with 60 batches waiting
    while the forecaster's process makes a round whose policy thinks 40 ms a choice (2.4 s,
    longer than the 1.5-s lease lives): every pass made during the round renews the lease to
    its full time, and none loses it."""
    store, _, _ = parts
    kwargs = redis_only.connection_pool.connection_kwargs
    url = f"redis://:{kwargs['password']}@{kwargs['host']}:{kwargs['port']}/0"
    settings = make_settings(
        url,
        namespace=NS,
        qpus={"EMU_FREE": 1},
        policy="tests.policies:Ponderous",
        lease_ttl_s=1.5,
        forecast_interval_s=60.0,
    )
    scheduler = Scheduler(settings, Db.of(redis_only, NS), RecordingProducer())
    holder, _ = new_batch(
        store, runs=(), open_=True, priority="HIGH", project="holder", now=now_us()
    )
    scheduler.run_once(now_us())
    lease = scheduler.leases[QPU]
    assert lease.batch_id == holder.id
    for i in range(60):
        new_batch(store, project=f"p{i % 20}", now=now_us())
    keys = Keys(NS)
    forecasting = forecaster.start(settings)
    try:
        wait_for(lambda: redis_only.exists(keys.forecast_turn()), timeout_s=30)
        renewed = []
        while not redis_only.hexists(keys.forecast("EMU_FREE"), FORECAST_AT):
            scheduler.run_once(now_us())
            renewed.append(redis_only.pttl(keys.qpu_lease(QPU)))
            assert scheduler.leases[QPU] == lease  # kept: same batch, same epoch
            time.sleep(0.1)
        assert forecasting.poll() is None
    finally:
        forecaster.stop(forecasting)
    # Each pass renewed it to its full time (1.5 s, less the read's own moment).
    assert len(renewed) >= 12 and min(renewed) > 1_000, renewed
    assert len(ForecastBook(redis_only, NS).all("EMU_FREE")) == 61  # and the holder


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


# Exact first, coarser far back (scheduling/forecast.py).


def _queue(seed: int, n: int, projects: int, qpus: int = 1) -> Snapshot:
    """A random queue: batches of `projects` projects at three levels, shares 1-3, some usage,
    and for several QPUs some of them held."""
    rnd = random.Random(seed)
    waiting = tuple(
        Waiting(
            id=f"b{i:06d}",
            project=f"p{rnd.randrange(projects)}",
            user="u",
            priority=rnd.choice(("HIGH", "MEDIUM", "LOW")),
            device_type="EMU_FREE",
            submitted_s=1000.0 + i * rnd.choice((0.01, 0.5)),
            open=False,
            jobs=1,
            runs=100,
            predicted_qpu_s=rnd.uniform(0.5, 3.0),
        )
        for i in range(n)
    )
    holding = tuple(
        Holding(f"h{q}", f"p{rnd.randrange(projects)}", 1990.0 + q, rnd.uniform(5, 20))
        for q in range(rnd.randrange(qpus))
    )
    return Snapshot(
        now_s=2000.0,
        device_type="EMU_FREE",
        waiting=waiting,
        holding=holding,
        usage={f"p{i}": rnd.uniform(0, 100) for i in range(projects)},
        shares={f"p{i}": float(rnd.choice((1, 1, 2, 3))) for i in range(projects)},
    )


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    n=st.integers(0, 120),
    projects=st.integers(1, 8),
    qpus=st.integers(1, 3),
    exact=st.integers(0, 130),
    policy=st.sampled_from(["fifo", "priority", "fair-share", "shortest-first"]),
)
def test_a_forecast_is_the_full_simulation_up_to_its_exact_positions(
    seed, n, projects, qpus, exact, policy
):
    """Property: the first `exact` positions are the policy's own choices (as choosing for
    every batch gives them); for fifo and priority, every position is; every batch has one."""
    queue = _queue(seed, n, projects, qpus)
    full = forecast(load_policy(policy), queue, qpus, 86_400.0, exact_positions=10**9)
    tiered = forecast(load_policy(policy), queue, qpus, 86_400.0, exact_positions=exact)
    assert (
        tiered.keys()
        == full.keys()
        == {w.id for w in queue.waiting} | {h.id for h in queue.holding}
    )
    first = {i for i, f in full.items() if 0 < f.position <= exact}
    assert {i: tiered[i] for i in first} == {i: full[i] for i in first}
    if policy in ("fifo", "priority"):
        assert tiered == full
    positions = sorted(f.position for f in tiered.values() if f.position)
    assert positions == list(range(1, n + 1))


@pytest.mark.parametrize("policy", ["fair-share", "shortest-first"])
@pytest.mark.parametrize("qpus", [1, 4])
def test_far_positions_are_within_the_documented_bound(policy, qpus):
    """README, "Forecasts": past the exact positions, fair-share and
    shortest-first ETAs are within 20% of the wait the full simulation gives, 95% of them
    within 2% (2,000 batches of 40 projects; 200 exact positions)."""
    errors = []
    for seed in range(2):
        queue = _queue(seed, 2000, 40)
        full = forecast(load_policy(policy), queue, qpus, 86_400.0, exact_positions=10**9)
        tiered = forecast(load_policy(policy), queue, qpus, 86_400.0, exact_positions=200)
        errors += [
            abs(tiered[i].start_s - f.start_s) / (f.start_s - queue.now_s)
            for i, f in full.items()
            if f.position > 200
        ]
    errors.sort()
    assert errors[-1] <= 0.20
    assert errors[int(len(errors) * 0.95)] <= 0.02


def test_a_policy_without_a_backlog_order_has_its_backlog_by_level_then_age():
    queue = _queue(7, 50, 3)
    tiered = forecast(_OnlyChoose(), queue, 1, 86_400.0, exact_positions=5)
    later = sorted((f.position, i) for i, f in tiered.items() if f.position > 5)
    by_level = {w.id: (w.level, w.submitted_s, w.id) for w in queue.waiting}
    rest = sorted(set(by_level) - {i for i, f in tiered.items() if f.position <= 5})
    assert [i for _, i in later] == sorted(rest, key=by_level.__getitem__)


class _OnlyChoose:
    """A lab's policy with only `choose` (the newest first)."""

    name = "newest"
    window = 1

    def choose(self, snapshot):
        return max(snapshot.waiting, key=lambda b: (b.submitted_s, b.id), default=None)


def test_a_backlog_order_that_loses_a_batch_is_refused():
    class Lossy(_OnlyChoose):
        def backlog_order(self, snapshot):
            return list(snapshot.waiting)[1:]

    with pytest.raises(ValueError, match="each waiting batch once"):
        forecast(Lossy(), _queue(1, 20, 2), 1, 86_400.0, exact_positions=5)


def test_forecasting_is_paced_to_a_quarter_of_a_core():
    assert pause_after(0.1, 5.0) == 5.0  # short rounds: the interval
    assert pause_after(4.0, 5.0) == pytest.approx(12.0)  # 4 s of CPU in every 16 s
    assert CPU_SHARE == 0.25


# Incremental reads (scheduler/reader.py `known`).


def test_incremental_reads_equal_full_reads_as_the_snapshot_changes(parts, redis_only):
    """Property, on seeded random changes: submit (closed or open, any level, several
    projects), cancel, add jobs to an open batch, close it, grant a QPU, end its batch and
    release it (its project's usage grows), change a project's share, let time pass beyond
    a full read: each time, the reads that reuse what they read before (the forecaster's
    whole queue, a grant's heads) equal fresh ones, and each built-in policy chooses from
    its ranked read (only what can be its choice, kept ranked between reads) what it
    chooses from a fresh read of every project's window."""
    store, control, _ = parts
    reader = SnapshotReader(Db.of(redis_only, NS), 86_400.0)
    policies = [load_policy(name) for name in BUILT_IN]
    used, ended, chosen = 0, 0, 0
    for seed in range(4):
        rnd = random.Random(seed)
        redis_only.flushall()
        accounts = Accounts(redis_only, NS)
        projects = [accounts.create_project(f"p{i}").id for i in range(4)]
        cache, heads_cache = SnapshotCache(), SnapshotCache()
        ranked = {policy.name: SnapshotCache() for policy in policies}
        batches = []
        lease = None
        now = T0
        for _ in range(40):
            now += rnd.choice((1, 1, 1, 7)) * SECOND
            action = rnd.choice(
                ("submit", "submit", "submit", "cancel", "add", "close", "grant", "end", "share")
            )
            pending = [b for b in batches if store.get_batch(b.id).status == BatchStatus.PENDING]
            if action == "submit" or not pending:
                batch, _ = new_batch(
                    store,
                    runs=(rnd.randint(1, 50),),
                    open_=rnd.random() < 0.3,
                    priority=rnd.choice(("HIGH", "MEDIUM", "LOW")),
                    project=rnd.choice(projects),
                    now=now,
                )
                batches.append(batch)
            elif action == "cancel":
                store.cancel_batch(rnd.choice(pending).id, now, "u")
            elif action in ("add", "close") and (opened := [b for b in pending if b.open]):
                batch = rnd.choice(opened)
                if action == "close":
                    store.close_batch(batch.id, now, "u")
                    batch.open = False
                else:
                    job = Job(
                        str(uuid.uuid4()),
                        batch.id,
                        batch.project_id,
                        "u",
                        JobStatus.PENDING,
                        runs=7,
                        created_us=0,
                        updated_us=0,
                    )
                    store.add_jobs(batch.id, [job], now, Audit("u", "batch.add_jobs"))
            elif action == "grant" and lease is None:
                lease = control.acquire(QPU, 30, now)
            elif action == "end" and lease is not None:
                store.cancel_batch(lease.batch_id, now, "u")
                assert control.release(lease, now=now)
                lease, ended = None, ended + 1
            elif action == "share":
                share = float(rnd.randint(1, 5))
                accounts.update_project(rnd.choice(projects), ["EMU_FREE"], share=share)
            fresh = reader.read("EMU_FREE", [QPU], None, now)
            assert reader.read("EMU_FREE", [QPU], None, now, cache) == fresh
            assert set(cache.known) == {w.id for w in fresh.waiting if not w.open}
            # A grant's read: each project's two oldest per level, the same with or without
            # what it read before (only the queues changed since are read again).
            heads = reader.read("EMU_FREE", [QPU], 2, now)
            assert reader.read("EMU_FREE", [QPU], 2, now, heads_cache) == heads
            firsts: dict = {}
            for w in fresh.waiting:  # in submission order
                firsts.setdefault((w.level, w.project), []).append(w)
            expected = sorted(w.id for ws in firsts.values() for w in ws[:2])
            assert sorted(w.id for w in heads.waiting) == expected
            assert heads.usage == fresh.usage and heads.holding == fresh.holding
            assert heads.shares == fresh.shares
            used = max(used, len(fresh.usage))
            for policy in policies:
                rank, window = policy.rank, policy.window  # type: ignore[attr-defined]
                if rnd.random() < 0.5:  # as a scheduler's pass between grants does
                    reader.catch_up("EMU_FREE", window, ranked[policy.name], now, rank)
                small = reader.read_ranked(
                    "EMU_FREE", [QPU], window, now, ranked[policy.name], rank
                )
                full = policy.choose(reader.read("EMU_FREE", [QPU], window, now))
                assert policy.choose(small) == full, (policy.name, seed)
                chosen += full is not None
    assert used >= 1 and ended >= 4  # usage was counted, and read again from the changes
    assert chosen >= 400


def test_a_grant_reads_only_the_queues_that_changed(parts, redis_only):
    """With a cache, a second grant's read of 50 projects' queues reads again only the one
    queue that changed (MONITOR counts the commands)."""
    store, _, _ = parts
    for i in range(50):
        new_batch(store, project=f"p{i}", now=T0 + i)
    reader = SnapshotReader(Db.of(redis_only, NS), 86_400.0)
    cache = SnapshotCache()
    reader.read("EMU_FREE", [], 1, T0 + SECOND, cache)
    new_batch(store, project="p7", now=T0 + SECOND)  # behind p7's head
    with redis_only.monitor() as monitor:
        snapshot = reader.read("EMU_FREE", [], 1, T0 + 2 * SECOND, cache)
        redis_only.ping()  # marks the end
        commands = []
        for event in monitor.listen():
            if event["command"] == "PING":
                break
            commands.append(event["command"])
    assert len(snapshot.waiting) == 50
    zranges = [c for c in commands if c.startswith("ZRANGE ") and ":queue:" in c]
    assert zranges == [f"ZRANGE {Keys(NS).project_queue('EMU_FREE', 'MEDIUM', 'p7')} 0 0"]
    assert not any(c.startswith("EVALSHA") for c in commands)
    # Every FULL_READ_EVERY_S, the heads are read whole again (read_snapshot.lua).
    later = T0 + 2 * SECOND + int(FULL_READ_EVERY_S) * SECOND
    assert "EVALSHA" in _commands(redis_only, lambda: reader.read("EMU_FREE", [], 1, later, cache))
    assert "EVALSHA" not in _commands(
        redis_only, lambda: reader.read("EMU_FREE", [], 1, later + SECOND, cache)
    )


def test_a_forecast_is_staged_in_chunks_and_replaces_the_last_whole(redis_only):
    """Written in chunks (core/forecasts.py WRITE_CHUNK) under its writer's keys, then put in
    place at once: the keys left are the forecast and its order, with their expiry; a smaller
    forecast leaves nothing of the larger one; an empty one leaves no order."""
    book, keys = ForecastBook(redis_only, NS), Keys(NS)
    big = {f"b{i:05d}": Forecast(i + 1, 100.0 + i, 101.0 + i) for i in range(2 * WRITE_CHUNK + 7)}
    book.write("EMU_FREE", big, ttl_s=30, at_us=T0, writer="w1")
    assert sorted(redis_only.keys("*")) == sorted(
        [keys.forecast("EMU_FREE"), keys.forecast_order("EMU_FREE")]
    )
    assert 29_000 < redis_only.pttl(keys.forecast_order("EMU_FREE")) <= 30_000
    assert book.order("EMU_FREE", WRITE_CHUNK, 2) == (
        [f"b{WRITE_CHUNK:05d}", f"b{WRITE_CHUNK + 1:05d}"],
        len(big),
    )
    small = {"b00003": Forecast(1, 200.0, 201.0), "r": Forecast(0, 150.0, 201.0)}
    book.write("EMU_FREE", small, ttl_s=30, at_us=T0 + SECOND, writer="w2")
    assert book.all("EMU_FREE") == {
        i: Forecast(f.position, f.start_s, f.end_s, T0 + SECOND) for i, f in small.items()
    }
    assert book.order("EMU_FREE", 0, 10) == (["b00003"], 1)  # a running batch has no place
    book.write("EMU_FREE", {}, ttl_s=30, at_us=T0 + 2 * SECOND, writer="w1")
    assert redis_only.keys("*") == [keys.forecast("EMU_FREE")]
    assert book.order("EMU_FREE", 0, 10) == ([], 0)
