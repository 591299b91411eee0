"""Request rate limits per credential (Settings.rate_limit_per_s, rate_limit_burst), and of
password attempts per username (Settings.login_attempts_per_min).

GCRA in one Lua script (core/lua/rate_limit.lua): one small key per active token, shared by
every API process, so the limit holds however many gunicorn workers or API hosts there are.
"""

from __future__ import annotations

import math

import redis

from core.errors import RateLimited
from core.scripts import Scripts


class RateLimiter:
    def __init__(self, client: redis.Redis, namespace: str, per_s: float, burst: int) -> None:
        self.scripts = Scripts(client, namespace)
        self.interval_us = 0 if per_s == 0 else math.ceil(1_000_000 / per_s)
        self.burst = burst

    def check(self, token_hash: str, now: int) -> None:
        """Counts one request of the token (or of any other key, hashed); raises RateLimited
        if it is over its rate."""
        if self.interval_us == 0:
            return  # rate limiting is off
        reply = self.scripts.call("rate_limit", now, token_hash, self.interval_us, self.burst)
        if reply[0] == "limited":
            wait_s = max(1, math.ceil(int(reply[1]) / 1_000_000))
            raise RateLimited(
                f"Too many requests for this token; retry in {wait_s} s", retry_after_s=wait_s
            )
