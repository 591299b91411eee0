"""`tweezer simulate`: a workload through a scheduling policy on a virtual clock (no cluster)."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from core.errors import ConfigurationError
from core.settings import parse_qpus
from core.status import BatchStatus
from lab.report import batches_csv, summary, summary_json
from lab.traces import (
    TraceError,
    TraceHeader,
    read_swf,
    read_trace,
    record_of,
    write_trace,
)
from lab.workload import WorkloadError, plan, read_workload, sim_batches
from lab.workload import shares as workload_shares
from scheduling.policies import DEFAULT_POLICY, load_policy
from scheduling.simulator import Simulation, SimulationError


def add_simulate_command(commands: argparse._SubParsersAction) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="run a scheduling policy over a workload trace on a virtual clock",
        description="Runs the same policy objects as the live scheduler over a trace (Tweezer's "
        "JSONL, docs/traces.md, or SWF) and writes DIR/batches.csv, DIR/summary.json and "
        "DIR/trace.jsonl (the workload with what happened, for `tweezer report`).",
    )
    source = simulate.add_mutually_exclusive_group(required=True)
    source.add_argument("--trace", type=Path, metavar="FILE.jsonl", help="a Tweezer trace")
    source.add_argument(
        "--swf", type=Path, metavar="FILE.swf", help="a Standard Workload Format file"
    )
    source.add_argument(
        "--workload",
        type=Path,
        metavar="FILE.yaml",
        help="a workload file (docs/workloads.md): its planned batches, their QPU time "
        "predicted as a fresh cluster would (no cancellations)",
    )
    simulate.add_argument(
        "--policy",
        default=DEFAULT_POLICY,
        help="fifo, priority, fair-share, shortest-first or module:Class "
        f"(default {DEFAULT_POLICY})",
    )
    simulate.add_argument(
        "--qpus",
        default="EMU_FREE=1",
        metavar="TYPE=N[,TYPE=N]",
        help="QPUs per device type (default EMU_FREE=1)",
    )
    simulate.add_argument(
        "--device-type",
        metavar="T",
        help="device type of an SWF trace's batches (default: the first type in --qpus)",
    )
    simulate.add_argument(
        "--shares",
        default="",
        metavar="PROJECT=N[,...]",
        help="fair-share shares per project (default 1 each)",
    )
    simulate.add_argument(
        "--fair-share-half-life",
        type=float,
        default=7 * 86_400.0,
        metavar="SECONDS",
        help="half-life of past QPU usage (default 604800, a week)",
    )
    simulate.add_argument("--out", type=Path, default=Path("simulation"), help="output directory")


def run_simulate(args: argparse.Namespace) -> int:
    qpus = parse_qpus(args.qpus)
    if not qpus:
        raise ConfigurationError("--qpus must name at least one device type")
    shares = _shares(args.shares)
    if args.fair_share_half_life <= 0:
        raise ConfigurationError("--fair-share-half-life must be > 0")
    policy = load_policy(args.policy)
    try:
        if args.trace is not None:
            batches = read_trace(args.trace)
        elif args.workload is not None:
            workload = read_workload(args.workload)
            batches = sim_batches(plan(workload), {})
            shares = {**workload_shares(workload), **shares}
        else:
            batches = read_swf(args.swf, args.device_type or next(iter(qpus)))
        started = time.perf_counter()
        outcomes = Simulation(policy, qpus, args.fair_share_half_life, shares).run(batches)
    except (OSError, TraceError, WorkloadError, SimulationError) as exc:
        raise ConfigurationError(str(exc)) from None
    elapsed = time.perf_counter() - started
    data = summary(outcomes, batches, qpus, shares, policy.name)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batches.csv").write_text(batches_csv(outcomes))
    (args.out / "summary.json").write_text(summary_json(data))
    # The workload with what happened to it: `tweezer report` reads it beside recorded runs.
    ran = {o.batch.id: o for o in outcomes}
    header = TraceHeader(source="simulate", policy=policy.name, qpus=qpus, shares=shares)
    done = BatchStatus.DONE.value
    records = (record_of(b, ran.get(b.id), done if b.id in ran else None) for b in batches)
    write_trace(args.out / "trace.jsonl", header, records)
    print(
        f"{policy.name}: {data['batches']} batches on {sum(qpus.values())} QPU(s), makespan "
        f"{data['makespan_s']:.0f} s, wait p50 {data['wait_s']['all']['p50']:.1f} s / p95 "
        f"{data['wait_s']['all']['p95']:.1f} s, Jain {data['fairness']['jain_index']:.3f} "
        f"(simulated in {elapsed:.2f} s) -> {args.out}/"
    )
    return 0


#: The largest share a project may be given (as `tweezer project set --share` allows).
MAX_SHARE = 1e6


def _shares(raw: str) -> dict[str, float]:
    shares: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        project, sep, value = part.partition("=")
        try:
            share = float(value)
        except ValueError:
            share = math.nan
        if not sep or not 0 < share <= MAX_SHARE:  # NaN fails too
            raise ConfigurationError(
                f"--shares: expected PROJECT=N with 0 < N <= {MAX_SHARE:g}, got {part!r}"
            )
        shares[project.strip()] = share
    return shares
