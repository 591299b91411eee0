"""Scheduling policies, the simulator, traces and `tweezer simulate`: each policy's rule on small
hand-built workloads with exact start times, the live scheduler (now-driven, real Redis) making
the very same choices at the very same times, fair share converging to the shares,
shortest-first's aging bound, SWF parsing, and byte-identical output."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from cli.main import main
from core.accounts import Accounts
from core.db import Db
from core.errors import ConfigurationError
from core.execution import Execution
from core.records import Batch, Job
from core.status import BatchStatus, JobStatus
from core.store import Store
from lab.report import CSV_COLUMNS, percentile
from lab.traces import TraceError, read_records, read_swf, read_trace
from scheduler.forecaster import Forecaster
from scheduler.loop import Scheduler
from scheduling.policies import ShortestFirst, load_policy
from scheduling.ranked import RankedBatches
from scheduling.simulator import Outcome, SimBatch, SimJob, Simulation
from scheduling.snapshot import Waiting
from tests.conftest import make_settings
from tests.factories import RecordingProducer

NS = "t"
SECOND = 1_000_000
T0 = 1_800_000_000 * SECOND


def closed(id_: str, submit: float, project: str, priority: str, *qpu_s: float) -> SimBatch:
    return SimBatch(
        id=id_,
        project=project,
        user=f"u{project}",
        priority=priority,
        device_type="EMU_FREE",
        submit_s=submit,
        open=False,
        jobs=tuple(SimJob(qpu_s=s) for s in qpu_s),
    )


#: Five batches on one QPU: A floods at MEDIUM, B has a short LOW and a MEDIUM, C a HIGH one.
WORKLOAD = [
    closed("a1", 0, "A", "MEDIUM", 10),
    closed("a2", 1, "A", "MEDIUM", 10),
    closed("b1", 2, "B", "LOW", 1),
    closed("c1", 3, "C", "HIGH", 7),
    closed("b2", 4, "B", "MEDIUM", 4),
]
#: (id, start, end) of each, by policy.
EXPECTED = {
    "fifo": [("a1", 0, 10), ("a2", 10, 20), ("b1", 20, 21), ("c1", 21, 28), ("b2", 28, 32)],
    # HIGH, then MEDIUM in submission order, then LOW.
    "priority": [("a1", 0, 10), ("c1", 10, 17), ("a2", 17, 27), ("b2", 27, 31), ("b1", 31, 32)],
    # As priority, but within MEDIUM project B (no QPU time yet) goes before A (10 s).
    "fair-share": [
        ("a1", 0, 10),
        ("c1", 10, 17),
        ("b2", 17, 21),
        ("a2", 21, 31),
        ("b1", 31, 32),
    ],
    # At 10: b1 scores 1 - 8/10, b2 4 - 6/10, c1 7 - 7/10, a2 10 - 9/10: shortest first.
    "shortest-first": [
        ("a1", 0, 10),
        ("b1", 10, 11),
        ("b2", 11, 15),
        ("c1", 15, 22),
        ("a2", 22, 32),
    ],
    # A lab's own policy, loaded by module:Class.
    "tests.policies:NewestFirst": [
        ("a1", 0, 10),
        ("b2", 10, 14),
        ("c1", 14, 21),
        ("b1", 21, 22),
        ("a2", 22, 32),
    ],
}


def starts(outcomes: list[Outcome]) -> list[tuple[str, float, float]]:
    return [(o.batch.id, o.start_s, o.end_s) for o in outcomes]


@pytest.mark.parametrize("policy", EXPECTED)
def test_a_device_out_of_service_starts_nothing_and_pauses_between_jobs(policy):
    """The live rule (docs/design.md, "Devices and the bridge") on the virtual clock: down
    [10, 20) and [18, 25) (merged: up at 25). a1's third job starts at 8, before the device
    goes, and finishes at 12; its fourth waits, holding the QPU, and runs 25-29. b1, waiting
    since 1, and c1, submitted during the outage, start once it is over and a1 let go."""
    open_ = SimBatch(
        "o1", "C", "uC", "MEDIUM", "EMU_FREE", 40, True,
        (SimJob(2), SimJob(2, think_s=9), SimJob(1, think_s=1)),
    )  # fmt: skip
    workload = [
        closed("a1", 0, "A", "MEDIUM", 4, 4, 4, 4),
        closed("b1", 1, "B", "MEDIUM", 5),
        closed("c1", 15, "C", "MEDIUM", 1),
        open_,
    ]
    down = {"EMU_FREE": [(18, 25), (10, 20), (45, 50)]}
    outcomes = Simulation(load_policy(policy), {"EMU_FREE": 1}, down=down).run(workload)
    # Which of the two waiting goes first is the policy's: the shortest, or the newest.
    after_a1 = [("b1", 29, 34), ("c1", 34, 35)]
    if policy in ("shortest-first", "tests.policies:NewestFirst"):
        after_a1 = [("c1", 29, 30), ("b1", 30, 35)]
    assert starts(outcomes) == [
        ("a1", 0, 29),
        *after_a1,
        # o1 at 40: job 1 40-42, thinks 9 (to 51; the device was back at 50), job 2 51-53,
        # thinks 1, job 3 54-55.
        ("o1", 40, 55),
    ]


def test_simulate_honours_a_recorded_traces_down_intervals(tmp_path):
    """`tweezer simulate --trace` of a recorded run runs through its header's outages and
    writes them into its own trace, where `tweezer report` counts the QPUs as down."""
    header = {"format": "tweezer-trace", "version": 1, "down": {"EMU_FREE": [[5, 15]]}}
    lines = [
        header,
        {"id": "a", "submit_s": 0, "project": "p", "user": "u", "jobs": [{"qpu_s": 2}] * 4},
        {"id": "b", "submit_s": 6, "project": "p", "user": "u", "jobs": [{"qpu_s": 1}]},
    ]
    trace = tmp_path / "recorded.jsonl"
    trace.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "sim"
    assert main(["simulate", "--trace", str(trace), "--policy", "fifo", "--out", str(out)]) == 0
    ran = {r.id: (r.start_s, r.end_s) for r in read_records(out / "trace.jsonl")[1]}
    # a: jobs 0-2, 2-4, 4-6 (begun before 5), then 15-17; b waits for the device and for a.
    assert ran == {"a": (0, 17), "b": (17, 18)}
    assert read_records(out / "trace.jsonl")[0].down == {"EMU_FREE": [(5.0, 15.0)]}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["utilisation"]["down"] == round(10 / 18, 6)


def test_a_down_interval_must_be_finite_and_end_after_it_starts():
    for bad in ((5, 5), (5, float("nan")), (float("-inf"), 3)):
        with pytest.raises(ValueError, match="down interval must be finite"):
            Simulation(load_policy("fifo"), {"EMU_FREE": 1}, down={"EMU_FREE": [bad]})


@pytest.mark.parametrize("policy", EXPECTED)
def test_each_policy_on_a_hand_built_workload(policy):
    outcomes = Simulation(load_policy(policy), {"EMU_FREE": 1}).run(WORKLOAD)
    assert starts(outcomes) == EXPECTED[policy]


@pytest.mark.parametrize("policy", EXPECTED)
def test_batches_of_one_instant_start_in_their_given_order(policy):
    """As the live store's clock makes submissions of one microsecond follow each other, so
    ties start in the order given, never by id ("10" would go before "9")."""
    tied = [closed(str(i), 1.0, "A", "MEDIUM", 1) for i in (8, 9, 10, 11)]
    holder = closed("7", 0.0, "A", "MEDIUM", 5)
    outcomes = Simulation(load_policy(policy), {"EMU_FREE": 1}).run([holder, *tied])
    newest_first = policy.endswith("NewestFirst")
    expected = ["7", "11", "10", "9", "8"] if newest_first else ["7", "8", "9", "10", "11"]
    assert [o.batch.id for o in outcomes] == expected


@pytest.mark.parametrize("policy", EXPECTED)
def test_the_live_scheduler_makes_the_same_choices_at_the_same_times(redis_only, policy):
    """The workload through the real scheduler pass over a real Redis, its clock moved to each
    moment the simulator acts at: every batch starts when the simulator says."""
    live = LiveRun(redis_only, policy)
    assert live.drive(WORKLOAD) == [(i, float(s), float(e)) for i, s, e in EXPECTED[policy]]


@pytest.mark.parametrize("seed", range(8))
def test_fair_share_with_shares_starts_live_what_the_simulator_does(redis_only, seed):
    """Random queues of three projects with shares 1-4 at two levels: the real scheduler pass,
    whose choice comes from its ranked cache (scheduling/ranked.py), starts every batch when
    the simulator, whose policy sees every project's head at each choice, says."""
    rnd = random.Random(seed)
    accounts = Accounts(redis_only, NS)
    shares = {accounts.create_project(f"p{i}").id: float(rnd.randint(1, 4)) for i in range(3)}
    for project, share in shares.items():
        accounts.update_project(project, [], share=share)
    # Distinct submission times: a project's queue keeps batches of the same microsecond in
    # the order they were stored, the simulator by id.
    workload = [
        closed(
            f"x{i}",
            submit,
            rnd.choice(list(shares)),
            rnd.choice(("HIGH", "MEDIUM", "MEDIUM")),
            rnd.randint(1, 9),
        )
        for i, submit in enumerate(rnd.sample(range(40), 16))
    ]
    simulated = Simulation(load_policy("fair-share"), {"EMU_FREE": 1}, shares=shares).run(workload)
    assert LiveRun(redis_only, "fair-share").drive(workload) == starts(simulated)


