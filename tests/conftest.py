"""Layered fixtures: settings -> redis-server -> cluster processes -> account -> SDK.

Everything is real: a redis-server on a free port with its own temp dir (never the machine's
6379), the API under gunicorn over HTTP, the scheduler and Celery worker processes, exactly as
`tweezer up` starts them, and the unmodified pasqal-cloud SDK as the client.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import redis

from core.accounts import Accounts
from core.db import Db
from core.execution import Execution
from core.settings import Settings
from core.store import Store
from lab.sdk import sdk_client
from launch.cluster import Cluster
from launch.redis_server import RedisServer, free_port
from tests.factories import Granting, store_parts

# Cluster children start with `python -P` (the working directory is not on their path); the
# test drivers and policies they load by name (`tests.drivers:ScriptedDriver`) are found
# through PYTHONPATH instead, as an operator's own driver module would be.
ROOT = Path(__file__).parent.parent
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
)


#: Fixtures that start a whole cluster (directly, or through the fixtures they take).
CLUSTER_FIXTURES = frozenset(
    {"cluster", "start_cluster", "limited", "start_scripted", "scripted", "sdk", "account"}
)
#: The seconds-long tier (`make test-fast`): the store with time passed in, policies and the
#: simulator, settings, the Python/Lua vocabulary, bad input at store level. A test of these
#: modules that takes a cluster fixture stays in the full run.
FAST_MODULES = frozenset(
    {
        "test_store.py",
        "test_scheduler.py",
        "test_policies.py",
        "test_chunks.py",
        "test_one_commit.py",
        "test_settings.py",
        "test_vocabulary.py",
        "test_submission.py",
        "test_hostile_files.py",
        "test_emulation.py",
        "test_engines.py",
        "test_watchdog.py",
        "test_status.py",
        "test_webhooks.py",
        "test_scheduling.py",
        "test_forecasts.py",
        "test_munge.py",
    }
)


#: The modules that take longest, longest first (as `make test`'s --durations measured them):
#: pytest-xdist hands whole modules to its two workers in collection order, so starting with
#: the long ones leaves short ones to even out the end (the longest-first rule).
LONGEST_FIRST = (
    "test_reliability.py",
    "test_chaos.py",
    "test_cli.py",
    "test_hostile.py",
    "test_installed.py",
    "test_emulators.py",
    "test_clients.py",
    "test_bridge.py",
    "test_webhooks.py",
    "test_multihost.py",
    "test_sdk_contract.py",
    "test_faults.py",
    "test_fuzz.py",
    "test_dashboard.py",
    "test_policies_live.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks the fast tier (`-m fast`; `make test` runs it first, then `-m "not fast"`), and
    puts the longest modules first (run with --no-loadscope-reorder)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.path.name in FAST_MODULES and not fixtures & CLUSTER_FIXTURES:
            item.add_marker(pytest.mark.fast)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def make_settings(redis_url: str, **overrides: Any) -> Settings:
    """Settings for tests: short timers so recovery is observable in seconds."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "namespace": "tz",
        "results_secret": secrets.token_hex(16),
        "auth_secret": secrets.token_hex(32),
        "webhook_secret": secrets.token_hex(32),
        # One job at a time per QPU, whatever the machine: the tests' timings and orders. The
        # automatic default (every core for an emulator) is tested with `tweezer up` itself.
        "worker_concurrency": 1,
        "lease_ttl_s": 3.0,
        "scheduler_tick_s": 0.2,
        "dispatch_timeout_s": 5.0,
        "job_heartbeat_ttl_s": 3.0,
        "open_batch_timeout_s": 60.0,
        "job_soft_time_limit_s": 60.0,
        "job_hard_time_limit_s": 70.0,
        # The virtual QPU 200x faster: a register loads in 0.1 s, 1000 shots take a second.
        "bridge_speedup": 200.0,
        # A stuck worker consumer is noticed in seconds (tests/test_watchdog.py).
        "worker_stall_s": 5.0,
        # Every test logs in from 127.0.0.1; tests/test_hostile.py checks the default limits.
        "login_attempts_per_min": 600,
    }
    values.update(overrides)
    return Settings(**values).replace()


@dataclass
class Account:
    """A user with a token in one fresh project (so list filters see only this test's data)."""

    user_id: str
    project_id: str
    token: str


