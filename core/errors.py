"""The one error hierarchy of the platform.

Every error the API can answer with is a `TweezerError` carrying a stable `code`, an HTTP status
and a human message; api/errors.py renders them all to JSend in one place. The scheduler and the
workers raise the same classes, so a message written in a worker reads the same in the API.
"""

from __future__ import annotations

from typing import Any


class TweezerError(Exception):
    """Base class: `code` is stable for clients and tests, `message` is for people."""

    code = "internal_error"
    http_status = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigurationError(TweezerError):
    """A setting is missing or out of range (raised at start-up, never per request)."""

    code = "configuration_error"


class InvalidRequest(TweezerError):
    """The request is malformed: bad JSON, a missing or mistyped field, a bad query value."""

    code = "invalid_request"
    http_status = 400


class WebhookRefused(InvalidRequest):
    """A webhook URL the cluster will not call (core/webhooks.py says which)."""

    code = "webhook_refused"


class InvalidSequence(TweezerError):
    """The Pulser sequence does not deserialize, build, or fit the device's limits."""

    code = "invalid_sequence"
    http_status = 422


class InvalidBackendConfiguration(TweezerError):
    """The `backend_configuration` is not a Pulser EmulationConfig, or asks its engine for what
    it cannot take (an option out of its bounds, a path to write to)."""

    code = "invalid_backend_configuration"
    http_status = 422


class UnknownDeviceType(TweezerError):
    """The batch asks for a device type this cluster does not serve."""

    code = "unknown_device_type"
    http_status = 422


class Unauthorized(TweezerError):
    """No bearer token, or one that is not valid."""

    code = "unauthorized"
    http_status = 401


class Forbidden(TweezerError):
    """Authenticated, but not allowed (e.g. a project the caller is not a member of)."""

    code = "forbidden"
    http_status = 403


class QuotaExceeded(Forbidden):
    """The submission would pass one of its project's quotas (core/quotas.py)."""

    code = "quota_exceeded"


class RateLimited(TweezerError):
    """The token sent more requests than its rate allows; `retry_after_s` says when to retry.
    The SDK waits for Retry-After and retries by itself."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.retry_after_s = retry_after_s


class NotFound(TweezerError):
    """No such batch, job or route visible to the caller."""

    code = "not_found"
    http_status = 404


class Conflict(TweezerError):
    """The request is well formed but the record's state forbids it (add jobs to a closed batch,
    cancel a finished job, rebatch an open batch)."""

    code = "conflict"
    http_status = 409


class InvalidTransition(Conflict):
    """A status change the transition table does not allow."""

    code = "invalid_transition"

    def __init__(self, entity: str, entity_id: str, current: str, requested: str) -> None:
        super().__init__(
            f"{entity} {entity_id} is {current} and cannot become {requested}",
            entity=entity,
            id=entity_id,
            current=current,
            requested=requested,
        )


class BatchClosed(Conflict):
    """Jobs sent to a batch that takes no more (closed, or finished, which implies closed)."""

    code = "batch_closed"

    def __init__(self, batch_id: str, status: str) -> None:
        super().__init__(
            f"Batch {batch_id} is closed ({status}): it does not accept new jobs",
            id=batch_id,
            status=status,
        )


class PayloadTooLarge(TweezerError):
    """The body, on the wire or once decompressed, is above the configured cap."""

    code = "payload_too_large"
    http_status = 413


class UnsupportedEncoding(TweezerError):
    """A Content-Encoding other than gzip or identity."""

    code = "unsupported_encoding"
    http_status = 415


class ServiceUnavailable(TweezerError):
    """Redis cannot be reached. 503 is not retried by the SDK, and nothing was written."""

    code = "service_unavailable"
    http_status = 503