class LiveRun:
    """A real scheduler over a real Redis, driven through a workload on a hand-moved clock:
    batches are stored at their submission time, and each job a worker would run is claimed
    when sent and committed when its batch's QPU time is up."""

    def __init__(self, redis_only, policy: str, namespace: str = NS) -> None:
        self.settings = make_settings(
            "redis://127.0.0.1:1/0", namespace=namespace, qpus={"EMU_FREE": 1}, policy=policy
        )
        self.producer = RecordingProducer()
        db = Db.of(redis_only, namespace)
        self.scheduler = Scheduler(self.settings, db, self.producer)
        # Beside the scheduler, as in a cluster (its own process there): a forecast each pass.
        self.forecaster = Forecaster(self.settings, db, load_policy(policy))
        self.store = Store(db)
        self.execution = Execution(db)
        self.ids: dict[str, str] = {}  # stored batch id -> workload id

    def drive(
        self, workload: list[SimBatch], predicted: dict[str, float] | None = None, until=None
    ) -> list[tuple[str, float, float]]:
        """(workload id, start s, end s) of each batch, in the order they started; stops after
        the pass at `until` (s) when given. `predicted` overrides a batch's predicted QPU time."""
        ends: dict[int, list[str]] = {}  # µs -> job deliveries to commit then
        started: list[tuple[str, float, float]] = []
        moments = sorted({int(b.submit_s * SECOND) for b in workload})
        while moments:
            now = moments.pop(0)
            for item in ends.pop(now, []):
                job_id, delivery_id = item.split(" ")
                assert self.execution.commit_done(job_id, delivery_id, {"counter": {}}, T0 + now)
            for batch in workload:
                if int(batch.submit_s * SECOND) == now:
                    guess = (predicted or {}).get(batch.id, batch.hold_s)
                    self.ids[_store(self.store, batch, T0 + now, guess)] = batch.id
            self.scheduler.run_once(T0 + now)
            self.forecaster.run_once(T0 + now)
            for sent in self.producer.take():
                lease = self.scheduler.leases["EMU_FREE-0"]
                original = next(b for b in workload if b.id == self.ids[lease.batch_id])
                end = now + int(original.hold_s * SECOND)
                assert self.execution.claim(sent.job_id, sent.delivery_id, 3600, T0 + now) == 1
                ends.setdefault(end, []).append(f"{sent.job_id} {sent.delivery_id}")
                started.append((original.id, now / SECOND, end / SECOND))
                moments = sorted({*moments, end})
            if until is not None and now >= until * SECOND:
                break
        return started


