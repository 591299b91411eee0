"""The API process: a Flask app speaking the Pasqal Cloud REST API (see create_app)."""

from __future__ import annotations

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

from api import (
    admin,
    batches,
    dashboard,
    devices,
    health,
    jobs,
    metrics,
    oauth,
    pasqal_local,
    projects,
    results,
)
from api.auth import require_token
from api.context import Services
from api.errors import register_error_handlers
from api.submission import Submission
from core.accounts import Accounts
from core.costs import Costs
from core.db import open_db
from core.device_status import DeviceStatuses
from core.devices import device_registry
from core.errors import ConfigurationError
from core.munge import Munge
from core.ratelimit import LoginGuard, RateLimiter
from core.settings import Settings
from core.store import Store

#: Where the SDK's `Endpoints(core=..., account=...)` point, under the server's base URL.
CORE_PREFIX = "/core-fast"
ACCOUNT_PREFIX = "/account"
#: Admin-only routes (api/admin.py); not part of the Pasqal API.
ADMIN_PREFIX = "/admin"


def create_app(settings: Settings | None = None) -> Flask:
    """Builds the API for one cluster; `settings` default to the environment (TWEEZER_*)."""
    settings = settings or Settings.from_env()
    if not settings.results_secret or not settings.auth_secret:
        raise ConfigurationError(
            "results_secret and auth_secret are required by the API "
            "(TWEEZER_RESULTS_SECRET, TWEEZER_AUTH_SECRET)"
        )
    if not settings.public_url:
        # Results links must name the cluster, never whatever Host a client sent.
        raise ConfigurationError("public_url is required by the API (TWEEZER_PUBLIC_URL)")
    app = Flask(__name__, static_folder=None)
    # No redirects to another spelling of a path: Werkzeug's (`//` merged, a trailing slash
    # added) are absolute URLs built from the client's Host header. A path that is not a
    # route's exact spelling is a 404 like any other unknown path.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    # Bytes on the wire; the inflated size of gzip bodies is bounded in api/body.py.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]

    db = open_db(settings)
    registry = device_registry(settings)
    app.extensions["tweezer"] = Services(
        settings=settings,
        db=db,
        store=Store(db, settings.project_max_stored_bytes),
        accounts=Accounts(db.client, settings.namespace),
        registry=registry,
        submission=Submission(settings, registry, Costs(db.client, settings)),
        devices=DeviceStatuses(db),
        rate_limiter=RateLimiter(db, settings.rate_limit_per_s, settings.rate_limit_burst),
        logins=LoginGuard(db, settings),
        munge=_munge(settings),
    )

    for blueprint in (batches.bp, jobs.bp, devices.bp):
        require_token(blueprint, public_endpoints=devices.PUBLIC_ENDPOINTS)
        app.register_blueprint(blueprint, url_prefix=CORE_PREFIX)
    app.register_blueprint(results.bp, url_prefix=CORE_PREFIX)  # public: the link is the key
    require_token(projects.bp)
    app.register_blueprint(projects.bp, url_prefix=ACCOUNT_PREFIX)
    require_token(admin.bp, admin_only=True)
    app.register_blueprint(admin.bp, url_prefix=ADMIN_PREFIX)
    require_token(dashboard.bp, public_endpoints=dashboard.PUBLIC_ENDPOINTS)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)  # public: nothing secret on it (api/metrics.py)
    metrics.instrument(app)
    app.register_blueprint(oauth.bp)  # public: it is where credentials are exchanged
    app.register_blueprint(pasqal_local.bp)  # MUNGE, not tokens (api/pasqal_local.py)
    register_error_handlers(app)
    app.after_request(_security_headers)
    if settings.trusted_proxy_count:
        # Only then is X-Forwarded-For the client's address (login throttles key on it).
        n = settings.trusted_proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    return app


def _munge(settings: Settings) -> Munge | None:
    """The MUNGE decoder, where this host has libmunge (only qrmi's on-premises routes need
    it: without it they answer 503 and everything else serves)."""
    try:
        return Munge(settings.munge_socket or None)
    except ConfigurationError:
        return None


#: On every response. The API answers JSON only: nothing may be sniffed as HTML, framed,
#: or leak a results link's signature through a Referer.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    # Answers are per caller and change as batches run: no cache may keep one (tokens and
    # results links above all). Routes that mean otherwise set their own.
    response.headers.setdefault("Cache-Control", "no-store")
    return response
