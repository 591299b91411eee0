"""The services one API process shares between requests, built once by create_app."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g

from api.submission import Submission
from core.accounts import Accounts
from core.db import Db
from core.device_status import DeviceStatuses
from core.devices import DeviceSpec
from core.errors import Unauthorized
from core.munge import Munge
from core.ratelimit import LoginGuard, RateLimiter
from core.records import Principal
from core.settings import Settings
from core.store import Store
from core.timefmt import now_us


@dataclass
class Services:
    settings: Settings
    #: The process's Redis handle, which every service below shares.
    db: Db
    store: Store
    accounts: Accounts
    registry: dict[str, DeviceSpec]
    submission: Submission
    devices: DeviceStatuses
    rate_limiter: RateLimiter
    #: What bounds password logins (api/oauth.py).
    logins: LoginGuard
    #: MUNGE decoding for qrmi's on-premises routes (api/pasqal_local.py); None where this
    #: host has no libmunge (those routes then answer 503).
    munge: Munge | None = None


def services() -> Services:
    svc: Services = current_app.extensions["tweezer"]
    return svc


def device_status(device_type: str) -> str:
    """The device type's status now, read once per request."""
    cache: dict[str, str] = g.setdefault("device_statuses", {})
    if device_type not in cache:
        cache.update(services().devices.effective([device_type], now_us()))
    return cache[device_type]


def principal() -> Principal:
    """The authenticated caller (set by api/auth.py before every protected route)."""
    caller: Principal | None = g.get("principal")
    if caller is None:
        raise Unauthorized("Authentication required")
    return caller
