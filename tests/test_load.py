"""`tweezer load` against a real cluster with synthetic devices: a workload through the SDK,
its open-batch loops waiting for their results, the recorded trace, its replay in the
simulator, and Ctrl-C closing open batches. And workload files planned the same every time."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.accounts import Accounts
from core.hints import QPU_SECONDS_VARIABLE
from core.store import BatchQuery, Page
from lab.traces import read_records
from lab.workload import WorkloadError, plan, read_workload
from tests import sequences
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent

WORKLOAD = """\
name: test
seed: 3
duration_s: 30
projects:
  - name: loops
    share: 2
    users: [ada, bo]
    arrivals: {bursts: [{at_s: 0, batches: 2}]}
    jobs: {min: 1, max: 2}
    runs: {choices: [20]}
    open_fraction: 1
    rounds: {min: 3, max: 3}
    think_s: {min: 4, max: 4}
  - name: batchers
    priority: LOW
    users: [cy]
    arrivals: {bursts: [{at_s: 10, batches: 3}, {at_s: 20, batches: 2}]}
    jobs: {min: 2, max: 3}
    runs: {min: 10, max: 30}
"""


@pytest.fixture(scope="module")
def synthetic(start_cluster, tmp_path_factory):
    """A cluster whose device is synthetic, and a data dir that names it (cluster.json)."""
    cluster = start_cluster(qpus={"EMU_FREE": 1}, synthetic_devices=True, forecast_interval_s=1.0)
    return cluster, _data_dir(cluster, tmp_path_factory.mktemp("load"))


def _data_dir(cluster, data_dir: Path) -> Path:
    """`data_dir` with a cluster.json that names `cluster`, as `tweezer up` writes one."""
    info = {
        "core_url": cluster.core_url,
        "account_url": cluster.account_url,
        "redis_url": cluster.settings.redis_url,
        "namespace": cluster.settings.namespace,
        "qpus": cluster.settings.qpus,
        "policy": cluster.settings.policy,
    }
    (data_dir / "cluster.json").write_text(json.dumps(info))
    return data_dir


def test_a_synthetic_device_predicts_the_time_a_load_test_gives_each_job(synthetic):
    """What the policies, the forecasts and the dispatcher's chunks are told of a job on a
    synthetic device is the time it will take there (tweezer_qpu_s), not the emulator's."""
    cluster, _ = synthetic
    sdk = cluster.sdk(cluster.new_account())
    jobs = [{"runs": 1, "variables": {QPU_SECONDS_VARIABLE: s}} for s in (0.25, 0.5)]
    batch = sdk.create_batch(sequences.fixed(), jobs, device_type="EMU_FREE", wait=True)
    assert batch.status == "DONE"
    stored = cluster.store.get_batch(batch.id)
    assert stored.predicted_qpu_s == pytest.approx(0.75)  # one job at a time
    assert [cluster.store.get_job(j.id).qpu_s for j in batch.ordered_jobs] == [0.25, 0.5]


def load(data_dir: Path, *args: str, **popen) -> subprocess.Popen:
    argv = [sys.executable, "-m", "cli.main", "load", *args, "--data-dir", str(data_dir)]
    return subprocess.Popen(argv, cwd=ROOT, text=True, **popen)


