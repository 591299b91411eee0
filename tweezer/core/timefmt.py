"""Timestamps: integers of microseconds since the epoch inside, ISO-8601 with offset on the wire.

The SDK treats timestamps as opaque strings (a JSON number fails its models), and its filters send
Python `isoformat()` values, naive or with an offset; naive ones mean UTC.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_us() -> int:
    """Wall-clock time in microseconds (what Lua scripts receive as `now`)."""
    return time.time_ns() // 1000


def to_iso(us: int | None) -> str | None:
    """`1700000000000000` -> `"2023-11-14T22:13:20+00:00"`; None stays None."""
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC).isoformat()


def parse_iso(value: str) -> int:
    """ISO-8601 (naive = UTC) -> microseconds. Raises ValueError on anything else."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
