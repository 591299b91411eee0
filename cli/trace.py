"""`tweezer trace export`: a cluster's stored history as a trace (JSONL, or SWF with --swf)."""

from __future__ import annotations

import argparse
import sys
from itertools import chain

from cli.admin import add_cluster_options, cluster_settings
from core.accounts import Accounts
from core.db import open_db
from core.device_status import DeviceStatuses
from core.errors import ConfigurationError
from core.store import Store
from core.timefmt import SECOND_US, now_us, parse_iso
from lab.export import (
    down_intervals,
    stored_batches,
    swf_lines,
    trace_record,
)
from lab.traces import TraceHeader, trace_lines


def add_trace_commands(commands: argparse._SubParsersAction) -> None:
    trace = commands.add_parser("trace", help="workload traces of a cluster")
    actions = trace.add_subparsers(dest="action", required=True)
    export = actions.add_parser(
        "export",
        help="write the cluster's batches as a trace on standard output",
        description="Every batch created since --since (default: all), oldest first, as a "
        "Tweezer trace (docs/traces.md) or, with --swf, as SWF 2.2; replay it with "
        "`tweezer simulate --trace/--swf` under another policy.",
    )
    export.add_argument("--since", metavar="ISO-8601", help="only batches created from then")
    export.add_argument("--swf", action="store_true", help="write SWF instead of JSONL")
    add_cluster_options(export)


def run_trace_command(args: argparse.Namespace) -> int:
    settings = cluster_settings(args)
    db = open_db(settings)
    store = Store(db)
    try:
        since = parse_iso(args.since) if args.since else None
    except ValueError:
        raise ConfigurationError(f"--since {args.since!r} is not an ISO-8601 time") from None
    history = stored_batches(store, since)
    first = next(history, None)
    if first is None:
        print("tweezer: no batch to export", file=sys.stderr)
        return 1
    origin = first[0].created_us
    records = (trace_record(b, jobs, origin) for b, jobs in chain([first], history))
    if args.swf:
        lines = swf_lines(records, origin / SECOND_US)
    else:
        shares = {p.id: p.share for p in Accounts(db.client, settings.namespace).projects()}
        header = TraceHeader(
            source="export",
            policy=settings.policy,
            qpus=dict(settings.qpus),
            shares=shares,
            origin_s=origin / SECOND_US,
            down=down_intervals(DeviceStatuses(db), settings.qpus, origin, now_us()),
        )
        lines = trace_lines(header, records)
    for line in lines:
        sys.stdout.write(line + "\n")
    return 0
