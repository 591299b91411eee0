"""The account API's projects list (contract §5.3): the caller's active projects."""

from __future__ import annotations

from flask import Blueprint, request

from api import jsend
from api.context import principal, services
from core.errors import InvalidRequest
from core.roles import ProjectStatus

bp = Blueprint("projects", __name__)


@bp.get("/api/v1/projects")
def list_projects() -> jsend.Reply:
    wanted = request.args.get("project_status", ProjectStatus.ACTIVE)
    if wanted not in tuple(ProjectStatus):
        raise InvalidRequest(
            f"project_status must be one of {', '.join(ProjectStatus)}, got {wanted!r}"
        )
    projects = [
        {
            "id": p.id,
            "project_id": p.id,
            "name": p.name,
            "project_status": p.status,
            "queue_priority": p.queue_priority,
        }
        for p in services().accounts.projects_of(principal())
        if p.status == wanted
    ]
    return jsend.page(projects, len(projects), 0)
