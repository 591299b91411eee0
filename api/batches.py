"""Batch routes of the core API (contract §3, #1-#11)."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, request

from api import filters, jsend
from api.access import (
    after_commit,
    canonical_id,
    changeable_batch,
    scoped_projects,
    visible_batch,
)
from api.body import read_json
from api.context import device_status, principal, services
from api.idempotency import idempotency
from api.schemas import CancelBatchesIn, CreateBatchIn, TagsIn, parse_model
from core.accounts import Project
from core.audit import Audit
from core.errors import (
    BatchClosed,
    Conflict,
    Forbidden,
    InvalidRequest,
    InvalidTransition,
    NotFound,
)
from core.records import Batch, Job
from core.render import batch_document, batch_json, batch_status_json, job_json
from core.status import BatchStatus
from core.store import Page
from core.timefmt import now_us

bp = Blueprint("batches", __name__)


@bp.post("/api/v1/batches")
def create_batch() -> jsend.Reply:
    svc = services()
    data = read_json(svc.settings)
    idem = idempotency(data)
    if idem and (earlier := svc.store.idempotent_batch(idem)):
        return _replay(earlier)
    body = parse_model(CreateBatchIn, data)
    caller = principal()
    project = _project(str(body.project_id))
    batch, jobs = svc.submission.new_batch(body, caller, project.queue_priority)
    project.quotas.check_submission(project.id, batch.device_type, (j.runs for j in jobs))
    status = device_status(batch.device_type)  # read before the commit: nothing may fail after
    audit = Audit(caller.user_id, "batch.create", {"jobs": len(jobs)})
    created = svc.store.create_batch(batch, jobs, now_us(), idem, audit)
    if created != batch.id:  # a concurrent request with the same Idempotency-Key won
        return _replay(created)
    return jsend.success(batch_json(batch, jobs, device_status=status), 201)


@bp.get("/api/v2/batches/<batch_id>")
def get_batch(batch_id: str) -> jsend.Reply:
    # No embedded jobs: the SDK pages them through GET /api/v2/jobs when it needs them. Their
    # ids, in creation order, are what qrmi reads.
    store = services().store
    [batch] = store.with_forecasts([visible_batch(batch_id)])
    data = batch_document(batch, store.batch_job_ids(batch.id), device_status(batch.device_type))
    if batch.webhook is not None and principal().admin:
        # Cluster administrators see how its announcement went (scheduler/webhooks.py).
        data["webhook_state"] = batch.webhook_state
        data["webhook_deliveries"] = store.webhook_deliveries(batch.id)
    return jsend.success(data)


@bp.get("/api/v1/batches/<batch_id>/full_results")
def full_results(batch_id: str) -> jsend.Reply:
    """Every result of the batch at once: job id -> its results document, for the jobs that
    have one (DONE), in creation order. qrmi reads its results here."""
    store = services().store
    job_ids = store.batch_job_ids(visible_batch(batch_id).id)
    documents = store.get_results(job_ids)
    return jsend.success(
        {job_id: json.loads(doc) for job_id, doc in zip(job_ids, documents, strict=True) if doc}
    )


@bp.get("/api/v1/batches/<batch_id>")
def get_batch_with_jobs(batch_id: str) -> jsend.Reply:
    """The pre-0.24 route, still used by older SDKs: the batch with all its jobs."""
    store = services().store
    [batch] = store.with_forecasts([visible_batch(batch_id)])
    return jsend.success(_json(batch, store.batch_jobs(batch.id)))


@bp.get("/api/v1/batches/<batch_id>/status")
def get_batch_status(batch_id: str) -> jsend.Reply:
    return jsend.success(batch_status_json(visible_batch(batch_id)))


@bp.patch("/api/v2/batches/<batch_id>/complete")
def close_batch(batch_id: str) -> jsend.Reply:
    batch = changeable_batch(batch_id, "close")
    services().store.close_batch(batch.id, now_us(), principal().user_id)
    return _batch_after_commit(batch)


@bp.patch("/api/v2/batches/<batch_id>/cancel")
def cancel_batch(batch_id: str) -> jsend.Reply:
    batch = changeable_batch(batch_id, "cancel")
    services().store.cancel_batch(batch.id, now_us(), principal().user_id)
    return _batch_after_commit(batch)


@bp.patch("/api/v1/batches/cancel")
@bp.patch("/api/v2/batches/cancel")  # the route the SDK's own mock server uses
def cancel_batches() -> jsend.Reply:
    svc = services()
    body = parse_model(CancelBatchesIn, read_json(svc.settings))
    for raw_id in body.batch_ids:
        # errors keys must be UUIDs for the SDK; a non-UUID id is refused before anything.
        if canonical_id(raw_id) is None:
            raise InvalidRequest(f"batch_ids: {raw_id!r} is not a UUID")
    errors: dict[str, str] = {}
    allowed: list[tuple[str, Batch]] = []
    for raw_id in body.batch_ids:
        try:
            allowed.append((raw_id, changeable_batch(raw_id, "cancel")))
        except (NotFound, Forbidden) as exc:
            errors[raw_id] = exc.message
    # One commit for all of them: a failure cannot leave some cancelled behind a 503.
    unique = list(dict.fromkeys(batch.id for _, batch in allowed))
    outcomes = svc.store.cancel_batches(unique, now_us(), principal().user_id)
    canceled: list[dict[str, Any]] = []
    answered: set[str] = set()
    for raw_id, batch in allowed:
        refusal = _again(batch) if batch.id in answered else outcomes[batch.id]
        answered.add(batch.id)
        if refusal is None:
            canceled.append(_batch_json_after_commit(batch))
        else:
            errors[raw_id] = refusal.message
    return jsend.success({"batches": canceled, "errors": errors})


@bp.post("/api/v1/batches/<batch_id>/rebatch")
def rebatch(batch_id: str) -> jsend.Reply:
    svc = services()
    original = visible_batch(batch_id)
    query = filters.rebatch_query(request.args)
    idem = idempotency(request.args.to_dict(flat=False))
    if idem and (earlier := svc.store.idempotent_batch(idem)):
        return _replay(earlier)
    if original.open:
        raise Conflict(f"Batch {original.id} is open; only closed batches can be rebatched")
    query.batch_id = [original.id]
    _, job_ids = svc.store.query_job_ids(query, Page(offset=0, limit=1_000_000, desc=False))
    if not job_ids:
        raise InvalidRequest(f"No job of batch {original.id} matches the rebatch filters")
    caller = principal()
    project = _project(original.project_id)
    batch, jobs = svc.submission.rebatch(original, svc.store.get_jobs(job_ids), caller)
    batch.queue_priority = project.queue_priority  # the project's priority now
    project.quotas.check_submission(project.id, batch.device_type, (j.runs for j in jobs))
    status = device_status(batch.device_type)  # read before the commit: nothing may fail after
    audit = Audit(caller.user_id, "batch.rebatch", {"from": original.id, "jobs": len(jobs)})
    created = svc.store.create_batch(batch, jobs, now_us(), idem, audit)
    if created != batch.id:  # a concurrent request with the same Idempotency-Key won
        return _replay(created)
    return jsend.success(batch_json(batch, jobs, device_status=status), 201)


@bp.get("/api/v1/batches")
def list_batches() -> jsend.Reply:
    query, page = filters.batch_query(request.args)
    query.project_id = scoped_projects(query.project_id)
    store = services().store
    total, batches = store.query_batches(query, page)
    batches = store.with_forecasts(batches)
    return jsend.page([_json(b, with_sequence=False) for b in batches], total, page.offset)


@bp.post("/api/v2/batches/<batch_id>/jobs")
def add_jobs(batch_id: str) -> jsend.Reply:
    svc = services()
    data = read_json(svc.settings)
    batch = changeable_batch(batch_id, "add jobs to")
    idem = idempotency(data)
    if idem and svc.store.idempotent_batch(idem):
        return _replay(batch.id)
    if not batch.open:  # before validating: the commit refuses it the same way
        raise BatchClosed(batch.id, batch.status)
    jobs = svc.submission.new_jobs(batch, data)
    project = _project(batch.project_id)
    project.quotas.check_submission(project.id, batch.device_type, (j.runs for j in jobs))
    audit = Audit(principal().user_id, "batch.add_jobs", {"jobs": len(jobs)})
    svc.store.add_jobs(batch.id, jobs, now_us(), audit, idem)
    return _batch_after_commit(batch, status=201)


@bp.patch("/api/v1/batches/<batch_id>/tags")
def set_tags(batch_id: str) -> jsend.Reply:
    svc = services()
    tags = parse_model(TagsIn, {"tags": read_json(svc.settings)}).tags
    batch = changeable_batch(batch_id, "tag")
    svc.store.set_tags(batch.id, tags, now_us(), principal().user_id)
    return _batch_after_commit(batch)


@bp.patch("/api/v2/batches/<batch_id>/cancel/jobs")
def cancel_jobs(batch_id: str) -> jsend.Reply:
    svc = services()
    batch = changeable_batch(batch_id, "cancel jobs of")
    query = filters.cancel_jobs_query(request.args)
    query.batch_id = [batch.id]
    _, job_ids = svc.store.query_job_ids(query, Page(offset=0, limit=1_000_000, desc=False))
    errors = svc.store.cancel_jobs(batch.id, job_ids, now_us(), principal().user_id)
    canceled = [job_id for job_id in job_ids if job_id not in errors]
    none: list[Job] = []
    jobs = after_commit(lambda: svc.store.get_jobs(canceled), none)
    return jsend.success({"jobs": [job_json(job) for job in jobs], "errors": errors})


def _again(batch: Batch) -> InvalidTransition:
    """What a batch listed twice gets the second time: it is cancelled already."""
    return InvalidTransition("batch", batch.id, BatchStatus.CANCELED, BatchStatus.CANCELED)


def _project(project_id: str) -> Project:
    """The project a submission goes to; the caller must be a member."""
    project = services().accounts.get_project(project_id)
    if project is None or project_id not in principal().project_ids:
        raise Forbidden(f"You are not a member of project {project_id}")
    return project


def _batch_json_after_commit(batch: Batch) -> dict[str, Any]:
    store = services().store

    def read() -> dict[str, Any]:
        [fresh] = store.with_forecasts([store.get_batch(batch.id) or batch])
        return _json(fresh, store.batch_jobs(batch.id))

    return after_commit(read, batch_json(batch))


def _replay(batch_id: str) -> jsend.Reply:
    """The answer to a retried POST: the batch its first attempt created or filled, as it is
    now, with all its jobs."""
    store = services().store
    batch = store.get_batch(batch_id)
    if batch is None:
        raise NotFound(f"Batch {batch_id} not found")
    [batch] = store.with_forecasts([batch])
    return jsend.success(_json(batch, store.batch_jobs(batch.id)), 201)


def _json(
    batch: Batch, jobs: list[Job] | None = None, with_sequence: bool = True
) -> dict[str, Any]:
    return batch_json(batch, jobs, with_sequence, device_status(batch.device_type))


def _batch_after_commit(batch: Batch, status: int = 200) -> jsend.Reply:
    return jsend.success(_batch_json_after_commit(batch), status)
