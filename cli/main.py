"""The `tweezer` command: `up` (the whole cluster), `api`, `scheduler`, `worker`, `demo`,
`status`, admin commands, the load-test tools (`simulate`, `load`, `trace`, `report`) and the
soak (`chaos`)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterable
from typing import Any

from cli.admin import (
    add_account_commands,
    add_device_commands,
    add_queue_command,
    run_account_command,
    run_device_command,
    run_queue_command,
)
from cli.chaos import add_chaos_command, run_chaos
from cli.load import add_load_command, run_load
from cli.report import add_report_command, run_report
from cli.setting_flags import add_setting_flags, setting_overrides
from cli.simulate import add_simulate_command, run_simulate
from cli.status import add_status_command, run_status
from cli.trace import add_trace_commands, run_trace_command
from cli.usage import add_usage_command, run_usage
from core.errors import ConfigurationError, TweezerError
from core.settings import Settings
from launch.data_dir import add_data_dir_option, resolve
from scheduling.policies import load_policy

#: What the `lab` extra installs (pyproject.toml), by import name: the lab's commands (demo,
#: load, report, chaos, YAML workloads) import them when they run, never at start-up.
LAB_MODULES = frozenset({"pasqal_cloud", "matplotlib", "yaml", "psutil", "requests"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tweezer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the whole cluster on this machine (foreground)")
    up.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    add_data_dir_option(up, "Redis data, keys, logs/ and cluster.json")
    up.add_argument(
        "--verbose",
        action="store_true",
        help="also show every process's log here (always kept in <data-dir>/logs/)",
    )
    up.add_argument("--redis-url", help="use this Redis instead of starting one")
    up.add_argument("--redis-port", type=int, help="port of the Redis it starts (default: free)")
    up.add_argument(
        "--redis-maxmemory",
        type=int,
        metavar="BYTES",
        help="memory of the Redis it starts; past it, writes are refused "
        "(default: a quarter of this host's memory)",
    )
    add_setting_flags(up)

    api = commands.add_parser("api", help="run the API server (gunicorn)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=2)
    api.add_argument("--threads", type=int, default=8)

    commands.add_parser("scheduler", help="run a scheduler (several may run at once)")

    worker = commands.add_parser("worker", help="run the worker pool of one QPU")
    worker.add_argument("--qpu", required=True, help="QPU name, e.g. EMU_FREE-0")

    add_device_commands(commands)
    add_account_commands(commands)
    add_simulate_command(commands)
    add_report_command(commands)
    add_trace_commands(commands)
    add_load_command(commands)
    add_chaos_command(commands)
    add_queue_command(commands)
    add_usage_command(commands)
    add_status_command(commands)

    demo = commands.add_parser("demo", help="submit the guide's example batch to a running cluster")
    add_data_dir_option(demo, "the data dir of a cluster started by `tweezer up`")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return _dispatch(args)
    except TweezerError as exc:  # configuration, or an admin command's refusal
        print(f"tweezer: {exc.message}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in LAB_MODULES:
            raise
        print(
            f"tweezer {args.command}: this command needs the lab extra "
            f"(pip install 'tweezer[lab]'); {exc.name} is not installed",
            file=sys.stderr,
        )
        return 2


def _demo(args: argparse.Namespace) -> int:
    from cli import demo

    demo.run(args.data_dir)
    return 0


#: Commands that set up their own settings (from --data-dir, a cluster.json, a file...).
RUNNERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "device": run_device_command,
    "simulate": run_simulate,
    "report": run_report,
    "trace": run_trace_command,
    "load": run_load,
    "chaos": run_chaos,
    "queue": run_queue_command,
    "usage": run_usage,
    "status": run_status,
    "user": run_account_command,
    "project": run_account_command,
    "token": run_account_command,
    "audit": run_account_command,
    "demo": _demo,
}


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "up":
        return _up(args)
    if args.command in RUNNERS:
        return RUNNERS[args.command](args)
    settings = Settings.from_env()
    from core.redis_client import check_access

    # Wait for Redis if it is not up yet; a wrong password or TLS setting stops us here, with
    # a message that says which, rather than in a retry loop that says nothing.
    check_access(settings)
    if args.command == "api":
        from cli.api_server import serve

        if not settings.public_url:
            settings = settings.replace(public_url=f"http://{args.host}:{args.port}")
        serve(settings, args.host, args.port, args.workers, args.threads)
    elif args.command == "scheduler":
        from scheduler.loop import main as scheduler_main

        scheduler_main(settings)
    elif args.command == "worker":
        return _worker(settings, args.qpu)
    return 0


def _up(args: argparse.Namespace) -> int:
    from launch.cluster import Cluster, bootstrap, clean_run_dir, make_private, secret
    from launch.redis_server import RedisServer, default_maxmemory_bytes
    from launch.supervision import DataDirLock, check_port_free

    # Everything the cluster writes (keys, cluster.json, the AOF, logs) is for this account
    # only: redis-server and every child inherit the mask.
    os.umask(0o077)
    data_dir = resolve(args.data_dir).resolve()
    make_private(data_dir)
    # One cluster per data dir: refused here while another one (or what is left of it) runs.
    lock = DataDirLock(data_dir).acquire()
    check_port_free(args.host, args.port)
    # What a run that did not stop cleanly left behind is ours to clear now that we hold the
    # lock: the API's per-process metrics files live here, not in /tmp.
    run_dir = clean_run_dir(data_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(run_dir / "metrics")
    overrides: dict[str, Any] = {
        "results_secret": secret(data_dir, "results"),
        "auth_secret": secret(data_dir, "auth"),
        "webhook_secret": secret(data_dir, "webhook"),
    }
    overrides.update(setting_overrides(args))
    redis_server = None
    if args.redis_url:
        overrides["redis_url"] = args.redis_url
    else:
        maxmemory = args.redis_maxmemory or default_maxmemory_bytes()
        redis_server = RedisServer(
            data_dir / "redis",
            port=args.redis_port,
            maxmemory_bytes=maxmemory,
            # Any account of this machine reaches loopback: without this, any of them could
            # read every record and make itself an administrator.
            password=secret(data_dir, "redis"),
            supervised_by=lock,
        ).start()
        overrides["redis_url"] = redis_server.url
    try:
        settings = Settings.from_env(**overrides)
        load_policy(settings.policy)  # a policy that cannot load stops here, not in a child
        _check_engines(settings, settings.qpus)
        base = f"http://{args.host}:{args.port}"
        from api import ACCOUNT_PREFIX, CORE_PREFIX

        info = bootstrap(settings, data_dir, base, base + CORE_PREFIX, base + ACCOUNT_PREFIX)
    except BaseException:
        if redis_server is not None:
            redis_server.stop()
        raise
    cluster = Cluster(
        settings,
        data_dir,
        args.host,
        args.port,
        redis_server,
        log_dir=data_dir / "logs",
        info=info,
        verbose=args.verbose,
        lock=lock,
    )
    cluster.run()
    shutil.rmtree(run_dir, ignore_errors=True)  # a clean stop leaves nothing to clear
    return 0


def _check_engines(settings: Settings, device_types: Iterable[str]) -> None:
    """Stops at once, naming the install command, when this host lacks the emulators extra
    that these device types' workers need (a synthetic device needs no engine)."""
    from core.device_types import missing_engines

    missing = None if settings.synthetic_devices else missing_engines(device_types)
    if missing is not None:
        raise ConfigurationError(missing)


def _worker(settings: Settings, qpu: str) -> int:
    from core.device_types import device_type_of_qpu, qpu_names
    from core.keys import Keys

    if qpu not in qpu_names(settings.qpus):
        raise ConfigurationError(
            f"unknown QPU {qpu!r}; this cluster has: {', '.join(qpu_names(settings.qpus))}"
        )
    _check_engines(settings, [device_type_of_qpu(qpu)])
    from workers.celery_app import make_celery

    make_celery(settings, qpu).worker_main(
        [
            "worker",
            "--queues",
            Keys.celery_queue(qpu),
            "--concurrency",
            str(settings.pool_size(device_type_of_qpu(qpu))),
            "--pool",
            "prefork",
            "--hostname",
            f"{qpu}@%h",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "INFO",
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
