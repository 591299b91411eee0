"""Liveness and readiness for supervisors and load balancers: /healthz answers 200 when Redis
does; /readyz when the cluster can run a batch now (core/liveness.py)."""

from __future__ import annotations

from flask import Blueprint

from api import jsend
from api.context import services
from core.device_types import qpu_names
from core.liveness import Liveness
from core.timefmt import now_us

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> jsend.Reply:
    services().store.redis.ping()
    return jsend.success({"redis": "ok"})


@bp.get("/readyz")
def readyz() -> jsend.Reply:
    """200 when a scheduler passed and every configured QPU has a live worker; else 503 with
    what is missing (a probe stops sending traffic; nothing restarts)."""
    svc = services()
    readiness = Liveness(svc.store.redis, svc.settings.namespace).readiness(
        qpu_names(svc.settings.qpus), now_us()
    )
    details = {"schedulers": readiness.schedulers, "qpus": readiness.qpus}
    if readiness.ready:
        return jsend.success({"redis": "ok", **details})
    message = "Not ready: " + "; ".join(readiness.missing())
    return jsend.failure(503, message, "not_ready", details), 503
