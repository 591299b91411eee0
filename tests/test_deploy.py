"""What deploy/ ships keeps Redis private and durable, and the cluster's own Redis does too."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from cli.redis_server import RedisServer, default_maxmemory_bytes

DEPLOY = Path(__file__).parent.parent / "deploy"


def directives(path: Path) -> dict[str, str]:
    lines = (line.split(None, 1) for line in path.read_text().splitlines())
    return {parts[0]: parts[1].strip() for parts in lines if parts and not parts[0].startswith("#")}


def test_shipped_redis_config_is_loopback_protected_durable_and_never_evicts():
    config = directives(DEPLOY / "redis.conf")
    assert config["bind"].split() == ["127.0.0.1", "-::1"]
    assert config["protected-mode"] == "yes"
    assert config["appendonly"] == "yes" and config["appendfsync"] == "always"
    assert config["maxmemory-policy"] == "noeviction"
    assert config["maxmemory"].endswith(("mb", "gb"))  # bounded: a full store refuses writes


def test_the_redis_tweezer_up_starts_is_configured_the_same(tmp_path):
    server = RedisServer(tmp_path, maxmemory_bytes=default_maxmemory_bytes(), password="s3cret")
    server.start()
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=server.port).get("anything")
        config = redis.Redis.from_url(server.url, decode_responses=True).config_get("*")
        assert config["requirepass"] == "s3cret"
        assert "s3cret" not in " ".join(server.command())  # not in the process list
        assert config["bind"] == "127.0.0.1" and config["protected-mode"] == "yes"
        assert config["appendonly"] == "yes" and config["appendfsync"] == "always"
        assert config["maxmemory-policy"] == "noeviction"
        assert int(config["maxmemory"]) == default_maxmemory_bytes() >= 256 * 1024**2
    finally:
        server.stop()
