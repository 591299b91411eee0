"""`tweezer load`: a workload (or a trace, or SWF) thrown at a real cluster through the unmodified
SDK, one client per simulated user with its own token, and a trace of what happened.

Each planned batch is a client session: it waits for its submission time (divided by
`--speedup`), creates its batch (open when it has several rounds), and for a variational loop
waits for each round's results, thinks, adds the next round, and closes it; a batch the
workload cancels is cancelled after its delay. Ctrl-C stops submitting and closes the open
batches. Users and projects are created for the run (`load-<run>-<name>`), with the workload's
priorities and shares; a project whose batches carry several priorities (an SWF group's
queue numbers) has its priority set before each of its submissions (`Priorities`).
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.accounts import Accounts
from core.costs import Costs
from core.db import Db, open_db
from core.device_status import DeviceStatuses
from core.device_types import KIND, DeviceType, qpu_names
from core.errors import ConfigurationError
from core.hints import QPU_SECONDS_VARIABLE, SEED_VARIABLE
from core.qpu import QpuControl
from core.settings import Settings
from core.status import (
    TERMINAL_BATCH_STATUSES,
    TERMINAL_JOB_STATUSES,
    BatchStatus,
    JobStatus,
)
from core.store import Store
from core.timefmt import SECOND_US, now_us, to_us
from lab.export import down_intervals, trace_record
from lab.sdk import sdk_client
from lab.sequences import sequence_for
from lab.traces import (
    TraceError,
    TraceHeader,
    read_records,
    read_swf,
    sim_batch,
    write_trace,
)
from lab.workload import (
    PlannedBatch,
    PlannedJob,
    WorkloadError,
    job_seed,
    plan,
    read_workload,
)
from scheduling.simulator import SimBatch

#: How often a session looks at its batch while it waits for a round's results.
POLL_S = 0.2
TERMINAL = {status.value for status in TERMINAL_BATCH_STATUSES}
ACTIVE_JOB = {status.value for status in JobStatus if status not in TERMINAL_JOB_STATUSES}


@dataclass
class Session:
    """What a planned batch became."""

    planned: PlannedBatch
    batch_id: str | None = None
    error: str | None = None
    #: Set once its submission was made (or will never be): the batch planned at the same
    #: instant after it waits for it, so ties are submitted in the plan's order, which is
    #: how the simulator breaks them (scheduling/simulator.py, `tie`).
    sent: threading.Event = field(default_factory=threading.Event)
    #: That batch's predecessor at the same instant, if any.
    after: Session | None = None


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    submitted: int = 0
    errors: int = 0

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


def run(
    settings: Settings,
    info: dict[str, Any],
    planned: list[PlannedBatch],
    shares: dict[str, float],
    *,
    speedup: float,
    clients: int,
    out: Path | None,
) -> int:
    """Drives the cluster described by `info` (its cluster.json) with `planned`; the exit code:
    0, 1 when a session failed, 130 when interrupted."""
    if not planned:
        raise ConfigurationError("the workload plans no batch")
    db = open_db(settings)
    planned = with_qpu_seconds(planned, Costs(db.client, settings))
    run_id = secrets.token_hex(3)
    admin = Accounts(db.client, settings.namespace)
    accounts, project_ids = _provision(admin, run_id, planned, shares)
    priorities = Priorities(admin, project_ids, planned)
    if priorities.mixed:
        # Said up front: the experiment is not silently changed (docs/traces.md).
        print(
            "tweezer load: project(s) "
            + ", ".join(sorted(priorities.mixed))
            + " submit batches of several priorities: each such submission first sets its "
            "project's priority (a batch keeps the priority its project had when submitted)",
            file=sys.stderr,
        )
    stop, interrupted = threading.Event(), threading.Event()

    def interrupt(*_: object) -> None:
        interrupted.set()
        stop.set()

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    tally = Tally()
    sessions = [Session(p) for p in planned]
    last_at: dict[float, Session] = {}
    for session in sessions:
        session.after = last_at.get(session.planned.submit_s)
        last_at[session.planned.submit_s] = session
    sdks = {
        key: sdk_client(info["core_url"], info["account_url"], a[0], a[1])
        for key, a in accounts.items()
    }
    start = time.monotonic()
    origin_us = to_us(time.time())
    planned_s = max(p.submit_s for p in planned) / speedup
    printer = threading.Thread(
        target=_progress,
        args=(db, settings, sessions, tally, start, planned_s, stop),
        daemon=True,
    )
    printer.start()
    shared = _Run(settings, speedup, start, stop, tally, priorities)
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for session in sessions:
            sdk = sdks[(session.planned.user, session.planned.project)]
            pool.submit(_drive, session, sdk, shared)
    stop.set()
    printer.join()
    _progress_line(db, settings, sessions, tally, start, planned_s)
    sys.stderr.write("\n")
    if out is not None:
        _write_trace(out, Store(db), sessions, settings, shares, origin_us)
        print(f"trace of {tally.submitted} batch(es) -> {out}")
    if tally.errors:
        for session in sessions:
            if session.error:
                print(f"tweezer: {session.planned.id}: {session.error}", file=sys.stderr)
    return 130 if interrupted.is_set() else 1 if tally.errors else 0


def plan_source(
    workload_path: Path | None, trace: Path | None, swf: Path | None, device_type: str
) -> tuple[list[PlannedBatch], dict[str, float]]:
    """The batches to submit and the projects' shares, from one of a workload file, a trace
    or an SWF file (whose batches are all of `device_type`)."""
    sources = [x for x in (workload_path, trace, swf) if x is not None]
    if len(sources) != 1:
        raise ConfigurationError("give one of WORKLOAD, --trace FILE, --swf FILE")
    try:
        if workload_path is not None:
            workload = read_workload(workload_path)
            return plan(workload), {p.name: p.share for p in workload.projects}
        if trace is not None:
            header, records = read_records(trace)
            return [_replayed(sim_batch(r)) for r in records], dict(header.shares or {})
        assert swf is not None
        return [_replayed(b) for b in read_swf(swf, device_type)], {}
    except (OSError, TraceError, WorkloadError) as exc:
        raise ConfigurationError(str(exc)) from None


def _replayed(batch: SimBatch) -> PlannedBatch:
    """A trace's batch as a plan: a closed batch sends its jobs at once, an open one each job
    as a round after its think time; each job asks for its recorded QPU seconds."""
    jobs = [
        PlannedJob(j.runs, 2, 200, qpu_s=j.qpu_s, seed=job_seed(0, batch.id, i))
        for i, j in enumerate(batch.jobs)
    ]
    rounds = (tuple(jobs),) if not batch.open else tuple((j,) for j in jobs)
    think = tuple(j.think_s for j in batch.jobs[1:]) if batch.open else ()
    return PlannedBatch(
        batch.id,
        batch.submit_s,
        batch.project,
        batch.user,
        batch.priority,
        batch.device_type,
        rounds,
        think,
        None,
    )


def with_qpu_seconds(planned: list[PlannedBatch], costs: Costs) -> list[PlannedBatch]:
    """Each job that does not say its QPU seconds (a workload's) asks for its predicted time,
    as the cluster's cost model predicts it (core/costs.py): a synthetic device then takes
    that long, divided by --speedup like every other time of the workload."""
    models = {t: costs.model(t, KIND[DeviceType(t)]) for t in {p.device_type for p in planned}}
    out = []
    for p in planned:
        model = models[p.device_type]
        rounds = tuple(
            tuple(
                job
                if job.qpu_s is not None
                else replace(job, qpu_s=model.job_seconds(job.atoms, job.pulse_ns, job.runs))
                for job in jobs
            )
            for jobs in p.rounds
        )
        out.append(replace(p, rounds=rounds))
    return out


class Priorities:
    """Each batch's own priority, live. Priority is a project's in the cluster (a batch takes
    its project's at submission), while a trace gives each batch its own (SWF: per job, by
    queue number), so a project whose batches carry several priorities has its priority set
    before each of its submissions, one submission at a time."""

    def __init__(
        self, accounts: Accounts, project_ids: dict[str, str], planned: list[PlannedBatch]
    ) -> None:
        self.accounts, self.project_ids = accounts, project_ids
        levels: dict[str, set[str]] = {}
        for p in planned:
            levels.setdefault(p.project, set()).add(p.priority)
        #: The workload projects of several priorities, each with the lock its submissions take.
        self.mixed = {name: threading.Lock() for name, seen in levels.items() if len(seen) > 1}
        self._current: dict[str, str] = {}

    @contextlib.contextmanager
    def submitting(self, project: str, priority: str) -> Iterator[None]:
        """Around one submission of `project` at `priority`."""
        lock = self.mixed.get(project)
        if lock is None:
            yield  # its priority was set when it was made
            return
        with lock:
            if self._current.get(project) != priority:
                self.accounts.update_project(self.project_ids[project], [], queue_priority=priority)
                self._current[project] = priority
            yield


def _provision(
    accounts: Accounts, run_id: str, planned: list[PlannedBatch], shares: dict[str, float]
) -> tuple[dict[tuple[str, str], tuple[str, str]], dict[str, str]]:
    """A project per workload project and a user with an API token per workload user, named
    for this run; (user, project) -> (project id, token), and project -> project id."""
    priorities = {p.project: p.priority for p in planned}
    project_ids: dict[str, str] = {}
    for name, priority in sorted(priorities.items()):
        created = accounts.create_project(f"load-{run_id}-{name}", priority)
        if shares.get(name, 1.0) != 1.0:
            accounts.update_project(created.id, [], share=shares[name])
        project_ids[name] = created.id
    out: dict[tuple[str, str], tuple[str, str]] = {}
    user_ids: dict[str, str] = {}
    for user, name in sorted({(p.user, p.project) for p in planned}):
        if user not in user_ids:
            user_ids[user] = accounts.create_user(f"load-{run_id}-{user}")
        accounts.add_member(project_ids[name], user_ids[user])
        out[(user, name)] = (project_ids[name], accounts.issue_token(user_ids[user]).token)
    return out, project_ids


@dataclass(frozen=True)
class _Run:
    """What every client session of one run shares."""

    settings: Settings
    speedup: float
    #: time.monotonic() at the run's start: planned times count from it (divided by speedup).
    start: float
    stop: threading.Event
    tally: Tally
    priorities: Priorities


def _drive(session: Session, sdk: Any, run: _Run) -> None:
    """One planned batch, as its user's client would submit and follow it."""
    p = session.planned
    batch = _submit(session, sdk, run)
    if batch is None:
        return
    stop, speedup = run.stop, run.speedup
    try:
        session.batch_id = batch.id
        run.tally.add(submitted=1)
        cancel_at = None
        if p.cancel_after_s is not None:
            cancel_at = time.monotonic() + p.cancel_after_s / speedup
        for round_jobs, think in zip(p.rounds[1:], p.think_s, strict=True):
            if not _await_round(sdk, batch.id, cancel_at, stop):
                break
            if stop.wait(think / speedup):
                break
            sdk.add_jobs(batch.id, _jobs(round_jobs, speedup))
        if p.open:
            sdk.close_batch(batch.id)  # also after Ctrl-C: an open batch must not squat
        if cancel_at is not None and not stop.is_set():
            stop.wait(max(0.0, cancel_at - time.monotonic()))
            sdk.cancel_batch(batch.id)
    except Exception as exc:  # a client error is this session's, not the run's
        session.error = f"{type(exc).__name__}: {exc}"
        run.tally.add(errors=1)


def _submit(session: Session, sdk: Any, run: _Run) -> Any:
    """The planned batch created at its time, after the one planned at the same instant before
    it (None: the run stopped, or the cluster refused it); `session.sent` is set either way."""
    p = session.planned
    try:
        if run.stop.wait(max(0.0, run.start + p.submit_s / run.speedup - time.monotonic())):
            return None
        while session.after is not None and not session.after.sent.wait(0.05):
            if run.stop.is_set():
                return None
        first = p.rounds[0]
        sequence = sequence_for(p.device_type, first[0].atoms, first[0].pulse_ns, run.settings)
        with run.priorities.submitting(p.project, p.priority):
            return sdk.create_batch(
                sequence, _jobs(first, run.speedup), open=p.open, device_type=p.device_type
            )
    except Exception as exc:  # a client error is this session's, not the run's
        session.error = f"{type(exc).__name__}: {exc}"
        run.tally.add(errors=1)
        return None
    finally:
        session.sent.set()


def _await_round(sdk: Any, batch_id: str, cancel_at: float | None, stop: threading.Event) -> bool:
    """Waits until every job of the batch so far is finished (an optimiser needs the round's
    results); False if the batch ended or the run stops first."""
    while not stop.wait(POLL_S):
        batch = sdk.get_batch(batch_id)
        if batch.status in TERMINAL:
            return False
        if all(
            count == 0
            for status, count in batch.jobs_count_per_status.items()
            if status in ACTIVE_JOB
        ):
            return True
        if cancel_at is not None and time.monotonic() >= cancel_at:
            return False
    return False


def _jobs(jobs: tuple[PlannedJob, ...], speedup: float) -> list[dict[str, Any]]:
    """The SDK's job dicts, with the hints Pulser ignores (core/hints.py): the QPU seconds a
    synthetic device takes, and the seed of the job's shots."""
    out = []
    for job in jobs:
        hints: dict[str, Any] = {SEED_VARIABLE: job.seed}
        if job.qpu_s is not None:
            hints[QPU_SECONDS_VARIABLE] = job.qpu_s / speedup
        out.append({"runs": job.runs, "variables": hints})
    return out


def _progress(
    db: Db,
    settings: Settings,
    sessions: list[Session],
    tally: Tally,
    start: float,
    planned_s: float,
    stop: threading.Event,
) -> None:
    while not stop.wait(1.0):
        _progress_line(db, settings, sessions, tally, start, planned_s)


def _progress_line(
    db: Db,
    settings: Settings,
    sessions: list[Session],
    tally: Tally,
    start: float,
    planned_s: float,
) -> None:
    """submitted / running / done / errors, QPU busy %, elapsed vs planned, on one line."""
    statuses = Store(db).batch_statuses(s.batch_id for s in sessions if s.batch_id)
    qpus = qpu_names(settings.qpus)
    busy = QpuControl(db).held(qpus)
    running = statuses.count(BatchStatus.RUNNING.value)
    done = sum(1 for s in statuses if s in TERMINAL)
    sys.stderr.write(
        f"\rsubmitted {tally.submitted}/{len(sessions)}  running {running}  done {done}  "
        f"errors {tally.errors}  QPU busy {100 * busy / max(1, len(qpus)):.0f}%  "
        f"elapsed {time.monotonic() - start:.0f}/{planned_s:.0f} s  "
    )
    sys.stderr.flush()


def _write_trace(
    path: Path,
    store: Store,
    sessions: list[Session],
    settings: Settings,
    shares: dict[str, float],
    origin_us: int,
) -> None:
    """What happened to every submitted batch, once they are all finished (bounded wait)."""
    ids = [s.batch_id for s in sessions if s.batch_id]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        batches = store.get_batches(ids)
        if all(b.status.value in TERMINAL for b in batches):
            break
        time.sleep(0.5)
    names = {s.batch_id: s.planned for s in sessions if s.batch_id}
    records = []
    for batch in store.get_batches(ids):
        record = trace_record(batch, store.batch_jobs(batch.id), origin_us)
        planned = names[batch.id]
        # The workload's own names: a replay or a report reads its projects and users.
        records.append(
            record.model_copy(
                update={"id": planned.id, "project": planned.project, "user": planned.user}
            )
        )
    devices = DeviceStatuses(store.db)
    down = down_intervals(devices, settings.qpus, origin_us, now_us())
    header = TraceHeader(
        source="load",
        policy=settings.policy,
        qpus=dict(settings.qpus),
        shares=shares,
        origin_s=origin_us / SECOND_US,
        down=down,
    )
    write_trace(path, header, records)
