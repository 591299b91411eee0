"""`tweezer simulate`: a workload through a scheduling policy on a virtual clock (no cluster)."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigurationError
from core.settings import parse_qpus
from core.status import BatchStatus
from lab.report import batches_csv, summary, summary_json
from lab.traces import (
    TraceError,
    TraceHeader,
    read_swf,
    read_trace_with_header,
    record_of,
    write_trace,
)
from lab.workload import WorkloadError, plan, read_workload, sim_batches
from lab.workload import shares as workload_shares
from scheduling.policies import DEFAULT_POLICY, load_policy
from scheduling.simulator import SimBatch, Simulation, SimulationError


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
        help="fifo, priority, fair-share, shortest-first or module:Class (default "
        f"{DEFAULT_POLICY}); several, comma-separated, each run on the same trace in a process "
        "of its own (as many at once as there are cores) into DIR/POLICY/, which "
        "`tweezer report DIR` compares side by side",
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
    names = policy_names(args.policy)
    for name in names:
        load_policy(name)  # every policy that cannot load stops here, before any run
    down: dict[str, list[tuple[float, float]]] = {}
    try:
        if args.trace is not None:
            header, batches = read_trace_with_header(args.trace)
            # A recorded run's maintenance and calibration windows (docs/traces.md).
            down = {t: [(a, b) for a, b in spans] for t, spans in (header.down or {}).items()}
        elif args.workload is not None:
            workload = read_workload(args.workload)
            batches = sim_batches(plan(workload), {})
            shares = {**workload_shares(workload), **shares}
        else:
            batches = read_swf(args.swf, args.device_type or next(iter(qpus)))
    except (OSError, TraceError, WorkloadError) as exc:
        raise ConfigurationError(str(exc)) from None
    task = _Task(batches, qpus, args.fair_share_half_life, shares, down)
    if len(names) == 1:
        print(_report_line(task.run(names[0], args.out), args.out))
        return 0
    # Each policy in a process of its own: the runs share nothing but the (pickled) trace.
    cores = len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(max_workers=min(len(names), cores)) as pool:
        runs = {name: pool.submit(task.run, name, args.out / name) for name in names}
        results = {name: future.result() for name, future in runs.items()}
    for name, result in results.items():
        print(_report_line(result, args.out / name))
    (args.out / "policies.json").write_text(json.dumps({"policies": names}, indent=2) + "\n")
    print(f"compare them: tweezer report {args.out} --out {args.out / 'report'}")
    return 0


def policy_names(raw: str) -> list[str]:
    """`fifo,priority` as the policies to run, each once, in the order given."""
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if not names:
        raise ConfigurationError("--policy must name at least one policy")
    if len(set(names)) != len(names):
        raise ConfigurationError(f"--policy names a policy twice: {raw!r}")
    if len(names) > MAX_POLICIES:
        raise ConfigurationError(f"--policy: at most {MAX_POLICIES} policies in one command")
    for name in names:
        # Each names its run's directory (OUT/POLICY/): one path component, never a way out.
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}", name):
            raise ConfigurationError(f"--policy: {name!r} is not a policy name")
    return names


#: Policies one `tweezer simulate` compares (each a process and a column of the report).
MAX_POLICIES = 16


@dataclass(frozen=True)
class _Task:
    """One trace to run through a policy (in this process, or in a pool's)."""

    batches: list[SimBatch]
    qpus: dict[str, int]
    half_life_s: float
    shares: dict[str, float]
    #: When each device type is out of service.
    down: dict[str, list[tuple[float, float]]]

    def run(self, name: str, out: Path) -> _Result:
        """Runs the policy over the trace and writes DIR/batches.csv, summary.json and
        trace.jsonl (the workload with what happened, for `tweezer report`)."""
        policy = load_policy(name)
        started = time.perf_counter()
        try:
            simulation = Simulation(
                policy, self.qpus, self.half_life_s, self.shares, down=self.down
            )
            outcomes = simulation.run(self.batches)
        except SimulationError as exc:
            raise ConfigurationError(f"{name}: {exc}") from None
        elapsed = time.perf_counter() - started
        data = summary(outcomes, self.batches, self.qpus, self.shares, policy.name, self.down)
        out.mkdir(parents=True, exist_ok=True)
        (out / "batches.csv").write_text(batches_csv(outcomes))
        (out / "summary.json").write_text(summary_json(data))
        ran = {o.batch.id: o for o in outcomes}
        header = TraceHeader(
            source="simulate",
            policy=policy.name,
            qpus=self.qpus,
            shares=self.shares,
            down=self.down or None,
        )
        done = BatchStatus.DONE.value
        records = (record_of(b, ran.get(b.id), done if b.id in ran else None) for b in self.batches)
        write_trace(out / "trace.jsonl", header, records)
        return _Result(policy.name, data, elapsed)


@dataclass(frozen=True)
class _Result:
    policy: str
    data: dict[str, Any]
    elapsed_s: float


def _report_line(result: _Result, out: Path) -> str:
    data = result.data
    return (
        f"{result.policy}: {data['batches']} batches on {sum(data['qpus'].values())} QPU(s), "
        f"makespan {data['makespan_s']:.0f} s, wait p50 {data['wait_s']['all']['p50']:.1f} s / "
        f"p95 {data['wait_s']['all']['p95']:.1f} s, Jain {data['fairness']['jain_index']:.3f} "
        f"(simulated in {result.elapsed_s:.2f} s) -> {out}/"
    )


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
