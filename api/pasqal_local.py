"""qrmi's on-premises API (`pasqal-local`, Pasqal's "warden"; issue #27), one per device type
under /pasqal-local/<device type>: what a Slurm job's qrmi calls, authenticated by MUNGE
(core/munge.py: the credential's uid is the Tweezer user mapped to it, `tweezer user add
--unix-uid`). A session is an open batch of the user's project (core/sessions.py); a task is
one job of it, named by an integer. Answers are plain JSON, as qrmi reads them; refusals are the
API's usual JSend errors with their 4xx status (qrmi shows the body).

  GET    /accessible          {"is_accessible", "message"}         (no credential: qrmi sends none)
  POST   /sessions            {"user_id", "slurm_job_id"} -> {"id"}
  DELETE /sessions/<id>       -> {"id"}: the open batch is closed; its tasks finish
  POST   /jobs                {"sequence", "shots"}, X-Warden-Session -> a task
  GET    /jobs                the caller's tasks, newest first
  GET    /jobs/<n>            {"id", "user_id", "status", "results"}
  POST   /jobs/<n>/cancel     -> the task
  GET    /jobs/<n>/logs       {"logs"}: its errors and attempts
  GET    /qpu/specs           {"specs"}: the device's Pulser abstract repr
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import time
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from api.body import read_json
from api.context import device_status, services
from api.schemas import CreateBatchIn, parse_model
from core.accounts import Project, User
from core.audit import Audit
from core.errors import (
    BatchClosed,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from core.munge import authenticate
from core.records import Job, Principal
from core.sessions import MAX_SLURM_JOB_ID_CHARS, PASQAL_LOCAL_PREFIX, Session, Sessions
from core.status import (
    TERMINAL_BATCH_STATUSES,
    TERMINAL_JOB_STATUSES,
    DeviceStatus,
    JobStatus,
)
from core.timefmt import now_us

bp = Blueprint("pasqal_local", __name__, url_prefix=PASQAL_LOCAL_PREFIX + "/<device_type>")

#: Tasks `GET /jobs` lists, newest first.
MAX_LISTED_TASKS = 1000


def _json(data: Any, status: int = 200) -> tuple[Response, int]:
    return jsonify(data), status


@bp.url_value_preprocessor
def _device_type(endpoint: str | None, values: dict[str, Any] | None) -> None:
    device_type = (values or {}).pop("device_type", "")
    if device_type not in services().registry:
        served = ", ".join(services().registry)
        raise NotFound(f"Device type {device_type} is not served here; served: {served}")
    g.device_type = device_type


@bp.before_request
def _authenticate() -> None:
    """Every route but /accessible: a valid MUNGE credential of a mapped, enabled user. A
    refused credential is audited (who tried what, from where)."""
    if request.endpoint == "pasqal_local.accessible":
        return
    svc = services()
    if svc.munge is None:
        raise ServiceUnavailable("MUNGE is not available on this API host (install libmunge2)")
    try:
        identity = authenticate(svc.munge, request.headers.get("x-munge-cred"), time.time())
    except Unauthorized as bad:
        _audit_refusal("anonymous", str(bad))
        raise
    user = svc.accounts.user_of_unix_uid(identity.uid)
    if user is None:
        unmapped = Forbidden(
            f"Unix uid {identity.uid} is not a Tweezer user: an administrator maps it with "
            f"`tweezer user add NAME --unix-uid {identity.uid}`"
        )
        _audit_refusal(f"unix-uid:{identity.uid}", str(unmapped))
        raise unmapped
    credential_hash = hashlib.sha256(f"munge-uid:{identity.uid}".encode()).hexdigest()
    caller = svc.accounts.principal(user.id, credential_hash)
    if caller is None:
        raise Unauthorized(f"user {user.id} is disabled")
    svc.rate_limiter.check(caller.token_hash, now_us())
    g.principal, g.user, g.unix_uid = caller, user, identity.uid


@bp.get("/accessible")
def accessible() -> tuple[Response, int]:
    status = device_status(g.device_type)
    up = status == DeviceStatus.UP
    message = f"{g.device_type} is {status}" + ("" if up else ": sessions wait until it is UP")
    return _json({"is_accessible": up, "message": message})


@bp.post("/sessions")
def open_session() -> tuple[Response, int]:
    svc = services()
    body = _object(read_json(svc.settings), ("user_id", "slurm_job_id"))
    uid, slurm_job = body["user_id"], body["slurm_job_id"]
    if not isinstance(uid, str) or uid != str(g.unix_uid):
        raise Forbidden(f"user_id must be the uid of the MUNGE credential ({g.unix_uid})")
    if (
        not isinstance(slurm_job, str)
        or not 0 < len(slurm_job) <= MAX_SLURM_JOB_ID_CHARS
        or not slurm_job.isprintable()
    ):
        raise InvalidRequest(
            f"slurm_job_id must be 1 to {MAX_SLURM_JOB_ID_CHARS} printable characters"
        )
    caller: Principal = g.principal
    project = _project_of(caller, g.user)  # the user authentication read
    session = _sessions().open(
        caller.user_id, g.unix_uid, project, g.device_type, slurm_job, now_us()
    )
    return _json({"id": session.id})


@bp.delete("/sessions/<session_id>")
def close_session(session_id: str) -> tuple[Response, int]:
    session = _own_session(session_id)
    now = now_us()
    _sessions().close(session.id, now)
    batch = services().store.get_batch(session.batch_id) if session.batch_id else None
    if batch is not None and batch.open and batch.status not in TERMINAL_BATCH_STATUSES:
        # One that ended meanwhile (timed out, cancelled) has nothing left to close.
        with contextlib.suppress(BatchClosed, Conflict):
            services().store.close_batch(batch.id, now, g.principal.user_id)
    return _json({"id": session.id})


@bp.post("/jobs")
def start_task() -> tuple[Response, int]:
    svc = services()
    session = _own_session(request.headers.get("X-Warden-Session", ""), header=True)
    if session.closed_us is not None:
        raise Conflict(f"session {session.id} was released: acquire a new one")
    body = _object(read_json(svc.settings), ("sequence", "shots"))
    sequence, shots = body["sequence"], body["shots"]
    if not isinstance(sequence, str):
        raise InvalidRequest("sequence must be a Pulser sequence's abstract representation")
    if not isinstance(shots, int) or isinstance(shots, bool) or shots <= 0:
        raise InvalidRequest("shots must be a positive integer")
    sessions = _sessions()
    job_data = {"runs": shots, "sequence": sequence}
    batch = svc.store.get_batch(session.batch_id) if session.batch_id else None
    now = now_us()
    if batch is not None and batch.open and batch.status not in TERMINAL_BATCH_STATUSES:
        [job] = svc.submission.new_jobs(batch, [job_data])
        _quota(session, job.runs)  # every check before the task takes a number
        number = sessions.next_job_number(session.user_id)
        job = dataclasses.replace(job, id=sessions.job_id_of(number))
        try:
            svc.store.add_jobs(batch.id, [job], now, _audit("batch.add_jobs", session))
            return _json(_task(number, job, session.unix_uid), 201)
        except BatchClosed:
            pass  # its batch ended meanwhile (open-batch limits): the task opens another
    return _json(_start_in_new_batch(session, sequence, shots), 201)


@bp.get("/jobs")
def list_tasks() -> tuple[Response, int]:
    sessions, store = _sessions(), services().store
    numbers = sessions.job_numbers(g.principal.user_id, MAX_LISTED_TASKS)
    by_id = {job.id: job for job in store.get_jobs([sessions.job_id_of(n) for n in numbers])}
    # A number whose job never committed lists as nothing.
    found = [(n, by_id[i]) for n in numbers if (i := sessions.job_id_of(n)) in by_id]
    done = [job.id for _, job in found if job.status is JobStatus.DONE]
    results = dict(zip(done, store.get_results(done), strict=True))
    return _json([_task(n, job, g.unix_uid, results.get(job.id)) for n, job in found])


@bp.get("/jobs/<number>")
def get_task(number: str) -> tuple[Response, int]:
    n, job = _own_task(number)
    return _json(_task(n, job, g.unix_uid))


@bp.post("/jobs/<number>/cancel")
def cancel_task(number: str) -> tuple[Response, int]:
    n, job = _own_task(number)
    store = services().store
    if job.status not in TERMINAL_JOB_STATUSES:
        store.cancel_jobs(job.batch_id, [job.id], now_us(), g.principal.user_id)
        job = store.get_job(job.id) or job
    return _json(_task(n, job, g.unix_uid))


@bp.get("/jobs/<number>/logs")
def task_logs(number: str) -> tuple[Response, int]:
    _, job = _own_task(number)
    lines = [f"status {job.status.value}"]
    lines += [f"attempt on {a.qpu or '?'}: {a.outcome or 'running'}" for a in job.history]
    lines += [f"error: {e}" for e in job.errors]
    return _json({"logs": "\n".join(lines)})


@bp.get("/qpu/specs")
def qpu_specs() -> tuple[Response, int]:
    return _json({"specs": services().registry[g.device_type].specs})


# -- helpers ---------------------------------------------------------------------------------


def _sessions() -> Sessions:
    svc = services()
    return Sessions(svc.db.client, svc.settings.namespace)


def _object(data: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidRequest("Invalid request body: expected a JSON object")
    missing = [name for name in fields if name not in data]
    if missing:
        raise InvalidRequest(f"Invalid request body: missing {', '.join(missing)}")
    extra = sorted(set(data) - set(fields))
    if extra:
        raise InvalidRequest(f"Invalid request body: unknown field(s) {', '.join(extra)}")
    return data


def _project_of(caller: Principal, user: User) -> str:
    """The project a user's sessions run in: the one an administrator named for its Slurm
    jobs (`tweezer user set NAME --slurm-project ID`), else the only one it belongs to."""
    named = user.slurm_project
    if named is not None:
        if named not in caller.project_ids:
            raise Forbidden(f"user {caller.user_id} is not a member of its Slurm project {named}")
        return named
    if len(caller.project_ids) == 1:
        [project] = caller.project_ids
        return project
    if not caller.project_ids:
        raise Forbidden(f"user {caller.user_id} belongs to no project")
    raise Conflict(
        f"user {caller.user_id} belongs to {len(caller.project_ids)} projects: an administrator "
        f"names the one for its Slurm jobs with `tweezer user set {caller.user_id} "
        "--slurm-project ID`"
    )


def _own_session(session_id: str, header: bool = False) -> Session:
    """The caller's session on this device type; 404 otherwise (another's is not shown, and
    the attempt is audited)."""
    if not session_id:
        raise InvalidRequest("missing session: send the X-Warden-Session header" if header else "")
    session = _sessions().get(session_id[:64])
    if session is None or session.device_type != g.device_type:
        raise NotFound(f"session {session_id[:64]} not found")
    if session.user_id != g.principal.user_id:
        _audit_refusal(g.principal.user_id, f"session {session.id} of {session.user_id}")
        raise NotFound(f"session {session_id[:64]} not found")
    return session


def _audit_refusal(actor: str, reason: str) -> None:
    """An audit entry for a refused request that may be an attack: a bad credential, an
    unmapped uid, someone else's session. Counted against the client address's rate limit
    first (429 past it), so nobody floods the audit log out of its retained entries."""
    svc = services()
    address = request.remote_addr or "unknown"
    svc.rate_limiter.check(hashlib.sha256(f"refused:{address}".encode()).hexdigest(), now_us())
    detail = {"reason": reason[:300], "path": request.path[:200], "from": request.remote_addr}
    pipe = svc.db.client.pipeline(transaction=True)
    svc.accounts.audit_log.record(pipe, Audit(actor, "pasqal_local.refused", detail), now_us())
    pipe.execute()


def _own_task(number: str) -> tuple[int, Job]:
    if not number.isdigit() or len(number) > 18:
        raise NotFound(f"task {number} not found")
    n = int(number)
    job = services().store.get_job(_sessions().job_id_of(n))
    if job is None or job.user_id != g.principal.user_id:
        raise NotFound(f"task {number} not found")
    return n, job


def _project(session: Session) -> Project:
    project = services().accounts.get_project(session.project_id)
    if project is None:
        raise Forbidden(f"project {session.project_id} no longer exists")
    return project


def _quota(session: Session, runs: int) -> None:
    """The session's project's quotas, for one more job of `runs` shots."""
    project = _project(session)
    project.quotas.check_submission(project.id, session.device_type, [runs])


def _audit(action: str, session: Session) -> Audit:
    detail = {"jobs": 1, "session": session.id, "slurm_job_id": session.slurm_job_id}
    return Audit(session.user_id, action, detail)


def _start_in_new_batch(session: Session, sequence: str, shots: int) -> dict[str, Any]:
    """The session's task in a new open batch (its first, or one after its batch ended)."""
    svc = services()
    sessions = _sessions()
    project = _project(session)
    body = parse_model(
        CreateBatchIn,
        {
            "sequence_builder": sequence,
            "jobs": [{"runs": shots}],
            "open": True,
            "device_type": session.device_type,
            "project_id": session.project_id,
        },
    )
    batch, [job] = svc.submission.new_batch(body, g.principal, project.queue_priority)
    _quota(session, job.runs)  # every check before the task takes a number
    number = sessions.next_job_number(session.user_id)
    batch_id = sessions.batch_id_of(session.id, number)
    batch = dataclasses.replace(batch, id=batch_id)
    job = dataclasses.replace(job, id=sessions.job_id_of(number), batch_id=batch_id)
    now = now_us()
    sessions.use_batch(session.id, batch_id, now)
    svc.store.create_batch(batch, [job], now, audit=_audit("batch.create", session))
    return _task(number, job, session.unix_uid)


def _task(number: int, job: Job, unix_uid: int, results: str | None = None) -> dict[str, Any]:
    """A task as qrmi reads it: PENDING, RUNNING, DONE, CANCELED or ERROR, and the results
    document (JSON text) once DONE (`results`, when the caller read it already)."""
    if results is None and job.status is JobStatus.DONE:
        results = services().store.get_result(job.id)
    return {
        "id": number,
        "user_id": str(unix_uid),
        "status": job.status.value,
        "results": results if job.status is JobStatus.DONE else None,
    }
