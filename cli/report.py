"""`tweezer report TRACE [TRACE ...] --out DIR`: metrics and plots of runs, side by side."""

from __future__ import annotations

import argparse
import html
import json
from pathlib import Path
from typing import Any

from core.errors import ConfigurationError
from lab.report import summary, summary_json
from lab.runs import Run, read_run
from lab.traces import TraceError

#: The metrics of the comparison table: (label, path in a run's summary).
TABLE = (
    ("batches", ("batches",)),
    ("makespan (s)", ("makespan_s",)),
    ("QPU computing", ("utilisation", "computing")),
    ("QPU held idle", ("utilisation", "held_idle")),
    ("QPU down", ("utilisation", "down")),
    ("QPU free", ("utilisation", "free")),
    ("wait p50 (s)", ("wait_s", "all", "p50")),
    ("wait p95 (s)", ("wait_s", "all", "p95")),
    ("wait max (s)", ("wait_s", "all", "max")),
    ("bounded slowdown, mean", ("bounded_slowdown", "mean")),
    ("bounded slowdown, p95", ("bounded_slowdown", "p95")),
    ("Jain's index", ("fairness", "jain_index")),
    ("batches per hour", ("throughput", "batches_per_hour")),
)


def add_report_command(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report",
        help="compare runs (traces with outcomes): DIR/index.html, PNG plots, DIR/summary.json",
    )
    report.add_argument("traces", nargs="+", type=Path, metavar="TRACE")
    report.add_argument("--out", type=Path, default=Path("report"), help="output directory")


def run_report(args: argparse.Namespace) -> int:
    try:
        runs = [read_run(path) for path in args.traces]
    except (OSError, TraceError) as exc:
        raise ConfigurationError(str(exc)) from None
    _unique_names(runs)
    summaries = {
        run.name: summary(
            run.outcomes, run.batches, run.qpus, run.shares, run.policy, run.header.down
        )
        for run in runs
    }
    data = {"runs": summaries, "differences": differences(summaries)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(summary_json(data))
    from lab.plots import draw_all  # matplotlib only when drawing

    images = draw_all(runs, args.out)
    (args.out / "index.html").write_text(page(runs, summaries, images))
    print(f"report of {len(runs)} run(s) -> {args.out}/index.html")
    return 0


def differences(summaries: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each table metric of every run but the first, minus the first run's."""
    names = list(summaries)
    first = summaries[names[0]]
    return {
        name: {
            label: round(_at(summaries[name], path) - _at(first, path), 6) for label, path in TABLE
        }
        for name in names[1:]
    }


def page(runs: list[Run], summaries: dict[str, dict[str, Any]], images: list[str]) -> str:
    """index.html: the metrics table and every plot; no script, nothing fetched from afar."""
    e = html.escape
    head = "".join(f"<th>{e(r.name)}<br><small>{e(r.policy)}</small></th>" for r in runs)
    rows = []
    for label, path in TABLE:
        first = _at(summaries[runs[0].name], path)
        cells = []
        for run in runs:
            value = _at(summaries[run.name], path)
            delta = "" if run is runs[0] else f" <small>({value - first:+.3g})</small>"
            cells.append(f"<td>{value:.4g}{delta}</td>")
        rows.append(f"<tr><th>{e(label)}</th>{''.join(cells)}</tr>")
    figures = "".join(f'<figure><img src="{e(name)}" alt="{e(name)}"></figure>' for name in images)
    sources = "".join(
        f"<li>{e(r.name)}: {e(r.header.source or 'trace')}, "
        f"{len(r.outcomes)} of {len(r.batches)} batches started, QPUs "
        f"{e(json.dumps(r.qpus))}</li>"
        for r in runs
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tweezer report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}img{{max-width:100%}}</style>
</head><body>
<h1>Tweezer report</h1>
<ul>{sources}</ul>
<table><tr><th></th>{head}</tr>{"".join(rows)}</table>
<p>Differences are against the first run. Waits are from submission to start; bounded
slowdown is max(1, (wait + run) / max(run, 10 s)); Jain's index is of QPU time per share.</p>
{figures}
</body></html>
"""


def _at(data: dict[str, Any], path: tuple[str, ...]) -> float:
    value: Any = data
    for key in path:
        value = value[key]
    return float(value)


def _unique_names(runs: list[Run]) -> None:
    seen: dict[str, int] = {}
    for i, run in enumerate(runs):
        count = seen.get(run.name, 0)
        seen[run.name] = count + 1
        if count:
            runs[i] = Run(
                f"{run.name}-{count + 1}", run.header, run.batches, run.outcomes, run.qpus
            )
