"""Request rate limits per credential (Settings.rate_limit_per_s, rate_limit_burst), and the
limits on password logins: per client address, for the whole cluster, and a growing delay on
wrong passwords per (username, address) pair (Settings.login_*).

GCRA in one Lua script (core/lua/rate_limit.lua): one small key per active token, shared by
every API process, so the limit holds however many gunicorn workers or API hosts there are.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from core import replies
from core.db import Db
from core.errors import RateLimited
from core.script_args import LoginBackoffArgs, RateLimitArgs
from core.settings import Settings
from core.status import LoginStep
from core.timefmt import SECOND_US


class RateLimiter:
    def __init__(
        self,
        db: Db,
        per_s: float,
        burst: int,
        refusal: str = "Too many requests for this token",
    ) -> None:
        self.scripts = db.scripts
        self.keys = db.keys
        self.interval_us = 0 if per_s == 0 else math.ceil(SECOND_US / per_s)
        self.burst = burst
        #: What a refusal says, before "; retry in N s".
        self.refusal = refusal

    def check(self, token_hash: str, now: int) -> None:
        """Counts one request of the token (or of any other key, hashed); raises RateLimited
        if it is over its rate."""
        if self.interval_us == 0:
            return  # rate limiting is off
        args = RateLimitArgs(now=now, interval_us=self.interval_us, burst=self.burst)
        reply = self.scripts.run(args, keys=[self.keys.rate(token_hash)])
        if wait_us := replies.decode_limited(reply):
            raise _refusal(self.refusal, wait_us)


class LoginBackoff:
    """The growing delay on wrong passwords of one (username, client address) pair
    (core/lua/login_backoff.lua)."""

    def __init__(self, db: Db, free_failures: int, max_delay_s: int) -> None:
        self.scripts = db.scripts
        self.keys = db.keys
        self.free_failures = free_failures
        self.max_delay_us = max_delay_s * SECOND_US

    def check(self, username: str, address: str, now: int) -> None:
        """Raises RateLimited while the pair must wait (writes nothing)."""
        if wait_us := replies.decode_limited(self._call(LoginStep.CHECK, username, address, now)):
            raise _refusal("Too many wrong passwords for this username from this address", wait_us)

    def failed(self, username: str, address: str, now: int) -> None:
        self._call(LoginStep.FAILED, username, address, now)

    def succeeded(self, username: str, address: str, now: int) -> None:
        self._call(LoginStep.SUCCEEDED, username, address, now)

    def _call(self, step: LoginStep, username: str, address: str, now: int) -> list[str]:
        key = self.keys.login_failures(_digest(username, address))
        args = LoginBackoffArgs(now, step, self.free_failures, self.max_delay_us)
        reply: list[str] = self.scripts.run(args, keys=[key])
        return reply


def _refusal(what: str, wait_us: int) -> RateLimited:
    wait_s = max(1, math.ceil(wait_us / SECOND_US))
    return RateLimited(f"{what}; retry in {wait_s} s", retry_after_s=wait_s)


class LoginGuard:
    """Everything that bounds password logins, in the order a login meets it: the client
    address's rate, the pair's growing delay, the cluster's rate of password checks, and this
    process's few hashing slots. None of it refuses a correct password because someone at
    another address guessed wrong."""

    def __init__(self, db: Db, settings: Settings) -> None:
        per_min = settings.login_attempts_per_min
        self.per_address = RateLimiter(
            db, per_min / 60, per_min, "Too many login attempts from this address"
        )
        checks = settings.login_checks_per_s
        self.everyone = RateLimiter(
            db,
            checks,
            max(1, math.ceil(4 * checks)),
            "The server is busy checking passwords",
        )
        self.backoff = LoginBackoff(db, settings.login_free_failures, settings.login_max_delay_s)
        self.slots = threading.BoundedSemaphore(settings.login_concurrent_checks)

    def admit(self, username: str, address: str, now: int) -> None:
        """Raises RateLimited unless this attempt may check a password now."""
        self.per_address.check(_digest("login-addr", address), now)
        self.backoff.check(username, address, now)
        self.everyone.check(_digest("login-all"), now)

    @contextmanager
    def hashing_slot(self) -> Iterator[None]:
        """One of this process's password-hashing slots, waited for at most a second."""
        if not self.slots.acquire(timeout=1.0):
            raise RateLimited("The server is busy checking passwords; retry in 1 s", 1)
        try:
            yield
        finally:
            self.slots.release()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()
