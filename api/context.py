"""The services one API process shares between requests, built once by create_app."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g

from api.submission import Submission
from core.accounts import Accounts
from core.devices import DeviceSpec
from core.errors import Unauthorized
from core.records import Principal
from core.settings import Settings
from core.store import Store


@dataclass
class Services:
    settings: Settings
    store: Store
    accounts: Accounts
    registry: dict[str, DeviceSpec]
    submission: Submission


def services() -> Services:
    svc: Services = current_app.extensions["tweezer"]
    return svc


def principal() -> Principal:
    """The authenticated caller (set by api/auth.py before every protected route)."""
    caller: Principal | None = g.get("principal")
    if caller is None:
        raise Unauthorized("Authentication required")
    return caller
