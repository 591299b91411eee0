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
    ("wait mean (s)", ("wait_s", "all", "mean")),
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
    report.add_argument(
        "traces",
        nargs="+",
        type=Path,
        metavar="TRACE",
        help="a trace with outcomes, or a directory: its trace.jsonl, or each POLICY/trace.jsonl "
        "of `tweezer simulate --policy a,b,...` in the order it ran them",
    )
    report.add_argument("--out", type=Path, default=Path("report"), help="output directory")


def run_report(args: argparse.Namespace) -> int:
    try:
        runs = [read_run(path) for path in run_paths(args.traces)]
    except (OSError, TraceError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from None
    _unique_names(runs)
    summaries = {
        run.name: summary(
            run.outcomes, run.batches, run.qpus, run.shares, run.policy, run.header.down
        )
        for run in runs
    }
    rows = table_rows(summaries)
    # Keys are written sorted: the order of the columns (the first is what differences are
    # against) is said apart.
    data = {
        "order": list(summaries),
        "runs": summaries,
        "differences": differences(summaries, rows),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(summary_json(data))
    from lab.plots import draw_all  # matplotlib only when drawing

    images = draw_all(runs, args.out)
    (args.out / "index.html").write_text(page(runs, summaries, images, rows))
    print(f"report of {len(runs)} run(s) -> {args.out}/index.html")
    return 0


#: Projects beyond which the table leaves per-project waits to the plots and summary.json (an
#: SWF may have hundreds of groups).
TABLE_PROJECTS = 12

Row = tuple[str, tuple[str, ...]]


def run_paths(given: list[Path]) -> list[Path]:
    """The traces to report on: each file as given; a directory's own trace.jsonl, or the
    runs of `tweezer simulate --policy a,b,...` in it (DIR/POLICY/trace.jsonl, in the order of
    DIR/policies.json)."""
    paths = []
    for path in given:
        if not path.is_dir():
            paths.append(path)
        elif (path / "trace.jsonl").is_file():
            paths.append(path / "trace.jsonl")
        else:
            listed = path / "policies.json"
            if listed.is_file():
                try:
                    data = json.loads(listed.read_text())
                except ValueError as exc:
                    raise ValueError(f"{listed}: not JSON: {exc}") from None
                names = data.get("policies") if isinstance(data, dict) else None
                if not isinstance(names, list) or not all(_component(n) for n in names):
                    raise ValueError(f'{listed}: expected {{"policies": [directory names]}}')
                found = [path / name / "trace.jsonl" for name in names]
            else:
                found = sorted(path.glob("*/trace.jsonl"))
            if not found:
                raise ValueError(f"{path}: no trace.jsonl in it nor in its subdirectories")
            paths.extend(found)
    return paths


def _component(name: object) -> bool:
    """Whether `name` is one plain path component (a run's directory under DIR)."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name


def table_rows(summaries: dict[str, dict[str, Any]]) -> list[Row]:
    """TABLE, then the waits of each priority and (when there are few) each project that any
    run has."""
    rows: list[Row] = list(TABLE)
    for group, label in (("by_priority", "priority"), ("by_project", "project")):
        names = sorted({n for s in summaries.values() for n in s["wait_s"][group]})
        if group == "by_project" and len(names) > TABLE_PROJECTS:
            continue
        for name in names:
            for stat in ("mean", "p95"):
                rows.append((f"wait {stat}, {label} {name} (s)", ("wait_s", group, name, stat)))
    return rows


def differences(
    summaries: dict[str, dict[str, Any]], rows: list[Row] | None = None
) -> dict[str, dict[str, float | None]]:
    """Each table metric of every run but the first, minus the first run's (None where either
    run has no such figure: a priority none of its batches had)."""
    names = list(summaries)
    first = summaries[names[0]]
    out: dict[str, dict[str, float | None]] = {}
    for name in names[1:]:
        out[name] = {}
        for label, path in rows or TABLE:
            ours, theirs = _at(summaries[name], path), _at(first, path)
            if ours is None or theirs is None:
                out[name][label] = None
            else:
                out[name][label] = round(ours - theirs, 6)
    return out


def page(
    runs: list[Run],
    summaries: dict[str, dict[str, Any]],
    images: list[str],
    rows: list[Row] | None = None,
) -> str:
    """index.html: the metrics table and every plot; no script, nothing fetched from afar."""
    e = html.escape
    head = "".join(f"<th>{e(r.name)}<br><small>{e(r.policy)}</small></th>" for r in runs)
    lines = []
    for label, path in rows or TABLE:
        first = _at(summaries[runs[0].name], path)
        cells = []
        for run in runs:
            value = _at(summaries[run.name], path)
            if value is None:
                cells.append("<td>-</td>")
                continue
            delta = ""
            if first is not None and run is not runs[0]:
                delta = f" <small>({value - first:+.3g})</small>"
            cells.append(f"<td>{value:.4g}{delta}</td>")
        lines.append(f"<tr><th>{e(label)}</th>{''.join(cells)}</tr>")
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
<table><tr><th></th>{head}</tr>{"".join(lines)}</table>
<p>Differences are against the first run. Waits are from submission to start; bounded
slowdown is max(1, (wait + run) / max(run, 10 s)); Jain's index is of QPU time per share.</p>
{figures}
</body></html>
"""


def _at(data: dict[str, Any], path: tuple[str, ...]) -> float | None:
    """The figure at `path`, or None where the run has none (or it is not a number)."""
    value: Any = data
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


def _unique_names(runs: list[Run]) -> None:
    seen: dict[str, int] = {}
    for i, run in enumerate(runs):
        count = seen.get(run.name, 0)
        seen[run.name] = count + 1
        if count:
            runs[i] = Run(
                f"{run.name}-{count + 1}", run.header, run.batches, run.outcomes, run.qpus
            )