def _store(store: Store, batch: SimBatch, now: int, predicted_qpu_s: float) -> str:
    """The workload's batch in the store: one job of its whole QPU time (what a policy reads is
    the batch's predicted QPU time, its project, user, priority and submission time)."""
    record = Batch(
        id=f"{batch.id}-{now}",
        project_id=batch.project,
        user_id=batch.user,
        device_type=batch.device_type,
        status=BatchStatus.PENDING,
        open=False,
        queue_priority=batch.priority,
        created_us=0,
        updated_us=0,
        sequence_builder="{}",
        predicted_qpu_s=predicted_qpu_s,
    )
    job = Job(
        id=f"{batch.id}-job",
        batch_id=record.id,
        project_id=batch.project,
        user_id=batch.user,
        status=JobStatus.PENDING,
        runs=1,
        created_us=0,
        updated_us=0,
    )
    store.create_batch(record, [job], now)
    return record.id


def test_fair_share_gives_each_project_its_share_of_qpu_time():
    """Two projects flood one QPU with one-second batches; with shares 3 and 1, while both
    wait, A gets three quarters of the QPU time."""
    flood = [closed(f"a{i}", 0, "A", "MEDIUM", 1) for i in range(200)]
    flood += [closed(f"b{i}", 0, "B", "MEDIUM", 1) for i in range(200)]
    outcomes = Simulation(load_policy("fair-share"), {"EMU_FREE": 1}, shares={"A": 3}).run(flood)
    first_100 = [o.batch.project for o in outcomes if o.start_s < 100]
    assert first_100.count("A") == 75 and first_100.count("B") == 25
    # With equal shares they alternate.
    even = Simulation(load_policy("fair-share"), {"EMU_FREE": 1}).run(flood)
    assert [o.batch.project for o in even[:6]] == ["A", "B", "A", "B", "A", "B"]


