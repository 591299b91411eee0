"""Bearer-token authentication, checked before every route except the public ones."""

from __future__ import annotations

from flask import Blueprint, g, request

from api.context import services
from core.errors import Forbidden, Unauthorized
from core.timefmt import now_us


def require_token(
    blueprint: Blueprint, public_endpoints: frozenset[str] = frozenset(), admin_only: bool = False
) -> None:
    """Every route of `blueprint` needs `Authorization: Bearer <token>`, except the endpoints
    named in `public_endpoints` (public specs, results downloads); with `admin_only`, the token
    of a cluster administrator."""

    @blueprint.before_request
    def authenticate() -> None:
        if request.endpoint in public_endpoints:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Missing bearer token: send 'Authorization: Bearer <token>'")
        settings = services().settings
        caller = services().accounts.authenticate(
            token.strip(), settings.auth_secret, settings.token_audience
        )
        if caller is None:
            raise Unauthorized("Invalid or expired token")
        services().rate_limiter.check(caller.token_hash, now_us())
        if admin_only and not caller.admin:
            raise Forbidden("This route is for cluster administrators")
        g.principal = caller
