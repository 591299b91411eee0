"""The results download behind a results link: public (the SDK sends no token to it), so the
signed query string is the whole authorization. The body is the raw results document, not
JSend, as the SDK expects."""

from __future__ import annotations

from flask import Blueprint, Response, request

from api.access import canonical_id
from api.context import services
from api.links import verify
from core.errors import Forbidden, NotFound

bp = Blueprint("results", __name__)


@bp.get("/api/v1/results/<job_id>")
def download(job_id: str) -> Response:
    svc = services()
    canonical = canonical_id(job_id)
    problem = verify(
        svc.settings.results_secret,
        canonical or job_id,
        request.args.get("expires", ""),
        request.args.get("signature", ""),
    )
    if problem:
        raise Forbidden(f"Invalid results link: {problem}")
    document = svc.store.get_result(canonical or job_id)
    if document is None:
        raise NotFound(f"No results for job {job_id}")
    response = Response(document, mimetype="application/json")
    # Anyone holding the link can read it: keep it out of shared caches.
    response.headers["Cache-Control"] = "private, no-store"
    return response