def test_a_workload_file_is_planned_the_same_every_time(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text(WORKLOAD)
    first, again = plan(read_workload(path)), plan(read_workload(path))
    assert first == again and len(first) == 7
    seeds = [job.seed for batch in first for jobs in batch.rounds for job in jobs]
    assert len(set(seeds)) == len(seeds)  # each job's shots have a seed of their own
    assert sum(b.open for b in first) == 2 and all(len(b.rounds) == 3 for b in first if b.open)
    path.write_text(WORKLOAD.replace("seed: 3", "seed: 4"))
    assert plan(read_workload(path)) != first
    path.write_text(WORKLOAD.replace("runs: {choices: [20]}", "runs: {min: 5}"))
    with pytest.raises(WorkloadError, match="give either min and max, or choices"):
        read_workload(path)


def test_a_workload_through_the_sdk_is_recorded_and_replays_in_the_simulator(synthetic, tmp_path):
    _, data_dir = synthetic
    workload = tmp_path / "w.yaml"
    workload.write_text(WORKLOAD)
    trace = tmp_path / "run.jsonl"
    done = load(
        data_dir,
        str(workload),
        "--speedup",
        "10",
        "--out",
        str(trace),
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert "submitted 7/7" in err and "errors 0" in err  # the progress line

    header, records = read_records(trace)
    assert header.source == "load" and header.shares == {"loops": 2.0, "batchers": 1.0}
    assert len(records) == 7 and {r.status for r in records} == {"DONE"}
    for r in records:
        assert r.submit_s <= r.start_s <= r.end_s
    loops = [r for r in records if r.project == "loops"]
    assert len(loops) == 2 and all(r.open for r in loops)
    for r in loops:
        thinks = [j.think_s for j in r.jobs if j.think_s > 0]
        # Two rounds after the first, each added 4 s / 10 after the last results came in.
        assert len(thinks) == 2 and all(t >= 0.4 for t in thinks), r.jobs

    # The simulator, given what happened, starts the batches in the same order. (The workload
    # keeps every choice clear of a race between an arrival and a QPU coming free, which the
    # scheduler sees a pass later than the simulator does.)
    sim = tmp_path / "sim"
    argv = [
        sys.executable,
        "-m",
        "cli.main",
        "simulate",
        "--trace",
        str(trace),
        "--out",
        str(sim),
    ]
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
    with (sim / "batches.csv").open() as handle:
        simulated = [
            row["id"] for row in sorted(csv.DictReader(handle), key=lambda r: float(r["start_s"]))
        ]
    recorded = [r.id for r in sorted(records, key=lambda r: r.start_s)]
    agreement = sum(a == b for a, b in zip(simulated, recorded, strict=True)) / len(recorded)
    print(f"start order agreement, load vs simulate of its trace: {agreement:.0%}")
    assert simulated == recorded

    # The same workload simulated from the file compares with the real run, batch for batch.
    planned = tmp_path / "planned"
    argv = [
        sys.executable,
        "-m",
        "cli.main",
        "simulate",
        "--workload",
        str(workload),
        "--out",
        str(planned),
    ]
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
    assert {r.id for r in read_records(planned / "trace.jsonl")[1]} == {r.id for r in records}
    report = tmp_path / "report"
    argv = [
        sys.executable,
        "-m",
        "cli.main",
        "report",
        str(trace),
        str(planned / "trace.jsonl"),
        "--out",
        str(report),
    ]
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
    compared = json.loads((report / "summary.json").read_text())
    assert set(compared["runs"]) == {"run", "planned"}
    assert compared["runs"]["run"]["batches"] == compared["runs"]["planned"]["batches"] == 7


#: Eight SWF jobs of three groups (projects), each job with its own queue number (1 HIGH, 2
#: MEDIUM, 3 LOW; group 1 has all three): job 1 holds the QPU for 40 s while the others
#: arrive, one a second.
MIXED_SWF = """\
; UnixStartTime: 0
1 0 -1 40 1 -1 -1 1 -1 -1 1 1 1 -1 2 -1 -1 -1
2 1 -1 2 1 -1 -1 1 -1 -1 1 1 1 -1 3 -1 -1 -1
3 2 -1 2 1 -1 -1 1 -1 -1 1 2 2 -1 2 -1 -1 -1
4 3 -1 2 1 -1 -1 1 -1 -1 1 1 1 -1 1 -1 -1 -1
5 4 -1 2 1 -1 -1 1 -1 -1 1 3 3 -1 3 -1 -1 -1
6 5 -1 2 1 -1 -1 1 -1 -1 1 2 2 -1 1 -1 -1 -1
7 6 -1 2 1 -1 -1 1 -1 -1 1 3 3 -1 2 -1 -1 -1
8 7 -1 2 1 -1 -1 1 -1 -1 1 1 1 -1 2 -1 -1 -1
"""
#: Under the priority policy: job 1 first, then HIGH, MEDIUM, LOW, each by submission.
MIXED_ORDER = ["1", "4", "6", "3", "7", "8", "2", "5"]
#: Job 7 holds the QPU; jobs 8 to 11, of three groups, are all submitted in the same second:
#: they start in the file's order (not "10" and "11" before "8" and "9", as ids sort). Job 7
#: comes 5 s before them (0.5 s at the replay's 10x): 0.1 s once let a loaded machine's first
#: request lose the race to the second (`tweezer load` orders only same-instant submissions).
TIED_SWF = """\
7 0 -1 60 1 -1 -1 1 -1 -1 1 1 1 -1 2 -1 -1 -1
8 5 -1 2 1 -1 -1 1 -1 -1 1 1 1 -1 2 -1 -1 -1
9 5 -1 2 1 -1 -1 1 -1 -1 1 2 2 -1 2 -1 -1 -1
10 5 -1 2 1 -1 -1 1 -1 -1 1 3 3 -1 2 -1 -1 -1
11 5 -1 2 1 -1 -1 1 -1 -1 1 1 1 -1 2 -1 -1 -1
"""


def test_an_swf_of_per_job_priorities_starts_live_as_simulated(start_cluster, tmp_path):
    """Priority is a project's in the cluster; an SWF's is each job's. `tweezer load` sets a
    project's priority before each of its submissions (and says so), so the live run, its
    recorded trace and `tweezer simulate` of the file all start the jobs in one order."""
    cluster = start_cluster(qpus={"EMU_FREE": 1}, synthetic_devices=True, policy="priority")
    data_dir = tmp_path / "cluster"
    data_dir.mkdir()
    _data_dir(cluster, data_dir)
    swf = tmp_path / "mixed.swf"
    swf.write_text(MIXED_SWF)
    records, err = _replayed(data_dir, swf, tmp_path / "run.jsonl")
    assert "submit batches of several priorities" in err  # said up front
    assert [r.id for r in sorted(records, key=lambda r: r.start_s)] == MIXED_ORDER
    assert {r.id: r.priority for r in records}["4"] == "HIGH"  # group 1's HIGH job, as sent
    assert _simulated(swf, tmp_path / "sim") == MIXED_ORDER

    # Jobs of one second, live and simulated: in the file's order.
    tied = tmp_path / "tied.swf"
    tied.write_text(TIED_SWF)
    records, _ = _replayed(data_dir, tied, tmp_path / "tied.jsonl")
    expected = ["7", "8", "9", "10", "11"]
    assert [r.id for r in sorted(records, key=lambda r: r.start_s)] == expected
    assert _simulated(tied, tmp_path / "tied-sim") == expected


def _replayed(data_dir: Path, swf: Path, trace: Path) -> tuple[list, str]:
    """`tweezer load` of an SWF file on EMU_FREE (10x): its recorded batches, and what it
    said on stderr."""
    done = load(
        data_dir,
        "--swf",
        str(swf),
        "--device-type",
        "EMU_FREE",
        "--speedup",
        "10",
        "--out",
        str(trace),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    return read_records(trace)[1], err


def _simulated(swf: Path, out: Path) -> list[str]:
    """The start order `tweezer simulate` gives an SWF file under the priority policy."""
    argv = [
        sys.executable,
        "-m",
        "cli.main",
        "simulate",
        "--swf",
        str(swf),
        "--policy",
        "priority",
        "--qpus",
        "EMU_FREE=1",
        "--out",
        str(out),
    ]
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
    with (out / "batches.csv").open() as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: float(r["start_s"]))
    return [row["id"] for row in rows]


def test_ctrl_c_stops_submitting_and_closes_open_batches(synthetic, tmp_path):
    cluster, data_dir = synthetic
    workload = tmp_path / "long.yaml"
    workload.write_text(
        WORKLOAD.replace("duration_s: 30", "duration_s: 600").replace(
            "think_s: {min: 4, max: 4}", "think_s: {min: 300, max: 300}"
        )
    )
    trace = tmp_path / "stopped.jsonl"
    accounts = Accounts(cluster.client, cluster.settings.namespace)
    earlier = {p.id for p in accounts.projects()}  # other runs' projects
    running = load(
        data_dir, str(workload), "--out", str(trace), stderr=subprocess.PIPE, stdout=subprocess.PIPE
    )

    def mine() -> list:
        projects = [
            p.id for p in accounts.projects() if p.name.endswith("-loops") and p.id not in earlier
        ]
        query = BatchQuery(project_id=projects)
        return cluster.store.query_batches(query, Page(limit=100))[1] if projects else []

    # The loops' first rounds are in and they are thinking (300 s): interrupt the run.
    wait_for(lambda: len(mine()) >= 2 and all(b.jobs_count >= 1 for b in mine()), timeout_s=60)
    time.sleep(1.0)
    running.send_signal(signal.SIGINT)
    _, err = running.communicate(timeout=120)
    assert running.returncode == 130, err
    assert all(not b.open for b in mine())  # closed, not left holding the QPU
    assert trace.exists() and len(read_records(trace)[1]) >= 2
