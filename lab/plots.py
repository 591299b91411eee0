"""The pictures of `tweezer report` (matplotlib, PNG): one file per plot, one panel per run side
by side, so runs of the same workload under different policies (or simulated and real) read at
a glance.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

# A Figure of its own, drawn on the Agg canvas savefig picks for PNG: no pyplot, so nothing
# global (no backend chosen for the process, no figure registry to leak into).
from matplotlib import rc_context
from matplotlib.figure import Figure

from lab.report import TAU_S, bounded_slowdown, jain, percentile, qpu_time_by_project
from lab.runs import Run, segments

#: Time bins of the over-time plots.
BINS = 200

PLOTS: dict[str, str] = {
    "wait_by_priority.png": "Wait (submission to start), CDF per priority",
    "wait_by_project.png": "Wait, CDF per project",
    "slowdown.png": f"Bounded slowdown (τ = {TAU_S:g} s), CDF",
    "qpu_state.png": "QPU state over time",
    "queue_length.png": "Batches waiting over time",
    "fair_share.png": "QPU time against share, per project",
}


def draw_all(runs: list[Run], out: Path) -> list[str]:
    """Writes every plot into `out`; returns their file names, in PLOTS order."""
    drawers: dict[str, Callable[[Any, Run], None]] = {
        "wait_by_priority.png": lambda ax, run: _cdfs(ax, _waits(run, lambda o: o.batch.priority)),
        "wait_by_project.png": lambda ax, run: _cdfs(ax, _waits(run, lambda o: o.batch.project)),
        "slowdown.png": _slowdown,
        "qpu_state.png": _qpu_state,
        "queue_length.png": _queue_length,
        "fair_share.png": _fair_share,
    }
    # Labels are names from the runs (projects, run names): plain text, never TeX math,
    # which a project named `$\foo{x}$` would otherwise make matplotlib parse (and fail on).
    with rc_context({"text.parse_math": False}):
        names = []
        if len(runs) > 1:
            _comparison(runs, out)
            names.append(COMPARISON)
        for name, title in PLOTS.items():
            _draw(name, title, drawers[name], runs, out)
        return names + list(PLOTS)


#: The plot of several runs' headline figures side by side (`tweezer report` of 2 or more).
COMPARISON = "comparison.png"


def _comparison(runs: list[Run], out: Path) -> None:
    """One panel per figure, one bar per run: waits (mean, p50, p95), bounded slowdown,
    utilisation and Jain's index over QPU time per share, which read better as bars than as
    a row of the table when a handful of policies are compared."""
    figures: dict[str, list[tuple[str, list[float]]]] = {
        "wait (s)": [],
        "bounded slowdown": [],
        "QPU computing (fraction)": [],
        "Jain's index (QPU time / share)": [],
    }
    for run in runs:
        waits = sorted(o.wait_s for o in run.outcomes)
        slowdowns = [bounded_slowdown(o) for o in run.outcomes]
        start, end = _span(run)
        capacity = (end - start) * max(1, sum(run.qpus.values()))
        computing = sum(o.batch.computing_s for o in run.outcomes)
        time_of = qpu_time_by_project(run.outcomes)
        projects = sorted({b.project for b in run.batches})
        per_share = [time_of.get(p, 0.0) / run.shares.get(p, 1.0) for p in projects]
        figures["wait (s)"].append(
            (run.name, [sum(waits) / len(waits), percentile(waits, 50), percentile(waits, 95)])
        )
        figures["bounded slowdown"].append((run.name, [sum(slowdowns) / len(slowdowns)]))
        figures["QPU computing (fraction)"].append((run.name, [computing / capacity]))
        figures["Jain's index (QPU time / share)"].append((run.name, [jain(per_share)]))
    figure = Figure(figsize=(4 * len(figures), 3.6))
    axes = figure.subplots(1, len(figures), squeeze=False)[0]
    for ax, (title, bars) in zip(axes, figures.items(), strict=True):
        series = len(bars[0][1])
        width = 0.8 / series
        for k, label in enumerate(("mean", "p50", "p95")[:series]):
            ax.bar(
                [i + (k - (series - 1) / 2) * width for i in range(len(bars))],
                [values[k] for _, values in bars],
                width,
                label=label if series > 1 else None,
            )
        ax.set_xticks(range(len(bars)), [name for name, _ in bars], rotation=30, fontsize=7)
        ax.set_title(title, fontsize=9)
        if series > 1:
            ax.legend(fontsize=7)
    figure.suptitle("Runs compared")
    figure.tight_layout()
    figure.savefig(out / COMPARISON, dpi=80, metadata={"Software": None})


def _draw(
    name: str, title: str, drawer: Callable[[Any, Run], None], runs: list[Run], out: Path
) -> None:
    """One plot: a panel per run, side by side."""
    figure = Figure(figsize=(5 * len(runs), 3.6))
    axes = figure.subplots(1, len(runs), squeeze=False, sharey=True)
    for ax, run in zip(axes[0], runs, strict=True):
        drawer(ax, run)
        ax.set_title(f"{run.name} ({run.policy})", fontsize=9)
    figure.suptitle(title)
    figure.tight_layout()
    # A fixed date in the metadata: the same runs give the same bytes.
    figure.savefig(out / name, dpi=80, metadata={"Software": None})


def _waits(run: Run, group: Callable[[Any], str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for o in run.outcomes:
        out.setdefault(group(o), []).append(o.wait_s)
    return dict(sorted(out.items()))


def _cdfs(ax: Any, series: dict[str, list[float]], xlabel: str = "wait (s)") -> None:
    for label, values in series.items():
        data = sorted(values)
        ax.step(data, [(i + 1) / len(data) for i in range(len(data))], where="post", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of batches")
    ax.set_ylim(0, 1.02)
    if len(series) <= 12:
        ax.legend(fontsize=7)


def _slowdown(ax: Any, run: Run) -> None:
    _cdfs(ax, {"all batches": [bounded_slowdown(o) for o in run.outcomes]}, "bounded slowdown")
    ax.set_xscale("log")


def _span(run: Run) -> tuple[float, float]:
    start = min(b.submit_s for b in run.batches)
    end = max(o.end_s for o in run.outcomes)
    return start, max(end, start + 1e-9)


def _qpu_state(ax: Any, run: Run) -> None:
    """Fractions of the run's QPUs computing, held idle by an open batch, and free, per bin."""
    start, end = _span(run)
    width = (end - start) / BINS
    computing, idle = [0.0] * BINS, [0.0] * BINS
    for outcome in run.outcomes:
        for a, b, busy in segments(outcome):
            _spread(computing if busy else idle, a, b, start, width)
    down = [0.0] * BINS
    for device_type, spans in (run.header.down or {}).items():
        for a, b in spans:
            before = down.copy()
            _spread(down, max(a, start), b, start, width)
            for i in range(BINS):  # a device type's QPUs are all down together
                down[i] = before[i] + (down[i] - before[i]) * run.qpus.get(device_type, 0)
    capacity = width * max(1, sum(run.qpus.values()))
    x = [start + (i + 0.5) * width - start for i in range(BINS)]
    c = [v / capacity for v in computing]
    h = [v / capacity for v in idle]
    d = [v / capacity for v in down]
    f = [max(0.0, 1 - a - b - e) for a, b, e in zip(c, h, d, strict=True)]
    ax.stackplot(x, c, h, d, f, labels=["computing", "held idle (open batch)", "down", "free"])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("fraction of QPUs")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="lower right")


