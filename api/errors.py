"""The one place errors become HTTP responses: every TweezerError, every HTTP error Werkzeug
raises (unknown route, wrong method), and anything unexpected, always as a JSend object. No
traceback ever reaches a client; unexpected errors are logged with one."""

from __future__ import annotations

import logging

import redis
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from api.jsend import failure
from core.errors import RateLimited, ServiceUnavailable, TweezerError

log = logging.getLogger(__name__)

#: Seconds a client should wait before retrying when Redis is unreachable.
RETRY_AFTER_S = 2


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(TweezerError)
    def tweezer_error(exc: TweezerError) -> Response:
        response = failure(exc.http_status, exc.message, exc.code, exc.details)
        if isinstance(exc, ServiceUnavailable):
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
        elif isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        response = failure(status, message, exc.name.lower().replace(" ", "_"), {})
        headers = dict(exc.get_headers())
        for name in ("Allow", "Retry-After"):
            if name in headers:
                response.headers[name] = headers[name]
        return response

    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    def redis_down(exc: Exception) -> Response:
        # Usually raised before the commit (the commit is the last step), so nothing was
        # stored. Not always: a timeout while the commit's reply is in flight leaves a request
        # that may have been stored. A client that retries with its Idempotency-Key gets the
        # stored batch back instead of a second one; without the key, the retry is a new one.
        log.warning("redis unavailable: %s", exc)
        return tweezer_error(ServiceUnavailable("The job store is unavailable; retry shortly."))

    @app.errorhandler(redis.exceptions.OutOfMemoryError)
    def redis_full(exc: redis.exceptions.OutOfMemoryError) -> Response:
        # maxmemory with noeviction: Redis refuses a writing script before it runs (see
        # core/scripts.py), so nothing was stored.
        log.error("redis is full: %s", exc)
        return tweezer_error(ServiceUnavailable("The job store is full; retry later."))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return failure(500, "Internal server error.", "internal_error", {})
