"""Liveness for supervisors and load balancers: answers 200 only if Redis does."""

from __future__ import annotations

from flask import Blueprint

from api import jsend
from api.context import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> jsend.Reply:
    services().store.redis.ping()
    return jsend.success({"redis": "ok"})
