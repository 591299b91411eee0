"""Administration of a running cluster from the command line:
`tweezer user|project|token|audit|device`.

Each command finds the cluster through `--data-dir` (one started by `tweezer up --data-dir DIR`)
or `--redis-url`, and prints what it did; printed tokens and ids come last on their line.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import pwd
import sys
from collections.abc import Callable

from core.accounts import Accounts, Project
from core.db import open_db
from core.device_status import DeviceStatuses
from core.errors import ConfigurationError
from core.priorities import DEFAULT_PRIORITY, PRIORITIES
from core.quotas import ALLOWED_DEVICE_TYPES, LIMITS
from core.redis_client import connect
from core.roles import Role
from core.settings import ENV_PREFIX, Settings
from core.status import DeviceStatus
from core.store import Store
from core.timefmt import now_us, parse_iso, to_iso, to_us
from launch.data_dir import add_data_dir_option, read_cluster_info


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """`--data-dir` (a cluster started by `tweezer up --data-dir DIR`), or the cluster's Redis
    from TWEEZER_REDIS_URL or `--redis-url`."""
    add_data_dir_option(parser, "the data dir of a cluster started by `tweezer up`")
    parser.add_argument(
        "--redis-url",
        help="the cluster's Redis (instead of --data-dir); a password in it shows in the "
        "process list: prefer TWEEZER_REDIS_URL",
    )


def cluster_settings(args: argparse.Namespace) -> Settings:
    if args.redis_url:
        return Settings.from_env(redis_url=args.redis_url)
    if ENV_PREFIX + "REDIS_URL" in os.environ:
        return Settings.from_env()
    info = read_cluster_info(args.data_dir)
    known = {name: info[name] for name in ("namespace", "qpus", "policy") if name in info}
    return Settings.from_env(redis_url=info["redis_url"], **known)


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


def add_queue_command(commands: argparse._SubParsersAction) -> None:
    queue = commands.add_parser(
        "queue", help="the batches waiting for each device type, in their expected order"
    )
    queue.add_argument("--device-type", metavar="T", help="only this device type")
    queue.add_argument(
        "--limit",
        type=_bounded(1, MAX_QUEUE_PAGE),
        default=100,
        metavar="N",
        help=f"batches shown per type (default 100, at most {MAX_QUEUE_PAGE})",
    )
    queue.add_argument(
        "--offset", type=_bounded(0, 10**9), default=0, metavar="N", help="positions skipped"
    )
    add_cluster_options(queue)


#: The most batches `tweezer queue` shows of a device type at once.
MAX_QUEUE_PAGE = 10_000


def _bounded(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from `low` to `high`, or an error that says so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


def run_queue_command(args: argparse.Namespace) -> int:
    """A table per device type: position, batch, project, priority, jobs, predicted QPU time
    and expected start, from the scheduler's latest forecast."""
    settings = cluster_settings(args)
    if args.device_type and args.device_type not in settings.qpus:
        raise ConfigurationError(
            f"unknown device type {args.device_type!r}; served: {', '.join(settings.qpus)}"
        )
    store = Store(open_db(settings))
    for device_type in [args.device_type] if args.device_type else list(settings.qpus):
        # A page of it: the forecast's order gives the page, only its batches are read.
        ids, total = store.forecasts.order(device_type, args.offset, args.limit)
        waiting = store.waiting_batches(ids)
        shown = f" (positions {args.offset + 1}-{args.offset + len(ids)})" if ids else ""
        print(f"{device_type}: {total} waiting{shown}")
        if not waiting:
            continue
        print(f"{'#':>6} {'batch':<36} {'project':<12} {'prio':<6} {'jobs':>5} {'qpu s':>8}  start")
        for batch in waiting:
            position = batch.forecast.position if batch.forecast else "?"
            start = batch.forecast.start_s if batch.forecast else None
            when = (to_iso(to_us(start)) or "?")[11:19] if start is not None else "?"
            print(
                f"{position:>6} {batch.id:<36} {batch.project_id[:12]:<12} "
                f"{batch.queue_priority:<6} {batch.jobs_count:>5} "
                f"{batch.predicted_qpu_s:>8.1f}  {when}"
            )
    return 0


