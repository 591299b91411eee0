"""`tweezer usage`: QPU time of qrmi's on-premises sessions, per Slurm job (issue #27):
`--slurm-job ID` for one job's sessions, `--since T [--by slurm-job|user|project]` for a
period's, as a table or `--json` (the same figures as `GET /admin/api/v1/usage`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cli.admin import add_cluster_options, cluster_settings
from core.db import open_db
from core.errors import ConfigurationError, InvalidRequest
from core.session_usage import GROUPINGS, report, usage_query
from core.sessions import Sessions
from core.store import Store
from core.timefmt import now_us

#: The table's columns: (heading, field, width).
SESSION_COLUMNS = (
    ("SLURM JOB", "slurm_job_id", 12),
    ("USER", "user_id", 14),
    ("DEVICE", "device_type", 10),
    ("HELD S", "qpu_held_s", 9),
    ("RAN S", "qpu_computed_s", 9),
    ("JOBS", "jobs", 6),
    ("SHOTS", "shots", 8),
    ("CREATED", "created_at", 21),
    ("CLOSED", "closed_at", 21),
)


def add_usage_command(commands: argparse._SubParsersAction) -> None:
    usage = commands.add_parser(
        "usage", help="QPU time of Slurm jobs' sessions (qrmi pasqal-local), per job or grouped"
    )
    which = usage.add_mutually_exclusive_group(required=True)
    which.add_argument("--slurm-job", metavar="ID", help="the sessions of one Slurm job")
    which.add_argument("--since", metavar="T", help="sessions opened since T (ISO-8601, UTC)")
    usage.add_argument(
        "--by", choices=list(GROUPINGS), help="totals per Slurm job, user or project"
    )
    usage.add_argument("--json", action="store_true", help="JSON instead of a table")
    add_cluster_options(usage)


def run_usage(args: argparse.Namespace) -> int:
    try:
        query = usage_query(args.slurm_job, args.since, args.by)
    except InvalidRequest as exc:
        raise ConfigurationError(str(exc)) from None
    settings = cluster_settings(args)
    db = open_db(settings)
    items = report(Sessions(db.client, settings.namespace), Store(db), now_us(), **query)
    if args.json:
        print(json.dumps(items, indent=2))
    elif args.by:
        print(_table(items, [(args.by.upper(), args.by, 24), *_TOTAL_COLUMNS]))
    else:
        print(_table(items, SESSION_COLUMNS))
    return 0


_TOTAL_COLUMNS = (
    ("SESSIONS", "sessions", 9),
    ("HELD S", "qpu_held_s", 10),
    ("RAN S", "qpu_computed_s", 10),
    ("JOBS", "jobs", 7),
    ("SHOTS", "shots", 9),
)


def _table(items: list[dict[str, Any]], columns: Any) -> str:
    lines = ["".join(f"{title:<{width}}" for title, _, width in columns).rstrip()]
    for item in items:
        cells = ("-" if item[field] is None else str(item[field]) for _, field, _ in columns)
        lines.append(
            "".join(
                f"{cell:<{width}}" for cell, (_, _, width) in zip(cells, columns, strict=True)
            ).rstrip()
        )
    if not items:
        lines.append("(no sessions)")
    return "\n".join(lines)
