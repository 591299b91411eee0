"""What a simulation (or, in the next issue, a recorded run) says: `batches.csv`, one row per batch,
and `summary.json`, the metrics trace simulators report (Batsim, the Slurm simulator): makespan,
utilisation, waits, bounded slowdown, Jain's fairness index, throughput.

Every figure is rounded to the microsecond and written in a fixed order, so the same outcome
gives byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from scheduling.simulator import Outcome, SimBatch

CSV_COLUMNS = (
    "id",
    "project",
    "user",
    "priority",
    "device_type",
    "submit_s",
    "start_s",
    "end_s",
    "wait_s",
    "qpu",
)
#: Bounded slowdown's threshold: a batch shorter than this counts as this long.
TAU_S = 10.0


def batches_csv(outcomes: Iterable[Outcome]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for o in sorted(outcomes, key=lambda o: (o.batch.submit_s, o.batch.id)):
        b = o.batch
        times = (_num(x) for x in (b.submit_s, o.start_s, o.end_s, o.wait_s))
        writer.writerow((b.id, b.project, b.user, b.priority, b.device_type, *times, o.qpu))
    return out.getvalue()


def summary(
    outcomes: Sequence[Outcome],
    batches: Sequence[SimBatch],
    qpus: Mapping[str, int],
    shares: Mapping[str, float],
    policy: str,
    down: Mapping[str, Sequence[tuple[float, float]]] | None = None,
) -> dict[str, Any]:
    """The metrics of a run; `down`: when each device type was out of service (its QPUs then
    count as down, not free)."""
    started = {o.batch.id for o in outcomes}
    first_submit = min((b.submit_s for b in batches), default=0.0)
    last_end = max((o.end_s for o in outcomes), default=first_submit)
    makespan = last_end - first_submit
    capacity = sum(qpus.values()) * makespan
    computing = sum(o.batch.computing_s for o in outcomes)
    held_idle = sum(o.batch.thinking_s for o in outcomes)
    down_s = sum(
        qpus.get(device_type, 0) * (min(b, last_end) - max(a, first_submit))
        for device_type, spans in (down or {}).items()
        for a, b in spans
        if b > first_submit and a < last_end
    )
    qpu_time = qpu_time_by_project(outcomes)
    projects = sorted({b.project for b in batches})
    data: dict[str, Any] = _rounded(
        {
            "policy": policy,
            "qpus": dict(sorted(qpus.items())),
            "batches": len(outcomes),
            "jobs": sum(len(o.batch.jobs) for o in outcomes),
            "not_started": len(batches) - len(started),
            "makespan_s": makespan,
            "utilisation": {
                "computing": _ratio(computing, capacity),
                "held_idle": _ratio(held_idle, capacity),
                "down": _ratio(down_s, capacity),
                "free": _ratio(max(0.0, capacity - computing - held_idle - down_s), capacity),
            },
            "wait_s": {
                "all": _spread(o.wait_s for o in outcomes),
                "by_priority": _grouped(outcomes, lambda o: o.batch.priority),
                "by_project": _grouped(outcomes, lambda o: o.batch.project),
            },
            "bounded_slowdown": {"tau_s": TAU_S, **_spread(bounded_slowdown(o) for o in outcomes)},
            "fairness": {
                "jain_index": jain([qpu_time.get(p, 0.0) / shares.get(p, 1.0) for p in projects]),
                "qpu_s_by_project": {p: qpu_time.get(p, 0.0) for p in projects},
                "shares": {p: shares.get(p, 1.0) for p in projects},
            },
            "throughput": {
                "batches_per_hour": _ratio(len(outcomes) * 3600.0, makespan),
                "jobs_per_hour": _ratio(
                    sum(len(o.batch.jobs) for o in outcomes) * 3600.0, makespan
                ),
            },
        }
    )
    return data


def summary_json(data: Mapping[str, Any]) -> str:
    """JSON, strictly: a figure that is not a finite number (which readers validate away
    before it gets here) would be written as null, never as NaN or Infinity."""
    return json.dumps(_finite(data), indent=2, sort_keys=True, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def bounded_slowdown(o: Outcome) -> float:
    """max(1, (wait + run) / max(run, TAU_S)): how much longer than its run a batch took."""
    run = o.end_s - o.start_s
    return max(1.0, (o.wait_s + run) / max(run, TAU_S))


def qpu_time_by_project(outcomes: Iterable[Outcome]) -> dict[str, float]:
    """Seconds each project's batches held a QPU."""
    held: dict[str, float] = {}
    for o in outcomes:
        held[o.batch.project] = held.get(o.batch.project, 0.0) + o.end_s - o.start_s
    return held


def _grouped(outcomes: Sequence[Outcome], key: Any) -> dict[str, dict[str, float]]:
    groups: dict[str, list[float]] = {}
    for o in outcomes:
        groups.setdefault(key(o), []).append(o.wait_s)
    return {name: _spread(values) for name, values in sorted(groups.items())}


def _spread(values: Iterable[float]) -> dict[str, float]:
    data = sorted(values)
    if not data:
        return {"count": 0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    return {
        "count": len(data),
        "mean": math.fsum(data) / len(data),
        "p50": percentile(data, 50),
        "p95": percentile(data, 95),
        "max": data[-1],
    }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), of sorted values."""
    if not sorted_values:
        return 0.0
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def jain(values: Sequence[float]) -> float:
    """(sum x)^2 / (n * sum x^2): 1 when every project got QPU time in proportion to its share,
    1/n when one got it all."""
    squares = math.fsum(v * v for v in values)
    return _ratio(math.fsum(values) ** 2, len(values) * squares) if squares else 1.0


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def _num(x: float) -> str:
    """A figure as CSV text: microsecond precision, no trailing noise."""
    return f"{round(x, 6):.6f}".rstrip("0").rstrip(".") or "0"


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6) + 0.0  # no -0.0
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
