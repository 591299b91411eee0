"""Files a lab was sent (traces, SWF logs, workloads) and options typed by hand: whatever they
hold, `tweezer simulate` and `tweezer report` answer with one line naming the line and field,
within seconds, never a hang, a traceback or a file that is not JSON."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cli.main import main

#: An ordinary SWF job: number, submit 0, wait 0, run 10 s, 1 processor, ... user 1, group 1,
#: queue 1, no preceding job.
SWF_FIELDS = [
    "1",
    "0",
    "0",
    "10",
    "1",
    "-1",
    "-1",
    "1",
    "-1",
    "-1",
    "1",
    "1",
    "1",
    "-1",
    "1",
    "-1",
    "-1",
    "-1",
]


def swf_line(**changes: str) -> str:
    fields = list(SWF_FIELDS)
    for index, value in changes.items():
        fields[int(index.removeprefix("f")) - 1] = value
    return " ".join(fields) + "\n"


@contextmanager
def within(seconds: int) -> Iterator[None]:
    """Fails the test (instead of hanging it) when the block runs longer than `seconds`."""

    def expired(*_: object) -> None:
        raise AssertionError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Runs `tweezer argv...` in this process; asserts it refused with one line, and returns
    that line."""
    with within(10):
        code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tweezer: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"f2": "nan"}, "field 2 (submit time)"),  # NaN == NaN is false: looped forever
        ({"f4": "nan"}, "field 4 (run time)"),
        ({"f2": "inf"}, "field 2 (submit time)"),
        ({"f1": "nan"}, "field 1 (job number)"),
        ({"f1": "1e300"}, "field 1 (job number)"),
        ({"f5": "1e11"}, "field 5 (allocated processors)"),  # 1e11 jobs: CPU and memory
        ({"f5": "-1", "f8": "1e11"}, "field 8 (requested processors)"),
        ({"f5": "200000"}, "more than the 100,000 jobs a batch may hold"),
        ({"f4": "1e12"}, "field 4 (run time)"),
        ({"f12": "x"}, "field 12 (user id)"),
    ],
)
def test_hostile_swf_fields_are_one_line_errors(tmp_path, capsys, changes, words):
    swf = tmp_path / "t.swf"
    swf.write_text("; a header comment\n" + swf_line() + swf_line(**{"f1": "2"} | changes))
    line = refused(capsys, "simulate", "--swf", str(swf), "--out", str(tmp_path / "out"))
    assert f"{swf}:3: " in line and words in line, line
    assert not (tmp_path / "out").exists()


def trace_line(**changes: object) -> str:
    batch = {"id": "a", "submit_s": 0, "project": "p", "user": "u", "jobs": [{"qpu_s": 1}]}
    batch.update(changes)
    return json.dumps(batch) + "\n"


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (
            '{"id": "a", "submit_s": 0, "project": "p", "user": "u",'
            ' "jobs": [{"qpu_s": Infinity}]}',
            "jobs.0.qpu_s",
        ),
        (
            '{"id": "a", "submit_s": NaN, "project": "p", "user": "u", "jobs": [{"qpu_s": 1}]}',
            "submit_s",
        ),
        (trace_line(submit_s=1e12), "submit_s"),
        (trace_line(jobs=[{"qpu_s": 1, "runs": 10**12}]), "jobs.0.runs"),
        (trace_line(jobs=[{"qpu_s": 1}] * 100_001), "jobs"),
        (trace_line(jobs=[{"think_s": -1}]), "jobs.0.think_s"),
    ],
)
def test_hostile_trace_lines_are_one_line_errors(tmp_path, capsys, line, words):
    trace = tmp_path / "t.jsonl"
    trace.write_text(trace_line(id="ok") + line.rstrip("\n") + "\n")
    for argv in (
        ["simulate", "--trace", str(trace), "--out", str(tmp_path / "out")],
        ["report", str(trace), "--out", str(tmp_path / "report")],
    ):
        message = refused(capsys, *argv)
        assert f"{trace}:2: " in message and words in message, message
    assert not (tmp_path / "out").exists()


WORKLOAD = """
duration_s: {duration}
projects:
  - name: p
    users: [u]
    arrivals: {{per_hour: {per_hour}}}
    jobs: {jobs}
    atoms: {atoms}
"""


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"per_hour": ".inf"}, "per_hour"),
        ({"per_hour": ".nan"}, "per_hour"),
        ({"per_hour": "1e9", "duration": "1e9"}, "per_hour"),
        ({"per_hour": "1e5", "duration": "1e8"}, "batches"),  # each bound alone, not together
        ({"jobs": "{min: 1e12, max: 1e12}"}, "jobs.max"),
        ({"jobs": "{min: 100000, max: 100000}", "per_hour": "1000", "duration": "3600000"}, "jobs"),
        ({"atoms": "{min: 1000, max: 1000}"}, "atoms"),  # the cost model's 2**atoms
        ({"duration": ".inf"}, "duration_s"),
    ],
)
def test_hostile_workloads_are_one_line_errors(tmp_path, capsys, fields, words):
    values = {
        "duration": "3600",
        "per_hour": "10",
        "jobs": "{min: 1, max: 1}",
        "atoms": "{min: 2, max: 2}",
    } | fields
    workload = tmp_path / "w.yaml"
    workload.write_text(WORKLOAD.format(**values))
    line = refused(capsys, "simulate", "--workload", str(workload), "--out", str(tmp_path / "o"))
    assert str(workload) in line and words in line, line


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--qpus", "EMU_FREE=²"),
        ("--qpus", "EMU_FREE=1000000000"),
        ("--shares", "p=nan"),
        ("--shares", "p=inf"),
        ("--shares", "p=0"),
    ],
)
def test_hostile_options_are_one_line_errors(tmp_path, capsys, option, value):
    trace = tmp_path / "t.jsonl"
    trace.write_text(trace_line())
    line = refused(capsys, "simulate", "--trace", str(trace), option, value)
    assert option in line or value.split("=")[0] in line, line


def test_a_project_named_like_tex_math_is_drawn_as_plain_text(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    names = ["$\\foo{x}$", "$x^{$", "a$b"]
    trace.write_text("".join(trace_line(id=str(i), project=name) for i, name in enumerate(names)))
    out = tmp_path / "sim"
    with within(60):
        assert main(["simulate", "--trace", str(trace), "--out", str(out)]) == 0
        assert main(["report", str(out / "trace.jsonl"), "--out", str(tmp_path / "r")]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["runs"]
    assert len(list((tmp_path / "r").glob("*.png"))) == 6


def test_summaries_are_strict_json(tmp_path):
    from lab.report import summary_json

    text = summary_json({"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": -float("inf")}})
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": {"d": None}}
    assert "NaN" not in text and "Infinity" not in text