def test_shortest_first_ages_so_a_long_batch_is_not_starved():
    """A 10 s batch among a stream of 1 s batches arriving faster than they run: it is
    overtaken only by batches submitted less than aging x 10 s after it, so it starts once
    those ran; without aging it would wait for the whole stream."""
    stream = [closed(f"s{i:03}", i * 0.5, "S", "MEDIUM", 1) for i in range(600)]
    long = closed("long", 0.1, "L", "MEDIUM", 10)
    outcomes = Simulation(ShortestFirst(), {"EMU_FREE": 1}).run([*stream, long])
    start = next(o.start_s for o in outcomes if o.batch.id == long.id)
    overtakers = [b for b in stream if b.submit_s < long.submit_s + ShortestFirst.aging * 10]
    assert start <= sum(b.hold_s for b in overtakers)  # the documented bound: 201 s here
    assert start < 300  # and the stream is still arriving: it did not wait for its end

    class NoAging(ShortestFirst):
        aging = 1e12

    starved = Simulation(NoAging(), {"EMU_FREE": 1}).run([*stream, long])
    assert next(o for o in starved if o.batch.id == long.id) is starved[-1]


def test_open_batches_hold_their_qpu_while_they_think():
    loop = SimBatch(
        id="loop",
        project="A",
        user="u",
        priority="MEDIUM",
        device_type="EMU_FREE",
        submit_s=0,
        open=True,
        jobs=(SimJob(2), SimJob(2, think_s=5), SimJob(2, think_s=5)),
    )
    other = closed("other", 1, "B", "MEDIUM", 1)
    outcomes = Simulation(load_policy("fifo"), {"EMU_FREE": 1}).run([loop, other])
    assert starts(outcomes) == [("loop", 0, 16), ("other", 16, 17)]


def test_a_user_policy_is_checked_when_loaded():
    with pytest.raises(ConfigurationError, match="no 'choose'"):
        load_policy("tests.policies:Broken")
    with pytest.raises(ConfigurationError, match="cannot be loaded"):
        load_policy("tests.policies:Missing")
    with pytest.raises(ConfigurationError, match="unknown policy"):
        load_policy("round-robin")


@given(
    st.lists(
        st.tuples(
            st.sampled_from(("put", "put", "drop", "best")),
            st.integers(0, 30),  # batch
            st.integers(0, 5),  # rank
            st.sets(st.sampled_from("ABCD"), max_size=3),  # projects skipped
        ),
        max_size=300,
    )
)
@hyp_settings(max_examples=60, deadline=None)
def test_ranked_batches_find_the_least_rank_of_the_projects_not_skipped(steps):
    """RankedBatches (the live scheduler's index for policies that rank) against a plain
    dict of what is live: put, re-rank, drop, and the best outside skipped projects, through
    its stale entries and compactions."""
    # The default, and one that compacts its heap at every chance.
    indexes, live = (RankedBatches(), RankedBatches(slack=0)), {}
    for op, n, rank, skip in steps:
        batch = _waiting(f"b{n:02d}", "ABCD"[n % 4])
        for ranked in indexes:
            if op == "put":
                ranked.put(batch, (rank,))
                live[batch.id] = ((rank,), batch)
            elif op == "drop":
                ranked.drop([batch.id])
                live.pop(batch.id, None)
            else:
                left = [(r, b.id, b) for r, b in live.values() if b.project not in skip]
                assert ranked.best(skip) == (min(left)[2] if left else None)
            assert len(ranked) == len(live)


