"""`tweezer chaos`: the fault schedule is its seed's, the checker catches each violation planted
on purpose (a checker that cannot fail proves nothing), and a short soak of every fault kind
against a real cluster ends with every invariant holding."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from core.records import Batch, Job, JobAttempt
from core.status import BatchStatus, JobStatus
from lab.checker import Ack, Observed, check
from lab.faults import FaultKind, parse_kinds, schedule

ROOT = Path(__file__).parent.parent
T0 = 1_800_000_000_000_000
MAX_ATTEMPTS = 3


def test_the_fault_schedule_is_the_seeds():
    kinds = tuple(FaultKind)
    one = schedule(7, 600, kinds, 3.0)
    assert one == schedule(7, 600, kinds, 3.0)
    assert one != schedule(8, 600, kinds, 3.0)
    assert 150 < len(one) < 250  # one every 3 s on average
    assert {f.kind for f in one} == set(kinds)
    assert all(0 <= f.at_s < 600 for f in one) and [f.at_s for f in one] == sorted(
        f.at_s for f in one
    )
    lasting = [f for f in one if f.kind is FaultKind.SCHEDULER_PAUSE]
    assert lasting and all(0.5 <= f.for_s <= 15 for f in lasting)
    only = schedule(7, 600, (FaultKind.REDIS_KILL,), 3.0)
    assert {f.kind for f in only} == {FaultKind.REDIS_KILL}
    assert parse_kinds("worker-kill, redis-kill") == (FaultKind.WORKER_KILL, FaultKind.REDIS_KILL)
    assert parse_kinds("all") == kinds
    with pytest.raises(ValueError, match="unknown fault kind 'meteor'"):
        parse_kinds("worker-kill,meteor")


# --- the checker, on a small history, then with one violation planted at a time ------------


def _attempt(qpu: str, start_s: float, end_s: float, outcome: str = "DONE", n: int = 1):
    return JobAttempt(n, qpu, "host:1", T0 + int(start_s * 1e6), T0 + int(end_s * 1e6), outcome)


def _history() -> tuple[list[Ack], Observed]:
    """Two batches of one project that ran one after the other on EMU_FREE-0, a cancelled
    one, all delivered to their webhooks; Redis's counts agree."""
    batches, jobs, shots = {}, {}, {}
    runs = {"a": (10, 20), "b": (5,), "c": (7, 7)}
    spans = {"a": [(0, 1), (1, 2)], "b": [(2.5, 3)]}
    for name, batch_runs in runs.items():
        cancelled = name == "c"
        batches[name] = Batch(
            id=name,
            project_id="p",
            user_id="u",
            device_type="EMU_FREE",
            status=BatchStatus.CANCELED if cancelled else BatchStatus.DONE,
            open=False,
            queue_priority="MEDIUM",
            created_us=T0,
            updated_us=T0,
            webhook="http://h/",
            qpu=None if cancelled else "EMU_FREE-0",
            webhook_state="DELIVERED",
        )
        jobs[name] = []
        for i, r in enumerate(batch_runs):
            job = Job(
                id=f"{name}{i}",
                batch_id=name,
                project_id="p",
                user_id="u",
                status=JobStatus.CANCELED if cancelled else JobStatus.DONE,
                runs=r,
                created_us=T0,
                updated_us=T0,
                attempts=0 if cancelled else 1,
                history=[] if cancelled else [_attempt("EMU_FREE-0", *spans[name][i])],
            )
            jobs[name].append(job)
            shots[job.id] = None if cancelled else r
    acks = [
        Ack("create", "a", "k-a", (10, 20), webhook=True),
        Ack("create", "a", "k-a", (10, 20), webhook=True),  # sent twice: one batch
        Ack("create", "b", "k-b", (5,), webhook=True),
        Ack("create", "c", "k-c", (7, 7), webhook=True),
        Ack("cancel", "c"),
    ]
    seen = Observed(
        batches=batches,
        jobs=jobs,
        result_shots=shots,
        totals={
            ("batch", "EMU_FREE", "DONE"): 2,
            ("batch", "EMU_FREE", "CANCELED"): 1,
            ("job", "EMU_FREE", "DONE"): 3,
            ("job", "EMU_FREE", "CANCELED"): 2,
        },
        batch_counts={"p": {"DONE": 2, "CANCELED": 1}},
        unfinished_jobs={"p": 0},
        open_batches={"p": set()},
        deliveries={"a": 1, "b": 2, "c": 1},
    )
    return acks, seen