def run_device_command(args: argparse.Namespace) -> int:
    settings = cluster_settings(args)
    served = list(settings.qpus)
    devices = DeviceStatuses(open_db(settings))
    if args.action != "list" and args.device_type not in served:
        raise ConfigurationError(
            f"unknown device type {args.device_type!r}; served: {', '.join(served)}"
        )
    now = now_us()
    if args.action == "status":
        devices.set(args.device_type, DeviceStatus(args.status), args.reason, now)
    elif args.action == "calibrate":
        start = now if args.start == "now" else parse_iso(args.start)
        devices.add_calibration(args.device_type, start, start + to_us(args.duration), now)
    statuses = devices.effective(list(served), now)
    for device_type, status in statuses.items():
        windows = ", ".join(
            f"{to_iso(s)} to {to_iso(e)}" for s, e in devices.calibrations(device_type) if e > now
        )
        print(f"{device_type:<12} {status:<12} {('calibrations: ' + windows) if windows else ''}")
    return 0


def add_account_commands(commands: argparse._SubParsersAction) -> None:
    user = commands.add_parser("user", help="users: add, list, disable")
    actions = user.add_subparsers(dest="action", required=True)
    add = actions.add_parser(
        "add",
        help="add a user; the password is read from stdin (none for a Unix account's user)",
    )
    add.add_argument("username")
    add.add_argument("--admin", action="store_true", help="a cluster administrator")
    unix = add.add_mutually_exclusive_group()
    unix.add_argument(
        "--unix-uid",
        type=int,
        metavar="UID",
        help="the user's Unix uid on the lab's Slurm cluster: its MUNGE credentials are this "
        "user's (no password is asked)",
    )
    unix.add_argument(
        "--unix-user",
        metavar="NAME",
        help="the same, by Unix name (looked up in this host's passwd)",
    )
    add_cluster_options(add)
    change = actions.add_parser(
        "set", help="map a user to its Unix account and the project of its Slurm jobs"
    )
    change.add_argument("username")
    unix = change.add_mutually_exclusive_group()
    unix.add_argument("--unix-uid", type=int, metavar="UID", help="as for `user add`")
    unix.add_argument("--unix-user", metavar="NAME", help="as for `user add`")
    change.add_argument(
        "--slurm-project",
        metavar="ID",
        help="the project its Slurm jobs' sessions (qrmi pasqal-local) run in, when it has several",
    )
    add_cluster_options(change)
    add_cluster_options(actions.add_parser("list", help="every user"))
    disable = actions.add_parser("disable", help="refuse every credential of a user")
    disable.add_argument("username")
    add_cluster_options(disable)

    project = commands.add_parser("project", help="projects: add, list, members")
    actions = project.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a project; prints its id")
    add.add_argument("name")
    add.add_argument(
        "--priority",
        default=DEFAULT_PRIORITY,
        choices=PRIORITIES,
        help=f"queue priority of the project's batches (default {DEFAULT_PRIORITY})",
    )
    add_cluster_options(add)
    add_cluster_options(actions.add_parser("list", help="every project"))
    member = actions.add_parser("member", help="add or remove a member")
    member.add_argument("change", choices=["add", "remove"])
    member.add_argument("project_id")
    member.add_argument("username")
    member.add_argument("--role", default=Role.MEMBER, choices=list(Role))
    add_cluster_options(member)
    change = actions.add_parser(
        "set", help="change a project's priority, share and quotas ('none' lifts a quota)"
    )
    change.add_argument("project_id")
    change.add_argument("--priority", choices=PRIORITIES)
    change.add_argument(
        "--share",
        type=float,
        metavar="N",
        help="the project's share of QPU time under the fair-share policy (default 1)",
    )
    for name in LIMITS:
        change.add_argument(f"--{name.replace('_', '-')}", type=_limit, metavar="N|none")
    change.add_argument(
        "--allowed-device-types",
        type=_device_types,
        metavar="TYPE,...|all",
        help="device types the project may use, comma-separated; 'all' lifts the quota",
    )
    add_cluster_options(change)

    audit = commands.add_parser("audit", help="the audit log, newest first")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--actor")
    audit.add_argument("--action", help="e.g. batch.cancel, member.add")
    audit.add_argument("--project-id")
    add_cluster_options(audit)

    token = commands.add_parser("token", help="API tokens: issue, revoke")
    actions = token.add_subparsers(dest="action", required=True)
    issue = actions.add_parser("issue", help="a new API token for a user (printed once)")
    issue.add_argument("username")
    issue.add_argument("--expires-in", type=int, metavar="SECONDS")
    add_cluster_options(issue)
    revoke = actions.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id")
    add_cluster_options(revoke)


