"""What the cluster is doing now, read in one step (core/lua/overview.lua): the one view that
`tweezer status`, `GET /metrics` and the dashboard show.

Per QPU: its device's status, the lease and the batch holding it (whose project, since when,
jobs and shots done, how long an open batch has held it idle), and its workers, alive or lost
(a worker that stopped announcing itself, core/liveness.py); the schedulers alive and the leases
each holds; the waiting batches per device type and priority; how many batches and jobs there are
per device type and status; the jobs finished per second over the last minute.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from core.counters import THROUGHPUT_WINDOW_S, parse_totals
from core.db import Db
from core.device_types import device_type_of_qpu, qpu_names
from core.liveness import SECOND_US, alive_since, qpu_of_worker
from core.priorities import PRIORITIES
from core.script_args import OverviewArgs
from core.sessions import Session, Sessions
from core.settings import Settings
from core.status import TERMINAL_JOB_STATUSES, BatchStatus, DeviceStatus
from core.timefmt import to_iso


class QpuState(StrEnum):
    """What a QPU is doing, as /metrics and the dashboard name it."""

    #: Its device is not UP (DOWN, MAINTENANCE, CALIBRATING): nothing runs.
    DOWN = "down"
    #: A batch holds it and has jobs in flight.
    COMPUTING = "computing"
    #: A batch holds it with nothing in flight (an open batch between jobs, say).
    HELD_IDLE = "held_idle"
    #: Nobody holds it.
    FREE = "free"


@dataclass(frozen=True)
class HeldBatch:
    id: str
    project_id: str
    user_id: str
    status: str
    open: bool
    created_us: int
    start_us: int | None
    #: The last time a job was added or finished (the open-batch idle clock).
    activity_us: int | None
    jobs_total: int
    jobs_done: int
    runs_total: int
    runs_done: int
    counts: dict[str, int]

    @property
    def active_jobs(self) -> int:
        return sum(n for s, n in self.counts.items() if s not in TERMINAL_JOB_STATUSES)

    def idle_held_s(self, now: int) -> float | None:
        """How long an open batch has held its QPU with nothing to run; None otherwise."""
        if not self.open or self.active_jobs or self.activity_us is None:
            return None
        return max(0.0, (now - self.activity_us) / SECOND_US)


@dataclass(frozen=True)
class Worker:
    name: str
    qpu: str
    last_seen_us: int
    alive: bool


@dataclass(frozen=True)
class Qpu:
    name: str
    device_type: str
    device_status: str
    leased: bool
    inflight: int
    batch: HeldBatch | None
    workers: list[Worker]
    #: The scheduler holding its lease, as it last said.
    holder: str | None

    @property
    def state(self) -> QpuState:
        if self.device_status != DeviceStatus.UP:
            return QpuState.DOWN
        if not self.leased:
            return QpuState.FREE
        return QpuState.COMPUTING if self.inflight else QpuState.HELD_IDLE

    @property
    def workers_alive(self) -> int:
        return sum(1 for w in self.workers if w.alive)


@dataclass(frozen=True)
class Scheduler:
    name: str
    last_seen_us: int
    alive: bool
    leases: list[str]


@dataclass(frozen=True)
class QueueLevel:
    device_type: str
    priority: str
    batches: int
    oldest_us: int | None


@dataclass(frozen=True)
class Overview:
    now_us: int
    qpus: list[Qpu]
    schedulers: list[Scheduler]
    queue: list[QueueLevel]
    #: (kind "batch" | "job", device type, status) -> how many there are.
    totals: dict[tuple[str, str, str], int]
    #: Jobs that finished DONE or ERROR in the last THROUGHPUT_WINDOW_S (whole 10 s slots).
    finished_last_minute: int
    devices: dict[str, str] = field(default_factory=dict)
    #: When each device type's latest forecast was made (µs; absent: none yet, or it expired).
    forecast_at: dict[str, int] = field(default_factory=dict)
    #: Sessions of qrmi's on-premises path not released yet, newest first (core/sessions.py).
    sessions: list[Session] = field(default_factory=list)

    @property
    def jobs_per_s(self) -> float:
        return self.finished_last_minute / THROUGHPUT_WINDOW_S

    def oldest_waiting_s(self, device_type: str | None = None) -> float | None:
        """Age of the oldest waiting batch (of `device_type`), None when none waits."""
        oldest = [
            q.oldest_us
            for q in self.queue
            if q.oldest_us is not None and device_type in (None, q.device_type)
        ]
        return (self.now_us - min(oldest)) / SECOND_US if oldest else None


def read_overview(db: Db, qpus: list[str], device_types: list[str], now: int) -> Overview:
    """The cluster now, from one script call: `qpus` are the configured ones (workers may have
    announced more), `device_types` the types served."""
    args = OverviewArgs(
        now=now,
        device_types=json.dumps(device_types),
        priorities=json.dumps(list(PRIORITIES)),
        qpus=json.dumps(qpus),
        window_s=THROUGHPUT_WINDOW_S,
    )
    raw = db.scripts.run(args)
    return decode(json.loads(raw), now)


def cluster_overview(db: Db, settings: Settings, now: int) -> Overview:
    """`read_overview` of the cluster `settings` describe (its configured QPUs and types)."""
    qpus, types = qpu_names(settings.qpus), list(settings.qpus)
    view = read_overview(db, qpus, types, now)
    return replace(view, sessions=Sessions(db.client, settings.namespace).held())


def decode(doc: dict[str, Any], now: int) -> Overview:
    since = alive_since(now)
    workers = [
        Worker(name, qpu_of_worker(name), int(at), int(at) >= since)
        for name, at in sorted(_obj(doc["workers"]).items())
    ]
    leases = {name: held.split() for name, held in _obj(doc["scheduler_leases"]).items()}
    schedulers = [
        Scheduler(name, int(at), int(at) >= since, leases.get(name, []))
        for name, at in sorted(_obj(doc["schedulers"]).items())
    ]
    holders = {qpu: s.name for s in schedulers for qpu in s.leases}
    devices = _obj(doc["devices"])
    qpus = []
    for entry in doc["qpus"]:
        name = entry["name"]
        leased = int(entry["lease_ms"]) > 0
        raw_batch = entry.get("batch")
        device_type = device_type_of_qpu(name)
        qpus.append(
            Qpu(
                name=name,
                device_type=device_type,
                device_status=devices.get(device_type, DeviceStatus.UP),
                leased=leased,
                inflight=int(entry["inflight"]),
                batch=_held(raw_batch) if raw_batch else None,
                workers=[w for w in workers if w.qpu == name],
                holder=holders.get(name) if leased else None,
            )
        )
    queue = [
        QueueLevel(
            q["device_type"],
            q["priority"],
            int(q["batches"]),
            int(q["oldest_us"]) if q.get("oldest_us") else None,
        )
        for q in doc["queue"]
    ]
    return Overview(
        now_us=now,
        qpus=qpus,
        schedulers=schedulers,
        queue=queue,
        totals=parse_totals(_obj(doc["totals"])),
        finished_last_minute=int(doc["finished_last_window"]),
        devices=devices,
        forecast_at={t: int(at) for t, at in _obj(doc.get("forecast_at")).items()},
    )


def _obj(value: Any) -> dict[str, str]:
    """A hash from the script: cjson writes an empty table as {} or [] alike."""
    return value if isinstance(value, dict) else {}


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


def _held(b: dict[str, Any]) -> HeldBatch:
    counts = {s: int(n) for s, n in _obj(b.get("counts")).items()}
    return HeldBatch(
        id=b["id"],
        project_id=b.get("project_id", ""),
        user_id=b.get("user_id", ""),
        status=b.get("status", BatchStatus.RUNNING),
        open=b.get("open") == "1",
        created_us=int(b.get("created_us", 0)),
        start_us=_int(b.get("start_us")),
        activity_us=_int(b.get("activity_us")),
        jobs_total=int(b.get("jobs_total", 0)),
        jobs_done=sum(n for s, n in counts.items() if s in TERMINAL_JOB_STATUSES),
        runs_total=int(b.get("runs_total", 0)),
        runs_done=int(b.get("runs_done", 0)),
        counts=counts,
    )


def overview_json(
    view: Overview, visible: Callable[[str], bool] = lambda _: True, hosts: bool = True
) -> dict[str, Any]:
    """The view as `tweezer status --json` prints it and the dashboard reads it. A batch of a
    project `visible` refuses is shown as held, without whose or which (API isolation).
    Without `hosts`, workers and schedulers are counted but not named: their `host:pid` is
    the cluster operator's business, not every member's."""
    now = view.now_us

    def named(name: str | None) -> str | None:
        return name if hosts else None

    def batch(b: HeldBatch | None) -> dict[str, Any] | None:
        if b is None:
            return None
        if not visible(b.project_id):
            return {"id": None, "hidden": True}
        return {
            "id": b.id,
            "project_id": b.project_id,
            "user_id": b.user_id,
            "status": b.status,
            "open": b.open,
            "since": to_iso(b.start_us),
            "jobs_done": b.jobs_done,
            "jobs_total": b.jobs_total,
            "runs_done": b.runs_done,
            "runs_total": b.runs_total,
            "idle_held_s": _round(b.idle_held_s(now)),
        }

    def worker(w: Worker) -> dict[str, Any]:
        return {"name": named(w.name), "alive": w.alive, "last_seen": to_iso(w.last_seen_us)}

    by_kind: dict[str, dict[str, dict[str, int]]] = {"batch": {}, "job": {}}
    for (kind, device_type, status), n in sorted(view.totals.items()):
        if n:
            by_kind.setdefault(kind, {}).setdefault(device_type, {})[status] = n
    return {
        "at": to_iso(now),
        "qpus": [
            {
                "name": q.name,
                "device_type": q.device_type,
                "device_status": q.device_status,
                "state": q.state.value,
                "scheduler": named(q.holder),
                "inflight": q.inflight,
                "batch": batch(q.batch),
                "workers_alive": q.workers_alive,
                "workers": [worker(w) for w in q.workers],
            }
            for q in view.qpus
        ],
        "schedulers": [
            {
                "name": named(s.name),
                "alive": s.alive,
                "last_seen": to_iso(s.last_seen_us),
                "leases": s.leases,
            }
            for s in view.schedulers
        ],
        "queue": [
            {
                "device_type": q.device_type,
                "priority": q.priority,
                "batches": q.batches,
                "oldest_waiting_s": _round(
                    None if q.oldest_us is None else (now - q.oldest_us) / SECOND_US
                ),
            }
            for q in view.queue
        ],
        "oldest_waiting_s": _round(view.oldest_waiting_s()),
        # How fresh the queue forecasts are (they are made away from the scheduling loop).
        "forecast_at": {t: to_iso(at) for t, at in sorted(view.forecast_at.items())},
        "jobs_per_s": round(view.jobs_per_s, 3),
        "batches": by_kind["batch"],
        "jobs": by_kind["job"],
        # Slurm jobs holding sessions (qrmi pasqal-local): those of projects the viewer sees.
        "sessions": [
            {
                "id": s.id,
                "slurm_job_id": s.slurm_job_id,
                "user_id": s.user_id,
                "project_id": s.project_id,
                "device_type": s.device_type,
                "since": to_iso(s.created_us),
                "batch_id": s.batch_id,
            }
            for s in view.sessions
            if visible(s.project_id)
        ],
    }


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)
