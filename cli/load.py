"""`tweezer load`: the command line of the load driver (lab/load.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.admin import add_cluster_options, cluster_settings
from core.errors import ConfigurationError
from launch.data_dir import read_cluster_info


def add_load_command(commands: argparse._SubParsersAction) -> None:
    load = commands.add_parser(
        "load",
        help="drive a real cluster with a workload, a trace or an SWF file through the SDK",
    )
    load.add_argument("workload", nargs="?", type=Path, help="a workload file (YAML or JSON)")
    load.add_argument("--trace", type=Path, help="replay a Tweezer trace instead")
    load.add_argument("--swf", type=Path, help="replay an SWF file instead")
    load.add_argument("--device-type", help="device type of an SWF file's batches")
    load.add_argument(
        "--speedup",
        type=float,
        default=1.0,
        metavar="X",
        help="divide the workload's times by X: arrivals, think times, and the QPU seconds "
        "it asks of a synthetic device (tweezer up --synthetic-devices)",
    )
    load.add_argument(
        "--clients", type=int, default=32, metavar="N", help="client sessions at once (32)"
    )
    load.add_argument("--out", type=Path, help="write the trace of what happened here")
    add_cluster_options(load)


def run_load(args: argparse.Namespace) -> int:
    from lab import load  # the lab extra: the SDK, YAML

    settings = cluster_settings(args)
    info = read_cluster_info(args.data_dir)
    if args.speedup <= 0 or args.clients < 1:
        raise ConfigurationError("--speedup must be > 0 and --clients >= 1")
    device_type = args.device_type or next(iter(settings.qpus))
    planned, shares = load.plan_source(args.workload, args.trace, args.swf, device_type)
    return load.run(
        settings, info, planned, shares, speedup=args.speedup, clients=args.clients, out=args.out
    )
