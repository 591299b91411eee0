"""What each session of qrmi's on-premises path used (issue #27: QPU time per Slurm job, for
fair share and billing): read from its batches and jobs when asked, so it cannot drift from
what ran. `tweezer usage --slurm-job`, `--since --by` and `GET /admin/api/v1/usage` show it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from core.errors import InvalidRequest
from core.sessions import MAX_SLURM_JOB_ID_CHARS, Session, Sessions
from core.status import JobStatus
from core.store import Store
from core.timefmt import SECOND_US, parse_iso, to_iso

#: How `totals` groups sessions.
GROUPINGS = {"slurm-job": "slurm_job_id", "user": "user_id", "project": "project_id"}


@dataclass(frozen=True)
class SessionUsage:
    session_id: str
    slurm_job_id: str
    user_id: str
    project_id: str
    device_type: str
    created_us: int
    #: When its first batch started on a QPU (None: none did yet).
    first_run_us: int | None
    #: When it was released (None: still held).
    closed_us: int | None
    #: QPU seconds its batches held a QPU (a running one: until now).
    qpu_held_s: float
    #: Seconds its jobs ran on the QPU (each job's start to end).
    qpu_computed_s: float
    jobs: int
    #: Shots of its jobs that finished DONE.
    shots: int

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("created", "first_run", "closed"):
            data[f"{name}_at"] = to_iso(data.pop(f"{name}_us"))
        return data


def session_usage(sessions: Sessions, store: Store, session: Session, now: int) -> SessionUsage:
    batches = store.get_batches(sessions.batches(session.id))
    jobs = [j for b in batches for j in store.batch_jobs(b.id)]
    starts = [b.start_us for b in batches if b.start_us]
    held = sum(((b.end_us or now) - b.start_us) for b in batches if b.start_us)
    computed = sum((j.end_us - j.start_us) for j in jobs if j.start_us and j.end_us)
    return SessionUsage(
        session_id=session.id,
        slurm_job_id=session.slurm_job_id,
        user_id=session.user_id,
        project_id=session.project_id,
        device_type=session.device_type,
        created_us=session.created_us,
        first_run_us=min(starts) if starts else None,
        closed_us=session.closed_us,
        qpu_held_s=round(held / SECOND_US, 3),
        qpu_computed_s=round(computed / SECOND_US, 3),
        jobs=len(jobs),
        shots=sum(j.runs for j in jobs if j.status is JobStatus.DONE),
    )


def totals(usages: Iterable[SessionUsage], by: str) -> list[dict[str, Any]]:
    """Sums per Slurm job, user or project (`by`, a key of GROUPINGS), largest QPU time first."""
    field = GROUPINGS[by]
    groups: dict[str, dict[str, Any]] = {}
    for u in usages:
        key = getattr(u, field)
        group = groups.setdefault(
            key,
            {
                by: key,
                "sessions": 0,
                "qpu_held_s": 0.0,
                "qpu_computed_s": 0.0,
                "jobs": 0,
                "shots": 0,
            },
        )
        group["sessions"] += 1
        group["qpu_held_s"] = round(group["qpu_held_s"] + u.qpu_held_s, 3)
        group["qpu_computed_s"] = round(group["qpu_computed_s"] + u.qpu_computed_s, 3)
        group["jobs"] += u.jobs
        group["shots"] += u.shots
    return sorted(groups.values(), key=lambda g: (-g["qpu_held_s"], str(g[by])))


def report(
    sessions: Sessions,
    store: Store,
    now: int,
    slurm_job_id: str | None = None,
    since_us: int = 0,
    by: str | None = None,
) -> list[dict[str, Any]]:
    """What `tweezer usage` and the admin route show: the sessions of one Slurm job, or those
    opened since `since_us`, each with its figures, or their totals grouped `by`."""
    if slurm_job_id is not None:
        chosen = sessions.of_slurm_job(slurm_job_id)
    else:
        chosen = sessions.since(since_us)
    usages = [session_usage(sessions, store, s, now) for s in chosen]
    if by is not None:
        return totals(usages, by)
    return [u.to_json() for u in usages]


def usage_query(slurm_job_id: str | None, since: str | None, by: str | None) -> dict[str, Any]:
    """`report`'s arguments from text (a query string, the command line); InvalidRequest
    naming what is wrong."""
    if slurm_job_id is not None and not 0 < len(slurm_job_id) <= MAX_SLURM_JOB_ID_CHARS:
        raise InvalidRequest(f"slurm_job_id is 1 to {MAX_SLURM_JOB_ID_CHARS} characters")
    since_us = 0
    if since is not None:
        try:
            since_us = parse_iso(since)
        except (ValueError, OverflowError):
            raise InvalidRequest(f"since must be an ISO-8601 time, got {since[:40]!r}") from None
    if by is not None and by not in GROUPINGS:
        raise InvalidRequest(f"by must be one of {', '.join(GROUPINGS)}, got {by[:40]!r}")
    return {"slurm_job_id": slurm_job_id, "since_us": since_us, "by": by}
