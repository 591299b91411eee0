"""What deploy/ ships keeps Redis private and durable, and the cluster's own Redis does too."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.errors import ConfigurationError
from core.redis_client import check_access, connect
from core.settings import Settings
from launch.redis_server import (
    HASH_MAX_LISTPACK_VALUE,
    RedisServer,
    default_maxmemory_bytes,
    free_port,
)
from tests.helpers import certificates, wait_for

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"


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
    assert config["hash-max-listpack-value"] == str(HASH_MAX_LISTPACK_VALUE)


def test_the_redis_tweezer_up_starts_is_configured_the_same(tmp_path):
    server = RedisServer(tmp_path, maxmemory_bytes=default_maxmemory_bytes(), password="s3cret")
    server.start()
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis("127.0.0.1", server.port, retry=Retry(NoBackoff(), 0)).get("anything")
        config = redis.Redis.from_url(server.url, decode_responses=True).config_get("*")
        assert config["requirepass"] == "s3cret"
        assert "s3cret" not in " ".join(server.command())  # not in the process list
        assert config["bind"] == "127.0.0.1" and config["protected-mode"] == "yes"
        assert config["appendonly"] == "yes" and config["appendfsync"] == "always"
        assert config["maxmemory-policy"] == "noeviction"
        assert config["hash-max-listpack-value"] == str(HASH_MAX_LISTPACK_VALUE)
        assert int(config["maxmemory"]) == default_maxmemory_bytes() >= 256 * 1024**2
    finally:
        server.stop()


def networked_redis(tmp_path: Path, client_certificates: bool) -> tuple[int, dict[str, Any]]:
    """redis-server from deploy/redis-network.conf and deploy/users.acl as shipped, with this
    machine's paths, certificates and passwords put in; returns its port and the TLS files."""
    tls = certificates(tmp_path, "127.0.0.1")
    acl = (DEPLOY / "users.acl").read_text()
    acl = acl.replace(">change-me-api-password", ">api-secret")
    acl = acl.replace(">change-me-worker-password", ">worker-secret")
    (tmp_path / "users.acl").write_text(acl)
    port = free_port()
    config = (DEPLOY / "redis-network.conf").read_text()
    for shipped, here in {
        "bind 0.0.0.0 -::": "bind 127.0.0.1",
        "tls-port 6380": f"tls-port {port}",
        "/etc/tweezer/tls/redis.crt": str(tls["redis.crt"]),
        "/etc/tweezer/tls/redis.key": str(tls["redis.key"]),
        "/etc/tweezer/tls/ca.crt": str(tls["ca.crt"]),
        "/etc/tweezer/users.acl": str(tmp_path / "users.acl"),
        "/var/lib/tweezer/redis": str(tmp_path),
        "tls-auth-clients no": f"tls-auth-clients {'yes' if client_certificates else 'no'}",
    }.items():
        assert shipped in config
        config = config.replace(shipped, here)
    (tmp_path / "redis.conf").write_text(config)
    return port, tls


@pytest.fixture
def start_networked(tmp_path: Path) -> Iterator[Callable[[bool], tuple[int, dict[str, Any]]]]:
    servers: list[subprocess.Popen[bytes]] = []

    def start(client_certificates: bool) -> tuple[int, dict[str, Any]]:
        port, tls = networked_redis(tmp_path, client_certificates)
        servers.append(subprocess.Popen(["redis-server", str(tmp_path / "redis.conf")]))
        return port, tls

    yield start
    for server in servers:
        server.terminate()
        server.wait(10)