def _failing(acks: list[Ack], seen: Observed) -> dict[str, list[str]]:
    verdict = check(acks, seen, MAX_ATTEMPTS)
    return {i.name: i.violations for i in verdict.invariants if i.violations}


def test_a_consistent_history_passes_every_invariant():
    acks, seen = _history()
    verdict = check(acks, seen, MAX_ATTEMPTS)
    assert verdict.ok, list(verdict.lines())
    assert all(i.checks > 0 for i in verdict.invariants)


def test_a_lost_acknowledged_batch_is_caught():
    acks, seen = _history()
    del seen.batches["b"], seen.jobs["b"]
    seen.totals[("batch", "EMU_FREE", "DONE")] = 1
    seen.totals[("job", "EMU_FREE", "DONE")] = 2
    seen.batch_counts["p"]["DONE"] = 1
    assert _failing(acks, seen) == {"acknowledged": ["batch b: acknowledged, not in Redis"]}


def test_a_lost_acknowledged_job_and_an_unfinished_one_are_caught():
    acks, seen = _history()
    seen.jobs["a"] = seen.jobs["a"][:1]
    seen.jobs["b"][0].status = JobStatus.RUNNING
    failing = _failing(acks, seen)
    assert any("1 stored" in v for v in failing["acknowledged"])
    assert any("RUNNING, not terminal" in v for v in failing["acknowledged"])


def test_a_deleted_result_is_caught():
    acks, seen = _history()
    seen.result_shots["a1"] = None
    assert _failing(acks, seen) == {"results": ["job a1: DONE without a stored result"]}


def test_wrong_shots_and_too_many_attempts_are_caught():
    acks, seen = _history()
    seen.result_shots["a0"] = 9
    job = seen.jobs["b"][0]
    job.history = [
        _attempt("EMU_FREE-0", 2.5, 2.6, "LOST", 1),
        _attempt("EMU_FREE-0", 2.6, 2.7, "LOST", 2),
        _attempt("EMU_FREE-0", 2.7, 2.8, "LOST", 3),
        _attempt("EMU_FREE-0", 2.8, 3, "DONE", 4),
    ]
    violations = _failing(acks, seen)["results"]
    assert "job a0: 9 shots stored, 10 asked" in violations
    assert "job b0: 4 attempts, at most 3 allowed" in violations


def test_two_batches_overlapping_on_one_qpu_are_caught():
    acks, seen = _history()
    # b's job starts while a's second job still runs on EMU_FREE-0.
    seen.jobs["b"][0].history = [_attempt("EMU_FREE-0", 1.5, 3)]
    [violation] = _failing(acks, seen)["exclusive"]
    assert "EMU_FREE-0: job b0 of batch b started" in violation and "batch a" in violation


def test_a_job_on_a_qpu_its_batch_was_not_served_by_is_caught():
    acks, seen = _history()
    seen.jobs["b"][0].history = [_attempt("EMU_FREE-1", 2.5, 3)]
    assert _failing(acks, seen) == {
        "exclusive": ["job b0: attempt 1 on EMU_FREE-1, its batch was served by EMU_FREE-0"]
    }


