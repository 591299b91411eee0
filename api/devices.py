"""Devices (contract §6.2): specs as Pulser abstract reprs, and each device type's status as
qrmi (the Slurm QPU plugins' resource interface) reads it."""

from __future__ import annotations

from flask import Blueprint, request

from api import filters, jsend
from api.context import services
from core.errors import NotFound
from core.status import DeviceStatus
from core.timefmt import now_us

bp = Blueprint("devices", __name__)

#: Routes that answer without a token (qrmi asks for /devices without one).
PUBLIC_ENDPOINTS = frozenset({"devices.public_specs", "devices.devices", "devices.specs_of"})


@bp.get("/api/v1/devices")
def devices() -> jsend.Reply:
    """Each served device type (or those named by `device_type`), its status and whether it
    takes work: `availability` is ACTIVE exactly when the status is UP, which qrmi's
    `is_accessible` reads."""
    svc = services()
    wanted = filters.device_types(request.args) or list(svc.registry)
    served = [t for t in wanted if t in svc.registry]  # an unknown type simply matches none
    statuses = svc.devices.effective(served, now_us())
    data = [
        {
            "device_type": device_type,
            "name": svc.registry[device_type].pulser_device.name,
            "status": statuses[device_type].value,
            "availability": "ACTIVE" if statuses[device_type] == DeviceStatus.UP else "INACTIVE",
            "qpus": svc.registry[device_type].qpu_count,
        }
        for device_type in served
    ]
    return jsend.success(data)


@bp.get("/api/v1/devices/specs/<device_type>")
def specs_of(device_type: str) -> jsend.Reply:
    spec = services().registry.get(device_type)
    if spec is None:
        served = ", ".join(services().registry)
        raise NotFound(f"Device type {device_type} is not served here; served: {served}")
    return jsend.success({"device_type": device_type, "specs": spec.specs})


@bp.get("/api/v1/devices/specs")
def specs() -> jsend.Reply:
    return jsend.success({name: spec.specs for name, spec in services().registry.items()})


@bp.get("/api/v1/devices/public-specs")
def public_specs() -> jsend.Reply:
    data = [
        {"device_type": name, "specs": spec.specs} for name, spec in services().registry.items()
    ]
    return jsend.success(data)
