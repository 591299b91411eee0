"""The one way every process opens its Redis connection, and the check each process makes at
start that its credentials are right (a wrong password or a missing TLS says so at once,
instead of retrying forever)."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import redis
from redis.backoff import ConstantBackoff
from redis.retry import Retry

from core.errors import ConfigurationError
from core.settings import Settings

log = logging.getLogger("tweezer")


def connect(settings: Settings) -> redis.Redis:
    """A client with short timeouts: an API call facing a dead Redis fails fast (503), it does
    not hang past the SDK's 30 s request timeout. TLS options come from the settings."""
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=10,
        health_check_interval=10,
        retry_on_timeout=False,
        **settings.redis_tls,
    )


def where(settings: Settings) -> str:
    """The Redis a process uses, for messages: scheme, user and address, never the password."""
    url = urlsplit(settings.redis_url)
    user = f"{url.username}@" if url.username else ""
    return f"{url.scheme}://{user}{url.hostname or ''}:{url.port or ''}{url.path}"


def check_access(settings: Settings, wait_s: float = 3600.0) -> None:
    """Waits for Redis to answer (a process may start before it), then raises
    ConfigurationError saying what is wrong if it refuses us: wrong user or password, a user
    without the rights we need, TLS on one side only, or a certificate that does not verify."""
    client = connect(settings)
    closed = 0

    def refused(exc: Exception) -> None:
        """Called by Retry after each failed attempt: raises when waiting cannot help."""
        nonlocal closed
        text = str(exc)
        if isinstance(exc, redis.exceptions.AuthenticationError):
            raise ConfigurationError(
                f"Redis at {where(settings)} refused our credentials ({exc}): check the user "
                "and password in TWEEZER_REDIS_URL"
            ) from None
        # OpenSSL words it many ways ("SSL: ...", "_ssl.c", "EOF occurred in violation of
        # protocol", "certificate ..."), depending on which side gave up first.
        if "ssl" in text.lower() or "certificate" in text or "violation of protocol" in text:
            raise ConfigurationError(
                f"TLS with Redis at {where(settings)} failed ({text}): check "
                "TWEEZER_REDIS_TLS_CA_FILE (and the client certificate, if Redis asks one)"
            ) from None
        if "closed by server" in text or "reset by peer" in text:
            # The port answered, then hung up before a reply: Redis served TLS to a
            # plain-text client (or is restarting; so say it after a few tries only).
            closed += 1
            if closed >= 3:
                raise ConfigurationError(
                    f"Redis at {where(settings)} closes every connection before it answers: "
                    "if it serves TLS, use rediss:// in TWEEZER_REDIS_URL"
                ) from None
        log.warning("waiting for Redis at %s (%s)", where(settings), text)

    retry = Retry(ConstantBackoff(1.0), retries=max(0, int(wait_s)))
    try:
        retry.call_with_retry(client.ping, refused)
    except redis.exceptions.ResponseError as exc:
        if "NOPERM" in str(exc) or "NOAUTH" in str(exc):
            raise ConfigurationError(
                f"Redis at {where(settings)} does not let us in ({exc}): give "
                "TWEEZER_REDIS_URL a user and password it knows"
            ) from None
        raise
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise ConfigurationError(f"Redis at {where(settings)} did not answer: {exc}") from None