def test_counts_that_drifted_from_the_records_are_caught():
    acks, seen = _history()
    seen.totals[("job", "EMU_FREE", "DONE")] = 4
    seen.unfinished_jobs["p"] = 1
    seen.batch_counts["p"]["CANCELED"] = 0
    violations = _failing(acks, seen)["counts"]
    assert "totals job:EMU_FREE:DONE: 4 counted, 3 records" in violations
    assert "project p: unfinished_jobs 1, 0 records" in violations
    assert "project p batch-counts CANCELED: 0 counted, 1 records" in violations


def test_an_undelivered_webhook_is_caught():
    acks, seen = _history()
    del seen.deliveries["c"]
    [violation] = _failing(acks, seen)["webhooks"]
    assert violation.startswith("batch c: CANCELED, its webhook never received it")


def test_a_second_batch_made_by_a_retry_is_caught():
    acks, seen = _history()
    twin = replace(seen.batches["b"], id="b2")
    seen.batches["b2"] = twin
    seen.jobs["b2"] = []
    seen.totals[("batch", "EMU_FREE", "DONE")] = 3
    seen.batch_counts["p"]["DONE"] = 3
    acks.append(Ack("create", "b2", "k-b", (5,), webhook=False))  # the same key, answered b2
    violations = _failing(acks, seen)["idempotent"]
    assert "key k-b: answered with batches ['b', 'b2']" in violations


def test_a_batch_nobody_was_told_about_is_caught():
    acks, seen = _history()
    seen.batches["ghost"] = replace(seen.batches["b"], id="ghost")
    seen.jobs["ghost"] = [
        replace(
            seen.jobs["b"][0], id="g0", batch_id="ghost", history=[_attempt("EMU_FREE-0", 4, 5)]
        )
    ]
    seen.result_shots["g0"] = 5
    seen.totals[("batch", "EMU_FREE", "DONE")] = 3
    seen.totals[("job", "EMU_FREE", "DONE")] = 4
    seen.batch_counts["p"]["DONE"] = 3
    failing = _failing(acks, seen)
    assert failing["acknowledged"] == ["batch ghost: never acknowledged, its jobs ['g0'] ran"]
    assert failing["idempotent"] == ["batch ghost: created, and no create was answered with it"]


# --- a real soak ----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_short_soak_of_every_fault_kind_loses_nothing(tmp_path):
    """What `make test` runs of the soak: the lab-day workload (its projects, users, open
    rounds), 45 s, a fixed seed, a fault every 1.5 s of every kind (link cuts on namespace hosts
    where the machine allows), then the checker. `make soak` runs thirty minutes."""
    out = tmp_path / "soak"
    workload = ROOT / "examples" / "lab-day.yaml"
    done = subprocess.run(
        # Three clients: the soak shares the machine's two cores with the rest of the suite.
        [
            sys.executable,
            "-m",
            "cli.main",
            "chaos",
            str(workload),
            "--speedup",
            "60",
            "--duration",
            "45",
            "--seed",
            "7",
            "--every",
            "1.5",
            "--clients",
            "3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] and all(not v["violations"] for v in report["invariants"].values()), report[
        "invariants"
    ]
    assert report["faults_total"] >= 20, report["faults"]
    assert len(report["faults"]) >= 6  # most kinds struck at least once
    # The floor only shows the faults struck a live workload; how much of it ran depends on
    # the cores the rest of the suite leaves. Alone: 544 jobs in 61 batches under 33 faults;
    # beside the suite in CI as few as 149 jobs in 21 batches, and 31 jobs once the emulator
    # tests (torch) shared the cores too. The invariants above are the test.
    assert report["jobs"] >= 20 and report["batches"] >= 3, report
    # Only the refusals a client may meet: closing or cancelling a batch that already ended.
    assert all(k.startswith("409 ") for k in report["refused_requests"]), report
    told = [Ack.from_json(line) for line in (out / "acks.jsonl").read_text().splitlines()]
    assert {"create", "add", "close"} <= {a.action for a in told}  # open batches' rounds too
    faults_planned = (out / "faults.jsonl").read_text().splitlines()
    assert len(faults_planned) >= report["faults_total"]
