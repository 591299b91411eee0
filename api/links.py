"""Results links: absolute, expiring, HMAC-signed URLs the SDK downloads without its token.

The signature binds the job id and the expiry (HMAC-SHA256 with `Settings.results_secret`), so a
link cannot be stretched in time or pointed at another job; it is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from api.params import uint


def sign(secret: str, job_id: str, expires: int) -> str:
    message = f"results:{job_id}:{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def make_link(url: str, secret: str, job_id: str, ttl_s: int, now: float | None = None) -> str:
    """`url` (the download route of `job_id`) with its expiry and signature."""
    expires = int((time.time() if now is None else now) + ttl_s)
    query = urlencode({"expires": expires, "signature": sign(secret, job_id, expires)})
    return f"{url}?{query}"


#: Latest expiry a link may carry (Unix seconds, year 5138): far past any real link's.
MAX_EXPIRES = 10**11


def verify(secret: str, job_id: str, expires: str, signature: str, now: float | None = None) -> str:
    """'' when the link is valid, else why not. Whatever the query string holds."""
    at = uint(expires, MAX_EXPIRES)
    if at is None:
        return "the link has no valid expiry"
    if at < (time.time() if now is None else now):
        return "the link has expired"
    # As bytes: compare_digest refuses a str that is not ASCII (a hostile signature).
    if not hmac.compare_digest(sign(secret, job_id, at).encode(), signature.encode()):
        return "the link's signature does not match"
    return ""
