"""`tweezer report` on runs of one workload under two policies, and `tweezer trace export` of a
real cluster's history replayed by `tweezer simulate`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import matplotlib.image

from cli.main import main
from lab.runs import read_run
from lab.traces import read_records, read_swf
from tests import sequences
from tests.helpers import run_admin, wait_for

#: One QPU; under fifo the batches start at 0, 10, 20, 21 and wait 0, 9, 18, 18.
TINY = [
    {"id": "a1", "submit_s": 0, "project": "a", "user": "ua", "jobs": [{"qpu_s": 10}]},
    {"id": "a2", "submit_s": 1, "project": "a", "user": "ua", "jobs": [{"qpu_s": 10}]},
    {
        "id": "b1",
        "submit_s": 2,
        "project": "b",
        "user": "ub",
        "priority": "LOW",
        "jobs": [{"qpu_s": 1}],
    },
    {
        "id": "c1",
        "submit_s": 3,
        "project": "c",
        "user": "uc",
        "priority": "HIGH",
        "open": True,
        "jobs": [{"qpu_s": 2}, {"qpu_s": 2, "think_s": 3}],
    },
]


def test_report_compares_two_policies_in_numbers_and_pictures(tmp_path, capsys):
    trace = tmp_path / "tiny.jsonl"
    trace.write_text("".join(json.dumps(line) + "\n" for line in TINY))
    for policy in ("fifo", "priority"):
        out = tmp_path / policy
        assert main(["simulate", "--trace", str(trace), "--policy", policy, "--out", str(out)]) == 0
    report = tmp_path / "report"
    runs = [str(tmp_path / p / "trace.jsonl") for p in ("fifo", "priority")]
    assert main(["report", *runs, "--out", str(report)]) == 0

    summary = json.loads((report / "summary.json").read_text())
    fifo = summary["runs"]["fifo"]
    # By hand: waits 0, 9, 18, 18; makespan 28 s; 25 s computing and 3 s held idle (c1 thinks).
    assert fifo["wait_s"]["all"] == {
        "count": 4,
        "mean": 11.25,
        "p50": 13.5,
        "p95": 18.0,
        "max": 18.0,
    }
    assert fifo["makespan_s"] == 28.0
    assert fifo["utilisation"] == {
        "computing": 0.892857,
        "held_idle": 0.107143,
        "down": 0.0,
        "free": 0.0,
    }
    # Bounded slowdown, tau 10: a1 1, a2 (9+10)/10, b1 (18+1)/10, c1 (18+7)/10.
    assert fifo["bounded_slowdown"]["max"] == 2.5 and fifo["bounded_slowdown"]["mean"] == 1.825
    # QPU time per project 20, 1, 7 with equal shares: (28^2) / (3 * (400 + 1 + 49)).
    assert fifo["fairness"]["jain_index"] == round(28**2 / (3 * 450), 6)
    # Under priority, c1 (HIGH) starts at 10: waits 0, 16, 25, 7.
    priority = summary["runs"]["priority"]
    assert priority["wait_s"]["all"]["max"] == 25.0
    assert summary["differences"]["priority"]["wait max (s)"] == 7.0

    page = (report / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    # The six plots of each run side by side, and the runs' headline figures compared.
    assert sorted(images) == sorted(p.name for p in report.glob("*.png")) and len(images) == 7
    for name in images:
        data = (report / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert matplotlib.image.imread(report / name).shape[1] > 400  # two panels side by side
    assert "http" not in page  # nothing fetched from afar: it opens from disk
    assert "report of 2 run(s)" in capsys.readouterr().out


def test_simulate_compares_several_policies_in_one_command(tmp_path, capsys):
    """`tweezer simulate --policy a,b,...` runs each policy on the same trace in processes of
    their own; `tweezer report DIR` is one page of them side by side, in the order given."""
    trace = tmp_path / "tiny.jsonl"
    trace.write_text("".join(json.dumps(line) + "\n" for line in TINY))
    policies = ["priority", "fifo", "fair-share", "shortest-first"]
    out = tmp_path / "compared"
    argv = ["simulate", "--trace", str(trace), "--policy", ",".join(policies), "--out", str(out)]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert all(f"-> {out / p}/" in said for p in policies) and "tweezer report" in said
    # Each policy's run is the one a command of its own gives.
    alone = tmp_path / "fifo-alone"
    assert main(["simulate", "--trace", str(trace), "--policy", "fifo", "--out", str(alone)]) == 0
    assert (out / "fifo" / "summary.json").read_text() == (alone / "summary.json").read_text()
    assert (out / "fifo" / "batches.csv").read_text() == (alone / "batches.csv").read_text()

    report = tmp_path / "report"
    assert main(["report", str(out), "--out", str(report)]) == 0
    summary = json.loads((report / "summary.json").read_text())
    assert summary["order"] == policies and set(summary["runs"]) == set(policies)
    assert summary["runs"]["fifo"]["wait_s"]["all"]["mean"] == 11.25  # as computed by hand above
    assert summary["runs"]["priority"]["wait_s"]["by_priority"]["HIGH"]["mean"] == 7.0
    # Priority starts c1 (HIGH) 11 s sooner than fifo, which is the first column here.
    assert summary["differences"]["fifo"]["wait mean, priority HIGH (s)"] == 11.0
    page = (report / "index.html").read_text()
    assert "wait p95, priority LOW (s)" in page and "wait mean, project a (s)" in page
    assert 'src="comparison.png"' in page
    assert re.findall(r"<th>([^<]+)<br><small>", page) == policies  # columns as given
    assert matplotlib.image.imread(report / "comparison.png").shape[1] > 800  # four panels


def test_simulate_refuses_a_policy_twice_or_unknown_before_running_any(tmp_path, capsys):
    trace = tmp_path / "tiny.jsonl"
    trace.write_text("".join(json.dumps(line) + "\n" for line in TINY))
    for policies, message in (
        ("fifo,fifo", "names a policy twice"),
        ("fifo,nope", "nope"),
        (",", "at least one policy"),
        ("fifo,../x", "'../x' is not a policy name"),
    ):
        argv = ["simulate", "--trace", str(trace), "--policy", policies, "--out", str(tmp_path)]
        assert main([*argv[:-1], str(tmp_path / "out")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_report_of_a_directory_refuses_a_policies_file_that_leads_elsewhere(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    for listed in ('{"policies": ["../elsewhere"]}', '["fifo"]', "{"):
        (runs / "policies.json").write_text(listed)
        assert main(["report", str(runs), "--out", str(tmp_path / "r")]) == 2
        assert "policies.json" in capsys.readouterr().err
    (runs / "policies.json").unlink()
    assert main(["report", str(runs), "--out", str(tmp_path / "r")]) == 2
    assert "no trace.jsonl in it" in capsys.readouterr().err


def test_report_refuses_a_trace_without_outcomes(tmp_path, capsys):
    trace = tmp_path / "plain.jsonl"
    trace.write_text("".join(json.dumps(line) + "\n" for line in TINY))
    assert main(["report", str(trace), "--out", str(tmp_path / "r")]) == 2
    assert "no batch has a start and an end" in capsys.readouterr().err


def test_a_clusters_history_exports_as_a_trace_and_replays(cluster, tmp_path):
    """What ran on a real cluster, exported, simulated again under another policy; and as SWF,
    read back into the same batches (an open batch as a chain of jobs)."""
    account = cluster.new_account()
    sdk = cluster.sdk(account)
    seq = sequences.parametrized()
    job = {"runs": 5, "variables": {"omega_max": 6}}
    closed = sdk.create_batch(seq, [job, job], device_type="EMU_FREE", wait=True)
    # A device goes down for a moment between two batches: the trace says when, and the
    # report counts its QPU's time as down.
    run_admin(cluster, "device", "status", "FRESNEL", "DOWN", "--reason", "test")
    time.sleep(0.2)
    run_admin(cluster, "device", "status", "FRESNEL", "UP")
    loop = sdk.create_batch(seq, [job], device_type="EMU_FREE", open=True)
    for _ in range(2):  # a variational loop: each round waits for the last one's results
        wait_for(lambda: sdk.get_batch(loop.id).jobs_count_per_status["DONE"] == loop.jobs_count)
        time.sleep(0.3)  # the optimiser thinks
        loop.add_jobs([job])
    loop.close(wait=True)
    assert sdk.get_batch(loop.id).jobs_count == 3

    exported = tmp_path / "history.jsonl"
    exported.write_text(run_admin(cluster, "trace", "export"))
    header, records = read_records(exported)
    went, came = header.down["FRESNEL"][-1]  # earlier tests may have taken it down too
    assert 0.2 <= came - went < 30
    assert main(["report", str(exported), "--out", str(tmp_path / "report")]) == 0
    down = json.loads((tmp_path / "report" / "summary.json").read_text())["runs"]["history"]
    assert down["utilisation"]["down"] > 0
    assert header.source == "export" and header.qpus == cluster.settings.qpus and header.origin_s
    mine = {r.id: r for r in records if r.project == account.project_id}
    assert set(mine) == {closed.id, loop.id}
    for r in mine.values():
        assert r.status == "DONE" and r.submit_s <= r.start_s <= r.end_s
        assert all(j.qpu_s and j.qpu_s > 0 for j in r.jobs)
    assert not mine[closed.id].open and mine[loop.id].open
    thinks = [j.think_s for j in mine[loop.id].jobs]
    assert thinks[0] == 0 and all(t >= 0.3 for t in thinks[1:])  # it waited for results
    assert read_run(exported).outcomes  # a run to report on, as exported

    out = tmp_path / "replay"
    argv = ["simulate", "--trace", str(exported), "--policy", "fifo", "--out", str(out)]
    assert main(argv) == 0
    replayed = (out / "batches.csv").read_text()
    assert closed.id in replayed and loop.id in replayed

    swf = tmp_path / "history.swf"
    swf.write_text(run_admin(cluster, "trace", "export", "--swf"))
    batches = read_swf(swf, "EMU_FREE")
    # The same batches and jobs; an open batch of several jobs is a chain in SWF, read back
    # as one open batch (one of a single job is, in SWF, a closed one).
    assert len(batches) == len(records)
    assert sum(len(b.jobs) for b in batches) == sum(len(r.jobs) for r in records)
    assert sum(b.open for b in batches) == sum(r.open and len(r.jobs) > 1 for r in records)


def test_export_says_when_there_is_nothing_to_export(cluster):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "trace",
            "export",
            "--since",
            "2999-01-01T00:00:00",
        ],
        capture_output=True,
        text=True,
        env={
            "TWEEZER_REDIS_URL": cluster.settings.redis_url,
            "TWEEZER_NAMESPACE": cluster.settings.namespace,
            "PATH": "",
        },
    )
    assert done.returncode == 1 and "no batch to export" in done.stderr