@dataclass
class RunningCluster:
    settings: Settings
    cluster: Cluster
    redis_server: RedisServer
    client: redis.Redis

    @property
    def base_url(self) -> str:
        return self.cluster.base_url

    @property
    def core_url(self) -> str:
        return self.base_url + "/core-fast"

    @property
    def account_url(self) -> str:
        return self.base_url + "/account"

    @property
    def store(self) -> Store:
        return Store(Db.of(self.client, self.settings.namespace))

    def new_account(self, queue_priority: str = "MEDIUM") -> Account:
        accounts = Accounts(self.client, self.settings.namespace)
        user = accounts.create_user(f"user-{secrets.token_hex(4)}")
        project = accounts.create_project(f"project-{secrets.token_hex(4)}", queue_priority)
        accounts.add_member(project.id, user)
        return Account(user, project.id, accounts.issue_token(user).token)

    def another_token(self, account: Account) -> Account:
        """The same user and project with a token of its own (its own rate limit)."""
        accounts = Accounts(self.client, self.settings.namespace)
        return replace(account, token=accounts.issue_token(account.user_id).token)

    def sdk(self, account: Account, webhook: str | None = None) -> Any:
        return make_sdk(self.core_url, self.account_url, account, webhook)

    def pulser_connection(self, account: Account) -> Any:
        """Pulser's `PasqalCloudConnection` to this cluster, with the account's token."""
        from pasqal_cloud import PasqalCloudConnection
        from pasqal_cloud.authentication import TokenProvider
        from pasqal_cloud.endpoints import Endpoints

        token = account.token

        class StaticToken(TokenProvider):
            def get_token(self) -> str:
                return token

        return PasqalCloudConnection(
            project_id=account.project_id,
            token_provider=StaticToken(),
            endpoints=Endpoints(core=self.core_url, account=self.account_url),
        )


def make_sdk(core_url: str, account_url: str, account: Account, webhook: str | None = None) -> Any:
    """The guide's client for `account`, and the `webhook` its batches name."""
    return sdk_client(core_url, account_url, account.project_id, account.token, webhook)


class ClusterFactory:
    """Starts whole clusters (own redis-server, API, scheduler, workers) and stops them all."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.started: list[RunningCluster] = []

    def __call__(self, redis_args: tuple[str, ...] = (), **overrides: Any) -> RunningCluster:
        root = self.tmp_path_factory.mktemp("cluster")
        redis_server = RedisServer(
            root / "redis", extra_args=redis_args, password=secrets.token_hex(16)
        ).start()
        settings = make_settings(redis_server.url, **overrides)
        cluster = Cluster(
            settings, root, "127.0.0.1", free_port(), redis_server, log_dir=Path(root / "logs")
        )
        try:
            cluster.start()
        except BaseException:
            cluster.shutdown()
            raise
        running = RunningCluster(
            settings,
            cluster,
            redis_server,
            redis.Redis.from_url(redis_server.url, decode_responses=True),
        )
        self.started.append(running)
        return running

    def stop_all(self) -> None:
        for running in self.started:  # all at once: each worker's warm shutdown takes a second
            running.cluster.terminate()
        for running in self.started:
            running.cluster.shutdown()
        self.started.clear()


@pytest.fixture(scope="module")
def start_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterFactory]:
    """Factory of clusters for one module's own settings: they stop when the module ends, so
    idle clusters of earlier modules never share the cores with later tests."""
    factory = ClusterFactory(tmp_path_factory)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    """The cluster most tests share: one EMU_FREE QPU."""
    factory = ClusterFactory(tmp_path_factory)
    yield factory()
    factory.stop_all()


@pytest.fixture(scope="module")
def limited(start_cluster: ClusterFactory) -> RunningCluster:
    """A cluster whose tokens may make 5 requests per second, 20 at once."""
    return start_cluster(qpus={"EMU_FREE": 1}, rate_limit_per_s=5.0, rate_limit_burst=20)


@pytest.fixture(scope="module")
def start_scripted(
    start_cluster: ClusterFactory, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., tuple[RunningCluster, Path]]:
    """Factory: a FRESNEL-only cluster whose bridge drives tests/drivers.py, and that driver's
    call log."""

    def start(**overrides: Any) -> tuple[RunningCluster, Path]:
        log = tmp_path_factory.mktemp("driver") / "calls.log"
        log.touch()
        os.environ["TWEEZER_TEST_DRIVER_LOG"] = str(log)  # inherited by the worker process
        try:
            running = start_cluster(
                qpus={"FRESNEL": 1}, bridge_driver="tests.drivers:ScriptedDriver", **overrides
            )
        finally:
            del os.environ["TWEEZER_TEST_DRIVER_LOG"]
        return running, log

    return start


@pytest.fixture(scope="module")
def scripted(
    start_scripted: Callable[..., tuple[RunningCluster, Path]],
) -> tuple[RunningCluster, Path]:
    return start_scripted()


@pytest.fixture
def account(cluster: RunningCluster) -> Account:
    return cluster.new_account()


@pytest.fixture
def sdk(cluster: RunningCluster, account: Account) -> Any:
    return cluster.sdk(account)


@pytest.fixture
def parts(redis_only: redis.Redis) -> tuple[Store, Granting, Execution]:
    """The store, the QPU control and the workers' side on a Redis of the test's own."""
    return store_parts(redis_only)


@pytest.fixture
def redis_only(_store_redis: RedisServer) -> Iterator[redis.Redis]:
    """A bare redis-server for store-level tests (no processes around it), emptied for each
    test: its keys and its loaded scripts."""
    client = redis.Redis.from_url(_store_redis.url, decode_responses=True)
    client.flushall()
    client.script_flush()
    yield client
    client.close()


@pytest.fixture(scope="session")
def _store_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server per test process for the store-level tests: starting one for each of
    some 300 tests was a third of the fast tier's time."""
    server = RedisServer(
        tmp_path_factory.mktemp("store-redis") / "redis", password=secrets.token_hex(16)
    ).start()
    yield server
    server.stop()
