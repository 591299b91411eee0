"""`/dashboard`: the cluster in a browser, served by the API itself.

A static page (api/static/dashboard/: plain HTML, CSS and JavaScript, no build step, nothing
fetched from elsewhere) that logs in like the SDK does (`POST /oauth/token` with a username and
password, or an API token pasted as is), keeps the token in the tab's sessionStorage (no cookie:
no cross-site request can ride on it), and reads the same routes the SDK does, so it sees exactly
what the API lets its user see: their projects' batches, with ETAs and results links. The QPU
board and the queues come from `GET /dashboard/api/overview` (core/overview.py), in which a QPU
held by another project's batch shows as held, not by whom; cluster administrators also see every
project's usage and the audit log (admin API). The page builds every element with textContent:
nothing it shows is ever parsed as HTML.
"""

from __future__ import annotations

from importlib import resources

from flask import Blueprint, Response, abort

from api import jsend
from api.context import principal, services
from core.overview import cluster_overview, overview_json
from core.timefmt import now_us

bp = Blueprint("dashboard", __name__)
#: Behind require_token (api/__init__.py); the page and its files are public.
PUBLIC_ENDPOINTS = frozenset({"dashboard.page", "dashboard.static_file"})

#: The page's files and their types; nothing else is served from the directory.
FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
#: The page runs its own script and style only, talks to this origin only, and may not be framed.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _read(name: str) -> bytes:
    return resources.files("api").joinpath("static", "dashboard", name).read_bytes()


def _static(body: bytes, content_type: str) -> Response:
    response = Response(body, headers={"Content-Type": content_type})
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/dashboard")
def page() -> Response:
    return _static(_read("index.html"), "text/html; charset=utf-8")


@bp.get("/dashboard/static/<name>")
def static_file(name: str) -> Response:
    if name not in FILES:
        abort(404)
    return _static(_read(name), FILES[name])


@bp.get("/dashboard/api/overview")
def overview() -> jsend.Reply:
    """The QPU board, queues and totals, as `tweezer status --json` shows them; batches of
    projects the caller is not in, and the hosts of workers and schedulers, are hidden unless
    the caller administers the cluster."""
    svc, caller = services(), principal()
    settings = svc.settings
    view = cluster_overview(svc.db, settings, now_us())
    visible = (lambda _: True) if caller.admin else (lambda p: p in caller.project_ids)
    return jsend.success(
        {
            "viewer": {"user_id": caller.user_id, "admin": caller.admin},
            "policy": settings.policy,
            **overview_json(view, visible, hosts=caller.admin),
        }
    )
