"""Job routes of the core API (contract §3, #12-#16)."""

from __future__ import annotations

from flask import Blueprint, request, url_for

from api import filters, jsend
from api.access import after_commit, changeable_job, scoped_projects, visible_job
from api.context import principal, services
from api.links import make_link
from core.errors import InvalidTransition
from core.render import job_json
from core.settings import Settings
from core.status import JobStatus
from core.timefmt import now_us

bp = Blueprint("jobs", __name__)


@bp.get("/api/v2/jobs")
def list_jobs() -> jsend.Reply:
    query, page = filters.job_query(request.args)
    query.project_id = scoped_projects(query.project_id)
    total, jobs = services().store.query_jobs(query, page)
    return jsend.page([job_json(job) for job in jobs], total, page.offset)


@bp.get("/api/v2/jobs/<job_id>")
def get_job(job_id: str) -> jsend.Reply:
    return jsend.success(job_json(visible_job(job_id), with_sequence=True))


@bp.get("/api/v1/jobs/<job_id>/status")
def get_job_status(job_id: str) -> jsend.Reply:
    job = visible_job(job_id)
    return jsend.success({"id": job.id, "status": job.status.value})


@bp.patch("/api/v2/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> jsend.Reply:
    store = services().store
    job = changeable_job(job_id, "cancel")
    errors = store.cancel_jobs(job.batch_id, [job.id], now_us(), principal().user_id)
    if job.id in errors:
        raise InvalidTransition("job", job.id, job.status.value, JobStatus.CANCELED)
    fresh = after_commit(lambda: store.get_job(job.id), None)
    if fresh is None:
        job.status = JobStatus.CANCELED
        fresh = job
    return jsend.success(job_json(fresh))


def _public_base(settings: Settings) -> str:
    """Where results links point: the host the client called only if it is an allowed name
    (a forged `Host` must not send a signed link elsewhere), else the cluster's public URL."""
    if request.host.lower() in settings.allowed_host_names:
        return request.host_url.rstrip("/")
    return settings.public_url


@bp.get("/api/v1/jobs/<job_id>/results_link")
def results_link(job_id: str) -> jsend.Reply:
    svc = services()
    job = visible_job(job_id)
    link = None
    if job.status is JobStatus.DONE:
        url = _public_base(svc.settings) + url_for("results.download", job_id=job.id)
        link = make_link(url, svc.settings.results_secret, job.id, svc.settings.results_link_ttl_s)
    # 200 with null (never 404) for jobs without results: Pulser asks for every job.
    return jsend.success({"results_link": link})