def test_the_networked_redis_config_serves_tls_only_to_its_acl_users(start_networked):
    """Plain text is refused, the default user is off, and the two users answer over TLS."""
    port, tls = start_networked(False)
    url = f"rediss://tweezer:api-secret@127.0.0.1:{port}/0"
    api = redis.Redis.from_url(url, ssl_ca_certs=str(tls["ca.crt"]))
    wait_for(lambda: _answers(api), timeout_s=20)
    assert directives(DEPLOY / "redis-network.conf")["port"] == "0"  # no plain-text port
    with pytest.raises(redis.exceptions.ConnectionError):
        # Plain text to the TLS port: the server hangs up (no retries, to say so at once).
        redis.Redis("127.0.0.1", port, socket_timeout=1, retry=Retry(NoBackoff(), 0)).ping()
    anonymous = redis.Redis("127.0.0.1", port, ssl=True, ssl_ca_certs=str(tls["ca.crt"]))
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()  # the default user is off
    worker = redis.Redis.from_url(
        f"rediss://tweezer-worker:worker-secret@127.0.0.1:{port}/0",
        ssl_ca_certs=str(tls["ca.crt"]),
    )
    assert worker.set("tweezer:probe", "1") and api.get("tweezer:probe") == b"1"
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker.flushall()


def test_client_certificates_when_redis_asks_for_them(start_networked):
    """With `tls-auth-clients yes`, a process connects with TWEEZER_REDIS_TLS_CERT_FILE and
    _KEY_FILE (the settings every process reads), and one without a certificate is refused."""
    port, tls = start_networked(True)
    url = f"rediss://tweezer-worker:worker-secret@127.0.0.1:{port}/0"
    settings = Settings(
        redis_url=url,
        redis_tls_ca_file=str(tls["ca.crt"]),
        redis_tls_cert_file=str(tls["client.crt"]),
        redis_tls_key_file=str(tls["client.key"]),
    )
    with_certificate = connect(settings)
    wait_for(lambda: _answers(with_certificate), timeout_s=20)
    check_access(settings, wait_s=5)  # what each process does at start
    without = Settings(redis_url=url, redis_tls_ca_file=str(tls["ca.crt"]))
    with pytest.raises(ConfigurationError, match=r"TLS|closes every connection"):
        check_access(without, wait_s=5)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


# -- container and Kubernetes files, validated offline by pinned tools -----------------------

TOOLS = Path(sys.executable).parent


def tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TOOLS / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=120
    )


def test_the_compose_file_follows_the_compose_specification(tmp_path):
    compose = DEPLOY / "compose.yaml"
    checked = tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(compose))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = compose.read_text()
    assert "--requirepass" not in text  # the Redis password never on a command line
    broken = tmp_path / "compose.yaml"
    broken.write_text(text.replace("stop_grace_period: 30s", "stop_grace_period: [30]"))
    assert tool(
        "check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(broken)
    ).returncode


def test_the_kubernetes_manifests_validate_strictly(tmp_path):
    manifests = sorted((DEPLOY / "k8s").glob("*.yaml"))
    checked = tool("kubernetes-validate", "--strict", *map(str, manifests))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("passed for resource") == 9  # every resource was checked
    broken = tmp_path / "tweezer.yaml"
    broken.write_text(
        (DEPLOY / "k8s" / "tweezer.yaml").read_text().replace("replicas: 2", "replicas: two")
    )
    assert tool("kubernetes-validate", "--strict", str(broken)).returncode


def test_the_dockerfile_passes_hadolint(tmp_path):
    checked = tool("hadolint", str(ROOT / "Dockerfile"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    broken = tmp_path / "Dockerfile"
    broken.write_text((ROOT / "Dockerfile").read_text().replace("USER 10001", "USER root"))
    assert tool("hadolint", str(broken)).returncode  # DL3002: never end as root


def test_docker_compose_config_when_compose_is_installed():
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("docker compose is not installed here (the schema check above still runs)")
    env = {**os.environ, "TWEEZER_REDIS_PASSWORD": "x"}
    (DEPLOY / "compose.env").write_text((DEPLOY / "compose.env.example").read_text())
    try:
        done = subprocess.run(
            ["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "--quiet"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    finally:
        (DEPLOY / "compose.env").unlink()
    assert done.returncode == 0, done.stderr
