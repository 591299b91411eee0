"""The one way every process opens its Redis connection."""

from __future__ import annotations

import redis

from core.settings import Settings


def connect(settings: Settings) -> redis.Redis:
    """A client with short timeouts: an API call facing a dead Redis fails fast (503), it does
    not hang past the SDK's 30 s request timeout."""
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=10,
        health_check_interval=10,
        retry_on_timeout=False,
    )