def _waiting(id_: str, project: str) -> Waiting:
    return Waiting(id_, project, "u", "MEDIUM", "EMU_FREE", 0.0, False, 1, 1, 1.0)


SWF = """\
; Version: 2.2
; Computer: a test machine
; MaxJobs: 6
; Queue: 1 fast, 2 normal, 3 batch
1   0  5 100  4 -1 -1  4 200 -1 1  7  3 -1 1 1 -1 -1
2  10 -1  50 -1 -1 -1  2  60 -1 1  8  3 -1 3 1 -1 -1
3  20  0  30  1 -1 -1  1  30 -1 1  7  3 -1 2 1  1 15
4  30  0  -1  1 -1 -1  1  30 -1 0  9  4 -1 1 1 -1 -1
5  -1  0  10  1 -1 -1  1  10 -1 1  9  4 -1 1 1 -1 -1
6  40  0  20  2 -1 -1  2  20 -1 1  7  3 -1 9 1  3  5
7  50  0  12  3 -1 -1  3  12 -1 1 -1 -1 -1 -1 -1 99 -1
"""


def test_swf_lines_become_batches(tmp_path):
    path = tmp_path / "log.swf"
    path.write_text(SWF)
    batches = {b.id: b for b in read_swf(path, "EMU_FREE")}
    # 4 has no run time and 5 no submit time: skipped. 3 and 6 follow 1: one open batch.
    assert sorted(batches) == ["1", "2", "7"]
    loop = batches["1"]
    assert (loop.user, loop.project, loop.priority, loop.open) == ("7", "3", "HIGH", True)
    assert [(j.qpu_s, j.think_s) for j in loop.jobs] == [
        (25.0, 0.0),
        (25.0, 0.0),
        (25.0, 0.0),
        (25.0, 0.0),  # job 1: 4 processors x 25 s
        (30.0, 15.0),  # job 3, 15 s after job 1 ended
        (10.0, 5.0),
        (10.0, 0.0),  # job 6: 2 processors
    ]
    assert loop.hold_s == 100 + 30 + 20 + 15 + 5
    # Allocated processors unknown: the requested ones; queue 3 is LOW.
    assert [j.qpu_s for j in batches["2"].jobs] == [25.0, 25.0]
    assert batches["2"].priority == "LOW" and not batches["2"].open
    # Unknown user, group and queue; a preceding job that is not in the file: a batch alone.
    assert (batches["7"].user, batches["7"].project, batches["7"].priority) == (
        "unknown",
        "unknown",
        "MEDIUM",
    )


