"""Numbers in query strings: ASCII digits only, within the range their use allows.

`str.isdigit()` is true of '²' and '①', which `int()` then refuses: a check with it lets a
hostile query string through to a 500. Everything here answers None for what it refuses, and
its caller names the parameter in a 400.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"[0-9]{1,20}")
#: Redis's stream ids are two unsigned 64-bit integers, `<ms>-<seq>` (the audit log's ids).
UINT64_MAX = 2**64 - 1


def uint(text: str, most: int) -> int | None:
    """`text` as an integer from 0 to `most`, or None when it is not one."""
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= most else None


def is_stream_id(text: str) -> bool:
    """Whether `text` is a Redis stream id: `<ms>` or `<ms>-<seq>`."""
    ms, sep, seq = text.partition("-")
    return uint(ms, UINT64_MAX) is not None and (not sep or uint(seq, UINT64_MAX) is not None)