def _spread(bins: list[float], a: float, b: float, start: float, width: float) -> None:
    """Adds the interval [a, b) to the bins it covers, each by the time it covers."""
    i = max(0, int((a - start) / width))
    while a < b and i < len(bins):
        edge = start + (i + 1) * width
        bins[i] += min(b, edge) - a
        a, i = edge, i + 1


def _queue_length(ax: Any, run: Run) -> None:
    events = sorted(
        [(b.submit_s, 1) for b in run.batches] + [(o.start_s, -1) for o in run.outcomes]
    )
    start = events[0][0]
    times, lengths, waiting = [0.0], [0], 0
    for t, change in events:
        waiting += change
        times.append(t - start)
        lengths.append(waiting)
    ax.step(times, lengths, where="post")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("batches waiting")


def _fair_share(ax: Any, run: Run) -> None:
    time_of = qpu_time_by_project(run.outcomes)
    projects = sorted({b.project for b in run.batches})
    shares = run.shares
    total_time = sum(time_of.values()) or 1.0
    total_share = sum(shares.get(p, 1.0) for p in projects) or 1.0
    xs = range(len(projects))
    ax.bar(
        [x - 0.2 for x in xs],
        [time_of.get(p, 0.0) / total_time for p in projects],
        0.4,
        label="QPU time",
    )
    ax.bar(
        [x + 0.2 for x in xs],
        [shares.get(p, 1.0) / total_share for p in projects],
        0.4,
        label="share",
    )
    ax.set_xticks(list(xs), projects, rotation=45, fontsize=7)
    ax.set_ylabel("fraction")
    ax.legend(fontsize=7)
    per_share = [time_of.get(p, 0.0) / shares.get(p, 1.0) for p in projects]
    ax.text(
        0.02,
        0.95,
        f"Jain's index {jain(per_share):.3f}",
        transform=ax.transAxes,
        fontsize=8,
        va="top",
    )
