"""`tweezer chaos`: the command line of the soak (lab/soak.py)."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from core.errors import ConfigurationError
from lab.faults import FaultKind, parse_kinds, schedule
from launch.netns import can_make_namespaces


def add_chaos_command(commands: argparse._SubParsersAction) -> None:
    chaos = commands.add_parser(
        "chaos",
        help="soak a cluster of its own with faults under load, then check nothing was lost",
    )
    chaos.add_argument(
        "--duration",
        type=float,
        default=90.0,
        metavar="S",
        help="seconds of load and faults (default 90)",
    )
    chaos.add_argument("--seed", type=int, default=0, help="seed of the faults and the load")
    chaos.add_argument(
        "--faults",
        default="all",
        metavar="KINDS",
        help="fault kinds, comma-separated, or all: " + ", ".join(k.value for k in FaultKind),
    )
    chaos.add_argument(
        "--every",
        type=float,
        default=3.0,
        metavar="S",
        help="mean seconds between faults (default 3)",
    )
    chaos.add_argument(
        "workload",
        nargs="?",
        type=Path,
        help="a workload file (as `tweezer load` takes): its projects, users and "
        "batches, sent in order again and again; default: a built-in mix",
    )
    chaos.add_argument(
        "--speedup",
        type=float,
        default=1.0,
        metavar="X",
        help="divide the workload's think times, cancel delays and QPU seconds by X (default 1)",
    )
    chaos.add_argument("--clients", type=int, default=6, help="client threads (default 6)")
    chaos.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where the report, faults, acknowledgements and logs go (default chaos-<seed>/)",
    )
    chaos.add_argument(
        "--no-hosts",
        action="store_true",
        help="run every process here (no network namespaces, no link cuts)",
    )


def run_chaos(args: argparse.Namespace) -> int:
    if args.duration <= 0 or args.every <= 0 or args.speedup <= 0 or not 1 <= args.clients <= 64:
        raise ConfigurationError("--duration, --every and --speedup must be > 0, --clients 1 to 64")
    from lab.soak import Soak  # the lab extra: psutil, requests
    from lab.workload import WorkloadError, read_workload

    workload = None
    if args.workload is not None:
        try:
            workload = read_workload(args.workload)
        except WorkloadError as exc:
            raise ConfigurationError(str(exc)) from None
    try:
        kinds = parse_kinds(args.faults)
    except ValueError as exc:
        raise ConfigurationError(f"--faults: {exc}") from None
    out = (args.out or Path(f"chaos-{args.seed}")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    why_local = "--no-hosts" if args.no_hosts else can_make_namespaces()
    if why_local and FaultKind.LINK_CUT in kinds:
        kinds = tuple(k for k in kinds if k is not FaultKind.LINK_CUT)
        print(f"tweezer chaos: no link cuts: {why_local}", flush=True)
    faults = schedule(args.seed, args.duration, kinds, args.every)
    (out / "faults.jsonl").write_text("".join(json.dumps(f.to_json()) + "\n" for f in faults))
    print(
        f"tweezer chaos: seed {args.seed}, {args.duration:g} s, {len(faults)} faults planned "
        f"({', '.join(f'{k}: {n}' for k, n in Counter(f.kind.value for f in faults).items())}),"
        f" {args.clients} clients -> {out}/",
        flush=True,
    )
    with Soak(out, args.seed, hosts=not why_local).running() as soak:
        verdict = soak.run(faults, args.duration, args.clients, workload, args.speedup)
    for line in verdict.lines():
        print(line)
    return 0 if verdict.ok else 1
