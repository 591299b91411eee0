"""Device specs (contract §6.2): Pulser abstract reprs, authenticated and public."""

from __future__ import annotations

from flask import Blueprint

from api import jsend
from api.context import services

bp = Blueprint("devices", __name__)


@bp.get("/api/v1/devices/specs")
def specs() -> jsend.Reply:
    return jsend.success({name: spec.specs for name, spec in services().registry.items()})


@bp.get("/api/v1/devices/public-specs")
def public_specs() -> jsend.Reply:
    data = [
        {"device_type": name, "specs": spec.specs} for name, spec in services().registry.items()
    ]
    return jsend.success(data)
