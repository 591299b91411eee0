"""The OAuth token endpoint the SDK's password login calls (`TokenProviderConf.token_endpoint`).

It takes the SDK's form: `grant_type` is Auth0's `password-realm` or the plain `password` grant,
with `username`, `password`, and optionally `audience`, `client_id`, `realm`. It answers the
OAuth JSON the SDK reads (not JSend): `access_token` (a JWT) and `expires_in`, or `error` and
`error_description` with a 4xx. Password attempts are bounded per client address, per
(username, address) pair after wrong passwords, for the whole cluster, and by a few hashing
slots per process (core/ratelimit.py LoginGuard): past a bound, 429 `too_many_attempts` with
Retry-After. The client address is the TCP peer unless trusted proxies are configured.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api.context import services
from core.errors import RateLimited
from core.timefmt import now_us

bp = Blueprint("oauth", __name__)

GRANT_TYPES = ("password", "http://auth0.com/oauth/grant-type/password-realm")


def _error(status: int, error: str, description: str) -> Response:
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/oauth/token")
def token() -> Response:
    svc = services()
    form = request.form
    if form.get("grant_type") not in GRANT_TYPES:
        return _error(
            400, "unsupported_grant_type", f"grant_type must be one of {', '.join(GRANT_TYPES)}"
        )
    audience = form.get("audience") or svc.settings.token_audience
    if audience != svc.settings.token_audience:
        return _error(400, "invalid_request", f"unknown audience {audience!r}")
    username, password = form.get("username", ""), form.get("password", "")
    if not username or not password:
        return _error(400, "invalid_request", "username and password are required")
    address = request.remote_addr or ""
    guard = svc.logins
    try:
        guard.admit(username, address, now_us())
        with guard.hashing_slot():
            user_id = svc.accounts.check_password(username, password)
    except RateLimited as exc:
        response = _error(429, "too_many_attempts", exc.message)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    if user_id is None:
        guard.backoff.failed(username, address, now_us())
        return _error(403, "invalid_grant", "Wrong username or password.")
    guard.backoff.succeeded(username, address, now_us())
    ttl = svc.settings.access_token_ttl_s
    access = svc.accounts.access_token(user_id, svc.settings.auth_secret, audience, ttl)
    response = jsonify({"access_token": access, "token_type": "Bearer", "expires_in": ttl})
    response.headers["Cache-Control"] = "no-store"
    return response
