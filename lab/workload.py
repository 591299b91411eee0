"""Workload files (YAML or JSON, docs/workloads.md): projects with users, shares and priorities,
and per project how batches arrive and what they hold; `plan()` turns one into the exact
batches to submit, the same every time for the same file and seed.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.costs import CostModel
from core.device_types import KIND, DeviceType
from core.priorities import DEFAULT_PRIORITY, Priority
from scheduling.simulator import SimBatch, SimJob

#: Bounds on what a workload may ask for (docs/workloads.md, "Limits"): a workload is a file
#: someone sent, and `plan()` draws every batch and job it describes before anything runs.
MAX_VALUE = 1_000_000  # any whole number drawn (jobs, runs, atoms, pulse_ns, rounds)
MAX_SECONDS = 1e9  # any time or duration (~31 years)
MAX_PER_HOUR = 1e6  # an arrival rate
MAX_BATCHES = 1_000_000  # batches of a whole workload
MAX_JOBS = 10_000_000  # jobs of a whole workload, at most (every draw at its maximum)
MAX_ATOMS = 100  # a register's atoms: FRESNEL takes 80; the cost model grows as 2**atoms

Count = Annotated[int, Field(ge=0, le=MAX_VALUE)]
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class IntRange(_Spec):
    """A whole number drawn uniformly from `min`..`max` (inclusive), or from `choices`."""

    min: Count | None = None
    max: Count | None = None
    choices: Annotated[list[Count], Field(min_length=1, max_length=10_000)] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> IntRange:
        if (self.choices is None) == (self.min is None or self.max is None):
            raise ValueError("give either min and max, or choices")
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError("max must be at least min")
        return self

    @property
    def most(self) -> int:
        """The largest number it can draw."""
        return max(self.choices) if self.choices is not None else self.max or 0

    def draw(self, rng: random.Random) -> int:
        if self.choices is not None:
            return rng.choice(self.choices)
        assert self.min is not None and self.max is not None
        return rng.randint(self.min, self.max)


class FloatRange(_Spec):
    """A number drawn uniformly from `min`..`max`."""

    min: Seconds
    max: Seconds

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.max < self.min:
            raise ValueError("max must be at least min")
        return self

    def draw(self, rng: random.Random) -> float:
        return rng.uniform(self.min, self.max)


class Burst(_Spec):
    at_s: Seconds
    batches: Annotated[int, Field(ge=1, le=100_000)]


class Arrivals(_Spec):
    """Poisson arrivals at a rate, and/or bursts of batches at given times."""

    per_hour: Annotated[float, Field(ge=0, le=MAX_PER_HOUR)] = 0.0
    bursts: Annotated[list[Burst], Field(max_length=10_000)] = []


class ProjectSpec(_Spec):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    priority: Priority = DEFAULT_PRIORITY
    share: Annotated[float, Field(gt=0, le=1e6)] = 1.0
    users: Annotated[
        list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]],
        Field(min_length=1, max_length=10_000),
    ]
    device_type: DeviceType = DeviceType.EMU_FREE
    arrivals: Arrivals
    #: Jobs per batch (per round, for an open batch).
    jobs: IntRange = IntRange(min=1, max=1)
    runs: IntRange = IntRange(choices=[100])
    atoms: IntRange = IntRange(min=2, max=2)
    pulse_ns: IntRange = IntRange(min=200, max=200)
    #: Of its batches, the fraction that are open (variational loops).
    open_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0
    #: Rounds of an open batch: the first goes in with the batch, each next one after the
    #: previous round's results and a think time.
    rounds: IntRange = IntRange(min=3, max=3)
    think_s: FloatRange = FloatRange(min=5, max=5)
    #: Of its batches, the fraction cancelled by their user some time after submission.
    cancel_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0
    cancel_after_s: FloatRange = FloatRange(min=10, max=60)

    @model_validator(mode="after")
    def _atoms(self) -> ProjectSpec:
        if self.atoms.most > MAX_ATOMS:
            raise ValueError(f"atoms: at most {MAX_ATOMS}")
        return self

    def most_batches(self, duration_s: float) -> float:
        """Its expected batches within `duration_s` (Poisson's mean, and every burst)."""
        return self.arrivals.per_hour * duration_s / 3600 + sum(
            b.batches for b in self.arrivals.bursts
        )

    def most_jobs_per_batch(self) -> int:
        return max(1, self.jobs.most) * (max(1, self.rounds.most) if self.open_fraction else 1)


class Workload(_Spec):
    name: str = "workload"
    seed: int = 0
    #: Batches arrive within the first `duration_s` seconds.
    duration_s: Annotated[float, Field(gt=0, le=MAX_SECONDS)]
    projects: Annotated[list[ProjectSpec], Field(min_length=1, max_length=10_000)]

    @model_validator(mode="after")
    def _unique(self) -> Workload:
        names = [p.name for p in self.projects]
        if len(set(names)) != len(names):
            raise ValueError("project names must be unique")
        return self

    @model_validator(mode="after")
    def _bounded(self) -> Workload:
        batches = sum(p.most_batches(self.duration_s) for p in self.projects)
        if batches > MAX_BATCHES:
            raise ValueError(
                f"about {batches:,.0f} batches (arrival rates x duration_s, and bursts): "
                f"at most {MAX_BATCHES:,}"
            )
        jobs = sum(p.most_batches(self.duration_s) * p.most_jobs_per_batch() for p in self.projects)
        if jobs > MAX_JOBS:
            raise ValueError(
                f"up to {jobs:,.0f} jobs (batches x jobs x rounds at their maximum): "
                f"at most {MAX_JOBS:,}"
            )
        return self


class WorkloadError(ValueError):
    """A workload file that cannot be read; the message names the file and the field."""


def _yaml(text: str) -> Any:
    import yaml  # the lab extra: a JSON workload needs nothing more

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None


def read_workload(path: Path) -> Workload:
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else _yaml(text)
        return Workload.model_validate(data)
    except (OSError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()
            )
            raise WorkloadError(f"{path}: {problems}") from None
        raise WorkloadError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class PlannedJob:
    runs: int
    atoms: int
    pulse_ns: int
    #: Its QPU seconds when known (a replayed trace): given to a synthetic device.
    qpu_s: float | None = None
    #: The seed of its shots (core/hints.py): the same workload gives the same counts.
    seed: int = 0


@dataclass(frozen=True)
class PlannedBatch:
    """One batch to submit: what, by whom, when."""

    id: str
    submit_s: float
    project: str
    user: str
    priority: str
    device_type: str
    #: The jobs of each round: one round for a closed batch.
    rounds: tuple[tuple[PlannedJob, ...], ...]
    #: Seconds between a round's results and the next round (open batches).
    think_s: tuple[float, ...]
    #: Seconds after submission its user cancels it; None: never.
    cancel_after_s: float | None

    @property
    def open(self) -> bool:
        return len(self.rounds) > 1


def plan(workload: Workload) -> list[PlannedBatch]:
    """Every batch of the workload, by submission time: each project draws from a generator
    seeded by the workload's seed and its own name, so adding a project does not change the
    others'."""
    batches: list[PlannedBatch] = []
    for project in workload.projects:
        rng = random.Random(_seed(workload.seed, project.name))
        times = [b.at_s for b in project.arrivals.bursts for _ in range(b.batches)]
        if project.arrivals.per_hour > 0:
            t = rng.expovariate(project.arrivals.per_hour / 3600)
            while t < workload.duration_s:
                times.append(t)
                t += rng.expovariate(project.arrivals.per_hour / 3600)
                if len(times) > 2 * MAX_BATCHES:  # the validated mean is far below: never
                    raise WorkloadError(f"{project.name}: more than {MAX_BATCHES:,} batches")
        for n, submit in enumerate(sorted(t for t in times if t < workload.duration_s)):
            batches.append(_batch(project, rng, f"{project.name}-{n:05}", submit, workload.seed))
    batches.sort(key=lambda b: (b.submit_s, b.id))
    return batches


def _batch(
    project: ProjectSpec, rng: random.Random, id_: str, submit: float, seed: int
) -> PlannedBatch:
    opened = rng.random() < project.open_fraction
    atoms, pulse_ns = project.atoms.draw(rng), project.pulse_ns.draw(rng)
    rounds = tuple(
        tuple(
            PlannedJob(project.runs.draw(rng), atoms, pulse_ns)
            for _ in range(max(1, project.jobs.draw(rng)))
        )
        for _ in range(max(1, project.rounds.draw(rng)) if opened else 1)
    )
    numbered = iter(range(10**9))
    rounds = tuple(
        tuple(replace(job, seed=job_seed(seed, id_, next(numbered))) for job in jobs)
        for jobs in rounds
    )
    think = tuple(project.think_s.draw(rng) for _ in rounds[1:])
    cancel = project.cancel_after_s.draw(rng) if rng.random() < project.cancel_fraction else None
    return PlannedBatch(
        id=id_,
        submit_s=submit,
        project=project.name,
        user=rng.choice(project.users),
        priority=project.priority.value,
        device_type=project.device_type.value,
        rounds=rounds,
        think_s=think,
        cancel_after_s=cancel,
    )


def _seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big")


def job_seed(seed: int, batch_id: str, index: int) -> int:
    """The seed of a planned job's shots: from the workload's seed and the job's place in it
    (the cluster's own job ids differ from one run to the next)."""
    return _seed(seed, f"{batch_id}/{index}") % 2**31


def sim_batches(planned: list[PlannedBatch], costs: dict[str, CostModel]) -> list[SimBatch]:
    """The planned batches as the simulator's, each job's QPU time predicted by `costs` (per
    device type; the emulator's default fit when absent). Cancellations are not simulated."""
    out = []
    for b in planned:
        model = costs.get(b.device_type) or CostModel(
            KIND[DeviceType(b.device_type)], 1, device_type=b.device_type
        )
        jobs = []
        for i, round_jobs in enumerate(b.rounds):
            for j, job in enumerate(round_jobs):
                think = b.think_s[i - 1] if i > 0 and j == 0 else 0.0
                seconds = model.job_seconds(job.atoms, job.pulse_ns, job.runs)
                jobs.append(SimJob(qpu_s=seconds, runs=job.runs, think_s=think))
        base = model.batch_base_s
        if base and jobs:
            jobs[0] = SimJob(jobs[0].qpu_s + base, jobs[0].runs, jobs[0].think_s)
        out.append(
            SimBatch(
                b.id, b.project, b.user, b.priority, b.device_type, b.submit_s, b.open, tuple(jobs)
            )
        )
    return out


def shares(workload: Workload) -> dict[str, float]:
    return {p.name: p.share for p in workload.projects}
