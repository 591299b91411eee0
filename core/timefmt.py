"""Timestamps: integers of microseconds since the epoch inside, ISO-8601 with offset on the wire.

The SDK treats timestamps as opaque strings (a JSON number fails its models), and its filters send
Python `isoformat()` values, naive or with an offset; naive ones mean UTC.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

#: Microseconds in a second: times are stored, compared and sent to Lua as integer µs.
SECOND_US = 1_000_000


def to_us(seconds: float) -> int:
    """A duration or time in seconds as integer microseconds."""
    return int(seconds * SECOND_US)


def to_ms(seconds: float) -> int:
    """A duration in seconds as integer milliseconds (Redis's PX/PEXPIRE)."""
    return int(seconds * 1000)


def now_us() -> int:
    """Wall-clock time in microseconds (what Lua scripts receive as `now`)."""
    return time.time_ns() // 1000


def to_iso(us: int | None) -> str | None:
    """`1700000000000000` -> `"2023-11-14T22:13:20+00:00"`; None stays None."""
    if us is None:
        return None
    return datetime.fromtimestamp(us / SECOND_US, tz=UTC).isoformat()


def parse_iso(value: str) -> int:
    """ISO-8601 (naive = UTC) -> microseconds. Raises ValueError on anything else."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * SECOND_US + delta.microseconds
