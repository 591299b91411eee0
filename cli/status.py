"""`tweezer status`: what the cluster is doing now, in 80 columns (core/overview.py, one round
trip to Redis): each QPU with its device status, the batch holding it and its progress, its
workers (alive or lost); the schedulers and the leases each holds; the queues; jobs per second.
`--watch` redraws it in place, `--json` prints it for scripts, `--batch ID` shows one batch's jobs
with their errors and attempt history.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import textwrap
import time

from cli.admin import add_cluster_options, cluster_settings
from core.db import open_db
from core.errors import ConfigurationError
from core.overview import Overview, Qpu, cluster_overview, overview_json
from core.priorities import PRIORITIES
from core.records import Batch, Job
from core.render import attempt_json, batch_json
from core.settings import Settings
from core.store import Store
from core.timefmt import SECOND_US, now_us, to_iso

WIDTH = 80


def add_status_command(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser("status", help="what the cluster is doing now")
    status.add_argument("--json", action="store_true", help="print it as JSON")
    status.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=2.0,
        metavar="SECONDS",
        help="redraw every SECONDS (2) until Ctrl-C",
    )
    status.add_argument("--batch", metavar="ID", help="one batch: its jobs, errors and attempts")
    add_cluster_options(status)


def run_status(args: argparse.Namespace) -> int:
    settings = cluster_settings(args)
    db = open_db(settings)
    if args.batch:
        return _batch(Store(db), args.batch, args.json)
    if args.watch is not None:
        # Ctrl-C ends a watch even when its shell started it with SIGINT ignored (a background
        # job of a script): Python then leaves SIGINT ignored instead of raising
        # KeyboardInterrupt. `tweezer up` installs its own handlers likewise.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while True:
            view = cluster_overview(db, settings, now_us())
            text = (
                json.dumps(overview_json(view), indent=2) if args.json else render(view, settings)
            )
            if args.watch is None:
                print(text)
                return 0
            # Home and clear, then the whole view: it redraws in place.
            sys.stdout.write("\x1b[H\x1b[2J" + text + "\n")
            sys.stdout.flush()
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def render(view: Overview, settings: Settings) -> str:
    now = view.now_us
    lines = [
        f"Tweezer · {(to_iso(now) or '')[:19].replace('T', ' ')} UTC · policy {settings.policy}"
        f" · {view.jobs_per_s:.2f} jobs/s",
        "",
        f"{'QPU':<14}{'STATE':<11}{'DEVICE':<13}{'WORKERS':<17}SCHEDULER",
    ]
    for qpu in view.qpus:
        lines += _qpu_lines(qpu, now)
    lines.append("")
    schedulers = [
        f"{s.name} ({', '.join(s.leases) or 'standby'})" if s.alive else f"{s.name} LOST"
        for s in view.schedulers
    ]
    lines += textwrap.wrap(
        "Schedulers: " + ("; ".join(schedulers) or "none"), WIDTH, subsequent_indent="  "
    )
    lines.append("")
    priorities = [str(p) for p in PRIORITIES]
    lines.append(
        f"{'WAITING':<14}" + "".join(f"{p:>8}" for p in priorities) + "   OLDEST  FORECAST"
    )
    for device_type in settings.qpus:
        levels = {q.priority: q.batches for q in view.queue if q.device_type == device_type}
        oldest = view.oldest_waiting_s(device_type)
        made = view.forecast_at.get(device_type)
        age = f"{_duration((now - made) / SECOND_US)} ago" if made is not None else "-"
        lines.append(
            f"{device_type:<14}"
            + "".join(f"{levels.get(p, 0):>8}" for p in priorities)
            + f"   {_duration(oldest) if oldest is not None else '-':<7} {age}"
        )
    if view.sessions:
        held = [
            f"{s.slurm_job_id} ({s.user_id}, {s.device_type}, "
            f"{_duration((now - s.created_us) / SECOND_US)})"
            for s in view.sessions
        ]
        lines.append("")
        lines += textwrap.wrap(
            f"Slurm sessions held: {'; '.join(held)}", WIDTH, subsequent_indent="  "
        )
    lines += ["", "(jobs/s: jobs that finished DONE or ERROR over the last minute)"]
    return "\n".join(line[:WIDTH] for line in lines)


def _qpu_lines(qpu: Qpu, now: int) -> list[str]:
    lost = len(qpu.workers) - qpu.workers_alive
    workers = f"{qpu.workers_alive} alive" + (f", {lost} lost" if lost else "")
    lines = [
        f"{qpu.name:<14}{qpu.state.value:<11}{qpu.device_status:<13}{workers:<17}"
        f"{qpu.holder or '-'}"
    ]
    b = qpu.batch
    if b is not None:
        since = f"since {(to_iso(b.start_us) or '')[11:19]}" if b.start_us else "starting"
        lines.append(f"  batch {b.id}  {b.status}  {since}")
        idle = b.idle_held_s(now)
        held = f"  open, idle {_duration(idle)}" if idle is not None else "  open" if b.open else ""
        lines.append(
            f"  {b.project_id[:20]} / {b.user_id[:16]}  jobs {b.jobs_done}/{b.jobs_total}"
            f"  shots {b.runs_done}/{b.runs_total}{held}"
        )
    return lines


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _batch(store: Store, batch_id: str, as_json: bool) -> int:
    batch = store.get_batch(batch_id)
    if batch is None:
        raise ConfigurationError(f"no batch {batch_id!r}")
    jobs = store.batch_jobs(batch.id)
    if as_json:
        print(json.dumps(batch_json(batch, jobs, with_sequence=False), indent=2))
        return 0
    print("\n".join(_batch_lines(batch, jobs)))
    return 0


def _batch_lines(batch: Batch, jobs: list[Job]) -> list[str]:
    lines = [
        f"batch {batch.id}  {batch.status}  {batch.device_type}  qpu {batch.qpu or '-'}",
        f"  project {batch.project_id}  user {batch.user_id}  "
        f"{'open' if batch.open else 'closed'}  jobs {batch.jobs_count}",
        f"  created {to_iso(batch.created_us)}  started {to_iso(batch.start_us) or '-'}  "
        f"ended {to_iso(batch.end_us) or '-'}",
    ]
    for job in jobs:
        lines.append(f"job {job.id}  {job.status}  runs {job.runs}  attempts {job.attempts}")
        for attempt in map(attempt_json, job.history):
            ended = (attempt["ended_at"] or "")[11:23] or "running"
            lines.append(
                f"  attempt {attempt['attempt']}  {attempt['qpu'] or '-'}  "
                f"{attempt['worker'] or '-'}  {attempt['started_at'][11:23]} -> {ended}  "
                f"{attempt['outcome'] or ''}"
            )
        for error in job.errors:  # whole, as the worker wrote it
            lines.append("  error:")
            lines += ["    " + line for line in error.splitlines()]
    return lines
