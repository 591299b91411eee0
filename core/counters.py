"""What the scripts count as batches and jobs move: the record of what happened that `/metrics`
and `tweezer status` read (api/metrics.py, core/overview.py).

Counting happens in the same atomic script as the move it counts (core/lua/_metrics.lua), so the
figures are exact whichever process made the move, on whichever host, and survive restarts
with the rest of the record. Two hashes:

- `totals`: how many batches and jobs there are now, by device type and status (gauges);
  fields `batch:<device type>:<status>` and `job:<device type>:<status>`.
- `counters`: what happened since the cluster was created (counters and histograms); fields
  `<name>:<label values, comma-separated>` for a counter, and `...:<bucket number>` (1-based,
  one past the last bound for +Inf) and `...:sum` for a histogram. Buckets are stored one by
  one; readers make them cumulative.

Finished jobs are also counted per 10-second slot (`throughput:<slot>`, expiring), for the
jobs-per-second figure of `tweezer status`.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Seconds a wait, a turnaround or a job's run may take: from a fast emulation to a day in queue.
WAIT_BUCKETS_S = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 86_400.0)
RUN_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)

#: The field of `totals` saying they were counted from the records (core/lua/migrate.lua).
TOTALS_COUNTED = "counted-v2"

#: Finished jobs are counted per slot of this many seconds, kept for THROUGHPUT_WINDOW_S.
THROUGHPUT_SLOT_S = 10
THROUGHPUT_WINDOW_S = 60


@dataclass(frozen=True)
class Histogram:
    name: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]
    help: str


@dataclass(frozen=True)
class Counter:
    name: str
    labels: tuple[str, ...]
    help: str


JOBS_FINISHED = Counter(
    "jobs_finished", ("device_type", "status"), "Jobs that reached DONE, ERROR or CANCELED."
)
JOB_RUN = Histogram(
    "job_run_seconds",
    ("device_type", "status"),
    RUN_BUCKETS_S,
    "Time from a job's first start on a worker to its DONE or ERROR.",
)
BATCH_WAIT = Histogram(
    "batch_wait_seconds",
    ("priority",),
    WAIT_BUCKETS_S,
    "Time from a batch's submission to its start on a QPU, by queue priority.",
)
BATCH_TURNAROUND = Histogram(
    "batch_turnaround_seconds",
    ("device_type", "status"),
    WAIT_BUCKETS_S,
    "Time from a batch's submission to its end (DONE, ERROR, CANCELED, TIMED_OUT).",
)
COUNTERS = (JOBS_FINISHED,)
HISTOGRAMS = (JOB_RUN, BATCH_WAIT, BATCH_TURNAROUND)


def lua_counters() -> str:
    """`HISTOGRAMS.<name>` (bucket bounds) and the throughput slot, for core/lua/_metrics.lua."""
    rows = ", ".join(f"{h.name} = {{{', '.join(repr(b) for b in h.buckets)}}}" for h in HISTOGRAMS)
    return (
        f"local HISTOGRAMS = {{{rows}}}\n"
        f"local THROUGHPUT_SLOT_S = {THROUGHPUT_SLOT_S}\n"
        f"local THROUGHPUT_KEEP_S = {THROUGHPUT_WINDOW_S + 2 * THROUGHPUT_SLOT_S}\n"
        f"local TOTALS_COUNTED = '{TOTALS_COUNTED}'\n"
    )


def totals_field(kind: str, device_type: str, status: str) -> str:
    return f"{kind}:{device_type}:{status}"


def parse_totals(raw: dict[str, str]) -> dict[tuple[str, str, str], int]:
    """`totals` as (kind, device type, status) -> count."""
    out = {}
    for name, value in raw.items():
        if name != TOTALS_COUNTED:
            kind, device_type, status = name.split(":")
            out[(kind, device_type, status)] = int(value)
    return out


@dataclass
class HistogramValue:
    #: Cumulative counts per bound, then +Inf (the count).
    cumulative: list[int]
    sum: float


def read_counters(
    raw: dict[str, str],
) -> tuple[dict[str, dict[tuple[str, ...], int]], dict[str, dict[tuple[str, ...], HistogramValue]]]:
    """`counters` as counter name -> labels -> value, and histogram name -> labels -> value."""
    counters: dict[str, dict[tuple[str, ...], int]] = {c.name: {} for c in COUNTERS}
    histograms: dict[str, dict[tuple[str, ...], HistogramValue]] = {h.name: {} for h in HISTOGRAMS}
    specs = {h.name: h for h in HISTOGRAMS}
    for field, value in raw.items():
        parts = field.split(":")
        name, labels = parts[0], tuple(parts[1].split(","))
        if name in counters and len(parts) == 2:
            counters[name][labels] = int(value)
        elif name in specs and len(parts) == 3:
            spec = specs[name]
            h = histograms[name].setdefault(
                labels, HistogramValue([0] * (len(spec.buckets) + 1), 0.0)
            )
            if parts[2] == "sum":
                h.sum = float(value)
            else:
                h.cumulative[int(parts[2]) - 1] += int(value)
    for by_labels in histograms.values():
        for h in by_labels.values():
            running = 0
            for i, n in enumerate(h.cumulative):
                running += n
                h.cumulative[i] = running
    return counters, histograms
