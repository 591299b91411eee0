"""`Idempotency-Key` on the POSTs that create things (batches, jobs, rebatches).

The SDK retries a POST after a timeout or a 5xx; a client that sends the same key with the same
body gets the first result back instead of a duplicate, even when the first reply was lost after
the commit. The same key with a different body is refused (409).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flask import request

from api.context import principal, services
from core.errors import InvalidRequest
from core.store import Idempotency

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def idempotency(body: Any) -> Idempotency | None:
    """The request's Idempotency-Key, scoped to the caller, with a fingerprint of the request."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequest(f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters")
    # The decoded body, not the wire bytes: the SDK's gzip stamps the time into every retry.
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    fingerprint = hashlib.sha256(f"{request.method} {request.path}\n{canonical}".encode())
    svc = services()
    return Idempotency(
        key=svc.store.keys.idempotency(
            principal().user_id, hashlib.sha256(key.encode()).hexdigest()
        ),
        fingerprint=fingerprint.hexdigest(),
        ttl_s=svc.settings.idempotency_ttl_s,
    )