def test_a_bad_trace_line_is_named(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": "x", "submit_s": 0, "project": "p", "user": "u", "jobs": []}\n')
    with pytest.raises(TraceError, match=r"t.jsonl:1: jobs: List should have at least 1 item"):
        read_trace(path)
    path.write_text("; not an swf line with 18 fields\n1 2 3\n")
    with pytest.raises(TraceError, match="18 fields"):
        read_swf(path, "EMU_FREE")


def test_tweezer_simulate_writes_the_same_bytes_twice(tmp_path, capsys):
    trace = tmp_path / "lab.jsonl"
    lines = [json.dumps({"format": "tweezer-trace", "version": 1})]
    for i in range(300):
        lines.append(
            json.dumps(
                {
                    "id": f"b{i}",
                    "submit_s": i * 7 % 113 + i / 10,
                    "project": f"p{i % 4}",
                    "user": f"u{i % 7}",
                    "priority": ("HIGH", "MEDIUM", "LOW")[i % 3],
                    "open": i % 5 == 0,
                    "jobs": [{"runs": 10, "qpu_s": 1 + i % 3, "think_s": 0.5}] * (1 + i % 2),
                }
            )
        )
    trace.write_text("\n".join(lines) + "\n")
    outputs = []
    for run in ("one", "two"):
        out = tmp_path / run
        argv = ["simulate", "--trace", str(trace), "--policy", "fair-share", "--out", str(out)]
        assert main([*argv, "--qpus", "EMU_FREE=2", "--shares", "p0=2"]) == 0
        outputs.append(((out / "batches.csv").read_bytes(), (out / "summary.json").read_bytes()))
    assert outputs[0] == outputs[1]
    csv_lines = outputs[0][0].decode().splitlines()
    assert csv_lines[0] == ",".join(CSV_COLUMNS) and len(csv_lines) == 301
    summary = json.loads(outputs[0][1])
    assert summary["batches"] == 300 and summary["qpus"] == {"EMU_FREE": 2}
    split = summary["utilisation"]
    assert split["computing"] + split["held_idle"] + split["free"] == pytest.approx(1, abs=1e-5)
    assert split["held_idle"] > 0  # the open batches' think time
    assert set(summary["wait_s"]["by_priority"]) == {"HIGH", "MEDIUM", "LOW"}
    assert 0 < summary["fairness"]["jain_index"] <= 1
    assert "fair-share: 300 batches" in capsys.readouterr().out


def test_tweezer_simulate_refuses_bad_options(tmp_path, capsys):
    assert main(["simulate", "--swf", str(tmp_path / "missing.swf")]) == 2
    assert "missing.swf" in capsys.readouterr().err
    path = tmp_path / "ok.swf"
    path.write_text(SWF)
    assert main(["simulate", "--swf", str(path), "--policy", "nope"]) == 2
    assert "unknown policy" in capsys.readouterr().err
    assert main(["simulate", "--swf", str(path), "--shares", "A=0"]) == 2


def test_the_simulator_takes_a_live_state_to_forecast_from():
    """QPUs already busy and usage already counted, as a forecast from a live cluster starts."""
    from scheduling.simulator import Busy
    from scheduling.snapshot import Holding

    waiting = [closed("x", 0, "A", "MEDIUM", 5), closed("y", 0, "B", "MEDIUM", 5)]
    sim = Simulation(load_policy("fair-share"), {"EMU_FREE": 1}, usage={"EMU_FREE": {"A": 50}})
    busy = [Busy("EMU_FREE-0", 3.0, Holding("z", "C", -10.0))]
    assert starts(sim.run(waiting, busy)) == [("y", 3.0, 8.0), ("x", 8.0, 13.0)]


def queue_of(count: int, seed: int) -> list[SimBatch]:
    """`count` batches of three projects and three levels, all waiting at t=0."""
    rng = random.Random(seed)
    return [
        closed(f"q{i:02}", 0, "ABC"[i % 3], ("HIGH", "MEDIUM", "LOW")[i % 3], rng.randint(1, 20))
        for i in range(count)
    ]


@pytest.mark.parametrize("policy", ["fair-share", "shortest-first"])
def test_forecasts_say_when_each_waiting_batch_starts(redis_only, policy):
    """With predictions that are right, the forecast made when the queue formed is what then
    happens, to the second, batch by batch."""
    workload = queue_of(12, seed=1)
    live = LiveRun(redis_only, policy)
    live.drive(workload, until=0)  # the queue forms; one batch takes the QPU; a forecast is made
    forecast = {
        live.ids[b.id]: b.forecast
        for b in live.store.with_forecasts(live.store.get_batches(live.ids))
        if b.forecast is not None
    }
    queue = live.store.forecast_queue("EMU_FREE")
    assert [b.forecast.position for b in queue] == list(range(1, 12))
    happened = LiveRun(redis_only, policy, namespace="t2").drive(workload)
    assert {i: s for i, s, _ in happened} == {
        i: f.start_s - T0 / SECOND for i, f in forecast.items()
    }


def test_the_eta_error_on_a_workload_with_imperfect_predictions(redis_only):
    """Predictions off by up to ±50%: the error of each forecast start, relative to the wait,
    made when the queue formed. Reported in the README ("Scheduling policies")."""
    workload = queue_of(30, seed=2)
    rng = random.Random(3)
    predicted = {b.id: b.hold_s * rng.uniform(0.5, 1.5) for b in workload}
    live = LiveRun(redis_only, "fair-share")
    live.drive(workload, predicted, until=0)
    forecast = {
        live.ids[b.id]: b.forecast
        for b in live.store.with_forecasts(live.store.get_batches(live.ids))
    }
    happened = LiveRun(redis_only, "fair-share", namespace="t2").drive(workload, predicted)
    errors = sorted(
        abs(forecast[i].start_s - T0 / SECOND - start) / start
        for i, start, _ in happened
        if start > 0
    )
    median, p90 = percentile(errors, 50), percentile(errors, 90)
    print(
        f"ETA error, |estimated - actual start| / actual wait: median {median:.2f}, p90 {p90:.2f}"
    )
    assert median < 0.25 and p90 < 0.5, (median, p90)
