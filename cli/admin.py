"""Administration of a running cluster from the command line: `tweezer device ...`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.device_status import DeviceStatuses
from core.devices import device_registry
from core.errors import ConfigurationError
from core.redis_client import connect
from core.settings import Settings
from core.status import DeviceStatus
from core.timefmt import now_us, parse_iso, to_iso


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """`--data-dir` (a cluster started by `tweezer up --data-dir DIR`) or `--redis-url`."""
    parser.add_argument("--data-dir", type=Path, default=Path(".tweezer"))
    parser.add_argument("--redis-url", help="the cluster's Redis (instead of --data-dir)")


def cluster_settings(args: argparse.Namespace) -> Settings:
    if args.redis_url:
        return Settings.from_env(redis_url=args.redis_url)
    info_path = args.data_dir / "cluster.json"
    if not info_path.exists():
        raise ConfigurationError(
            f"no cluster.json in {args.data_dir}: pass --data-dir or --redis-url"
        )
    return Settings.from_env(redis_url=json.loads(info_path.read_text())["redis_url"])


def add_device_commands(commands: argparse._SubParsersAction) -> None:
    device = commands.add_parser("device", help="device statuses and calibration windows")
    actions = device.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every device type with its status")
    add_cluster_options(listing)
    status = actions.add_parser("status", help="set a device type's status")
    status.add_argument("device_type")
    status.add_argument("status", choices=[s.value for s in DeviceStatus if s != "CALIBRATING"])
    status.add_argument("--reason", default="", help="shown to admins")
    add_cluster_options(status)
    calibrate = actions.add_parser("calibrate", help="schedule a calibration window")
    calibrate.add_argument("device_type")
    calibrate.add_argument("--start", default="now", help="ISO-8601 time, or 'now' (default)")
    calibrate.add_argument("--duration", type=float, required=True, metavar="SECONDS")
    add_cluster_options(calibrate)


def run_device_command(args: argparse.Namespace) -> int:
    settings = cluster_settings(args)
    served = device_registry(settings)
    devices = DeviceStatuses(connect(settings), settings.namespace)
    if args.action != "list" and args.device_type not in served:
        raise ConfigurationError(
            f"unknown device type {args.device_type!r}; served: {', '.join(served)}"
        )
    now = now_us()
    if args.action == "status":
        devices.set(args.device_type, DeviceStatus(args.status), args.reason, now)
    elif args.action == "calibrate":
        start = now if args.start == "now" else parse_iso(args.start)
        devices.add_calibration(args.device_type, start, start + int(args.duration * 1e6), now)
    statuses = devices.effective(list(served), now)
    for device_type, status in statuses.items():
        windows = ", ".join(
            f"{to_iso(s)} to {to_iso(e)}" for s, e in devices.calibrations(device_type) if e > now
        )
        print(f"{device_type:<12} {status:<12} {('calibrations: ' + windows) if windows else ''}")
    return 0
