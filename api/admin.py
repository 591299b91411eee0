"""Admin-only routes (under /admin): users, projects, memberships, quotas, tokens and the audit
log, for cluster administrators (`tweezer user add NAME --admin`). They do what the
`tweezer user|project|token|audit` commands do, through the same core/accounts.py methods, and
every change they make is audited under the administrator's name. create_app registers them with
`require_token(..., admin_only=True)`: anyone else gets 403."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from flask import Blueprint, request

from api import filters, jsend
from api.body import read_json
from api.context import principal, services
from api.params import is_stream_id, uint
from api.schemas import (
    MemberIn,
    NewProjectIn,
    NewTokenIn,
    NewUserIn,
    ProjectChangeIn,
    parse_model,
)
from core.accounts import Project, User
from core.errors import InvalidRequest
from core.render import forecast_json
from core.roles import Role
from core.session_usage import report as session_report
from core.session_usage import usage_query
from core.sessions import Sessions
from core.timefmt import now_us, to_iso

bp = Blueprint("admin", __name__)

#: Largest audit page.
MAX_AUDIT_LIMIT = 1000


@bp.get("/api/v1/users")
def list_users() -> jsend.Reply:
    users = services().accounts.users()
    accounts = services().accounts
    return jsend.page([_user_json(u, accounts.memberships(u.id)) for u in users], len(users), 0)


@bp.post("/api/v1/users")
def add_user() -> jsend.Reply:
    svc = services()
    body = parse_model(NewUserIn, read_json(svc.settings))
    svc.accounts.create_user(body.username, body.password, body.admin, actor=_actor())
    # Built from what was committed, not read back: nothing may fail after the commit.
    return jsend.success(_user_json(User(body.username, body.admin, False), {}), 201)


@bp.post("/api/v1/users/<username>/disable")
def disable_user(username: str) -> jsend.Reply:
    accounts = services().accounts
    user, projects = _user(username), accounts.memberships(username)  # before the commit
    accounts.disable_user(username, actor=_actor())
    return jsend.success(_user_json(replace(user, disabled=True), projects))


@bp.post("/api/v1/users/<username>/tokens")
def issue_token(username: str) -> jsend.Reply:
    svc = services()
    body = parse_model(NewTokenIn, read_json(svc.settings))
    issued = svc.accounts.issue_token(username, body.expires_in, actor=_actor())
    return jsend.success({"token_id": issued.token_id, "token": issued.token}, 201)


@bp.delete("/api/v1/tokens/<token_id>")
def revoke_token(token_id: str) -> jsend.Reply:
    services().accounts.revoke_token(token_id, actor=_actor())
    return jsend.success({"token_id": token_id, "revoked": True})


@bp.get("/api/v1/projects")
def list_projects() -> jsend.Reply:
    projects = services().accounts.projects()
    return jsend.page([_project_json(p) for p in projects], len(projects), 0)


@bp.post("/api/v1/projects")
def add_project() -> jsend.Reply:
    svc = services()
    body = parse_model(NewProjectIn, read_json(svc.settings))
    project = svc.accounts.create_project(body.name, body.queue_priority, actor=_actor())
    return jsend.success(_project_json(project), 201)


@bp.patch("/api/v1/projects/<project_id>")
def change_project(project_id: str) -> jsend.Reply:
    svc = services()
    body = parse_model(ProjectChangeIn, read_json(svc.settings))
    project = svc.accounts.update_project(
        project_id,
        list(svc.registry),
        body.queue_priority,
        body.quotas,
        actor=_actor(),
        share=body.share,
    )
    return jsend.success(_project_json(project))


@bp.put("/api/v1/projects/<project_id>/members/<username>")
def add_member(project_id: str, username: str) -> jsend.Reply:
    svc = services()
    body = parse_model(MemberIn, read_json(svc.settings))
    if body.role not in Role.__members__:
        raise InvalidRequest(f"role must be one of {', '.join(Role.__members__)}")
    svc.accounts.add_member(project_id, username, Role(body.role), actor=_actor())
    return jsend.success({"project_id": project_id, "user_id": username, "role": body.role})


@bp.delete("/api/v1/projects/<project_id>/members/<username>")
def remove_member(project_id: str, username: str) -> jsend.Reply:
    services().accounts.remove_member(project_id, username, actor=_actor())
    return jsend.success({"project_id": project_id, "user_id": username, "role": None})


@bp.get("/api/v1/audit")
def audit_log() -> jsend.Reply:
    """Newest first; `before=<entry id>` pages back, filters: actor, action, project_id."""
    args = request.args
    unknown = set(args) - {"limit", "before", "actor", "action", "project_id"}
    if unknown:
        raise InvalidRequest(f"unknown query parameter {sorted(unknown)[0]!r}")
    limit = uint(args.get("limit", "100"), MAX_AUDIT_LIMIT)
    if limit is None or limit < 1:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_AUDIT_LIMIT}")
    before = args.get("before")
    if before is not None and not is_stream_id(before):
        raise InvalidRequest("before must be an audit entry id such as 1732400000000-0")
    entries = services().accounts.audit_log.entries(
        limit=limit,
        before=before,
        actor=args.get("actor"),
        action=args.get("action"),
        project_id=args.get("project_id"),
    )
    items = [{**asdict(e), "at": to_iso(e.at_us)} for e in entries]
    for item in items:
        del item["at_us"]
    return jsend.page(items, len(items), 0)


@bp.get("/api/v1/usage")
def usage() -> jsend.Reply:
    """Every project's use of the cluster: jobs not finished, bytes stored, open batches, and
    QPU seconds per device type as fair share counts them now (decayed by the half-life).
    With `slurm_job_id`, `since` or `by`: the sessions of qrmi's on-premises path instead
    (core/session_usage.py), one Slurm job's, or those since a time, or their totals by
    slurm-job, user or project."""
    svc = services()
    args = request.args
    if {"slurm_job_id", "since", "by"} & set(args):
        items = session_report(
            Sessions(svc.db.client, svc.settings.namespace),
            svc.store,
            now_us(),
            **usage_query(args.get("slurm_job_id"), args.get("since"), args.get("by")),
        )
        return jsend.page(items, len(items), 0)
    projects = svc.accounts.projects()
    items = svc.store.usage(
        [p.id for p in projects],
        list(svc.settings.qpus),
        svc.settings.fair_share_half_life_s,
        now_us(),
    )
    return jsend.page(
        [
            {
                "project_id": p.id,
                "name": p.name,
                "share": p.share,
                "queue_priority": p.queue_priority,
                **u,
            }
            for p, u in zip(projects, items, strict=True)
        ],
        len(projects),
        0,
    )


@bp.get("/api/v1/queue")
def queue() -> jsend.Reply:
    """Every project's waiting batches per device type (`device_type` filters), in the order
    the scheduling policy is expected to start them, with their forecasts: a page of them
    (`offset`, `limit`), of the device types one after the other."""
    svc = services()
    device_types, page = filters.queue_query(request.args)
    wanted = device_types or list(svc.settings.qpus)
    # Of each type's forecast order only the page's part is read, and only the page's batches.
    ids: list[str] = []
    total = 0
    for device_type in wanted:
        skip, take = max(0, page.offset - total), page.limit - len(ids)
        part, count = svc.store.forecasts.order(device_type, skip, take)
        ids += part
        total += count
    items = [
        {
            "device_type": batch.device_type,
            "queue_position": batch.forecast.position if batch.forecast else None,
            "batch_id": batch.id,
            "project_id": batch.project_id,
            "user_id": batch.user_id,
            "queue_priority": batch.queue_priority,
            "jobs": batch.jobs_count,
            "predicted_qpu_s": round(batch.predicted_qpu_s, 3),
            "created_at": to_iso(batch.created_us),
            **forecast_json(batch),
        }
        for batch in svc.store.waiting_batches(ids)
    ]
    # The page ends after the ids it covered, also when some of them started meanwhile.
    return jsend.page(items, total, page.offset, end=page.offset + len(ids))


def _actor() -> str:
    return principal().user_id


def _user(username: str) -> User:
    user = services().accounts.get_user(username)
    assert user is not None  # just written
    return user


def _user_json(user: User, projects: dict[str, str]) -> dict[str, Any]:
    """A user with their projects (project id -> role)."""
    return {"id": user.id, "admin": user.admin, "disabled": user.disabled, "projects": projects}


def _project_json(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "project_status": project.status,
        "queue_priority": project.queue_priority,
        "share": project.share,
        "quotas": project.quotas.as_dict(),
    }