def run_account_command(args: argparse.Namespace) -> int:
    settings = cluster_settings(args)
    accounts = Accounts(connect(settings), settings.namespace)
    if args.command == "user":
        if args.action == "add":
            uid = _unix_uid(args.unix_uid, args.unix_user)
            # A Unix account's user signs in with MUNGE: a password is set only when asked.
            password = _read_password() if uid is None else None
            accounts.create_user(args.username, password, admin=args.admin, unix_uid=uid)
            mapped = "" if uid is None else f" (Unix uid {uid})"
            print(f"user added: {args.username}{mapped}")
        elif args.action == "set":
            uid = _unix_uid(args.unix_uid, args.unix_user)
            if uid is None and args.slurm_project is None:
                raise ConfigurationError(
                    "nothing to set: give --unix-uid, --unix-user or --slurm-project"
                )
            accounts.map_unix_account(args.username, uid, args.slurm_project)
            print(f"user updated: {args.username}")
        elif args.action == "disable":
            accounts.disable_user(args.username)
            print(f"user disabled: {args.username}")
        else:
            for user in accounts.users():
                mapped = "" if user.unix_uid is None else f"unix-uid={user.unix_uid}"
                marks = (("admin", user.admin), ("disabled", user.disabled), (mapped, mapped))
                flags = " ".join(f for f, on in marks if on)
                print(f"{user.id} {flags}".rstrip())
    elif args.command == "project":
        if args.action == "add":
            print(f"project added: {accounts.create_project(args.name, args.priority).id}")
        elif args.action == "member":
            if args.change == "add":
                accounts.add_member(args.project_id, args.username, Role(args.role))
            else:
                accounts.remove_member(args.project_id, args.username)
            print(f"member {args.change}: {args.username} {args.project_id}")
        elif args.action == "set":
            changes = {n: getattr(args, n) for n in (*LIMITS, ALLOWED_DEVICE_TYPES)}
            quotas = {n: (None if v == _LIFT else v) for n, v in changes.items() if v is not None}
            project = accounts.update_project(
                args.project_id, list(settings.qpus), args.priority, quotas, share=args.share
            )
            print(f"project updated: {_project_line(project)}")
        else:
            for project in accounts.projects():
                print(_project_line(project))
    elif args.command == "audit":
        entries = accounts.audit_log.entries(
            args.limit, actor=args.actor, action=args.action, project_id=args.project_id
        )
        for e in entries:
            target = " ".join(
                f"{k}={v}" for k, v in (("project", e.project_id), ("batch", e.batch_id)) if v
            )
            print(f"{to_iso(e.at_us)} {e.actor} {e.action} {target} {json.dumps(e.detail)}")
    elif args.action == "issue":
        issued = accounts.issue_token(args.username, args.expires_in)
        print(f"token id {issued.token_id}: {issued.token}")
    else:
        accounts.revoke_token(args.token_id)
        print(f"token revoked: {args.token_id}")
    return 0


#: What `--max-...` and `--allowed-device-types` take to lift a quota.
_LIFT = "none"


def _limit(raw: str) -> int | str:
    if raw in (_LIFT, "all"):
        return _LIFT
    if not raw.isdigit():
        raise argparse.ArgumentTypeError(f"expected a non-negative integer or 'none', got {raw!r}")
    return int(raw)


def _device_types(raw: str) -> list[str] | str:
    return _LIFT if raw in (_LIFT, "all") else [t.strip() for t in raw.split(",") if t.strip()]


def _project_line(project: Project) -> str:
    quotas = " ".join(
        f"{name}={','.join(v) if isinstance(v, list) else v}"
        for name, v in project.quotas.as_dict().items()
        if v is not None
    )
    share = f"share={project.share:g}"
    return f"{project.id} {project.queue_priority} {project.name} {share} {quotas}".rstrip()


def _unix_uid(uid: int | None, name: str | None) -> int | None:
    """`--unix-uid`, or the uid of `--unix-user` in this host's passwd."""
    if name is None:
        return uid
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise ConfigurationError(f"no Unix user {name!r} in this host's passwd") from None


def _read_password() -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            raise ConfigurationError("the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise ConfigurationError("a password needs at least 8 characters")
    return password
