"""Loads the Lua scripts of core/lua/ once and calls them by SHA (EVALSHA, reloaded on NOSCRIPT).

Each script is prefixed with a prelude: `NS` (the namespace, always ARGV[1]), the `K.*` key
functions rendered from core/keys.py, the audit entry's layout (core/audit.py), the status names,
sets and transition tables (core/status.py), the reply codes `R.*` (core/replies.py), and the
shared helpers of `_lib.lua`. A script's own arguments therefore start at ARGV[2].

A script receives as KEYS the keys its caller can name from the arguments (the record or the
QPU it is about); the keys it finds through them (indexes, the QPU a job runs on, ...) it builds
with `K.*`. Its header lists both.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis

from tweezer.core.audit import lua_audit
from tweezer.core.counters import lua_counters
from tweezer.core.keys import lua_functions
from tweezer.core.replies import lua_replies, transition_error
from tweezer.core.status import lua_tables

SCRIPT_NAMES = (
    "create_batch",
    "add_jobs",
    "close_batch",
    "cancel_batch",
    "cancel_jobs",
    "set_tags",
    "query",
    "acquire_qpu",
    "renew_lease",
    "release_qpu",
    "dispatch",
    "claim_jobs",
    "heartbeat",
    "commit_jobs",
    "reconcile",
    "expire_open_batch",
    "device_status",
    "rate_limit",
    "login_backoff",
    "purge_inputs",
    "idempotency_check",
    "migrate",
    "claim_webhooks",
    "overview",
    "webhook_attempt",
    "hash_rows",
)


def _read(name: str) -> str:
    return resources.files("tweezer.core").joinpath("lua", f"{name}.lua").read_text()


#: Flags beyond the default (may write; refused whole when Redis is full).
FLAGS = {
    # Only read.
    "device_status": "no-writes",
    "idempotency_check": "no-writes",
    "overview": "no-writes",
    "hash_rows": "no-writes",
    # Reads, through temporary keys it deletes before returning: lists keep working when
    # Redis is full, at the cost of a brief, bounded use of memory.
    "query": "allow-oom",
    # Writes one small expiring key per token: reads keep working when Redis is full.
    "rate_limit": "allow-oom",
    # Logins must keep working on a full Redis too (a check writes nothing).
    "login_backoff": "allow-oom",
    # Frees memory: it must run most of all when Redis is full.
    "purge_inputs": "allow-oom",
}


@cache
def script_source(name: str) -> str:
    """The full text sent to Redis for script `name`.

    The shebang makes Redis check for a full memory once, before the script runs, and refuse it
    whole: without it, a script is refused only at the write that finds memory full, after the
    writes before it (scripts are not rolled back).
    """
    shebang = f"#!lua flags={FLAGS[name]}\n" if name in FLAGS else "#!lua\n"
    prelude = (
        "local NS = ARGV[1]\n"
        + lua_functions()
        + lua_audit()
        + lua_tables()
        + lua_replies()
        + lua_counters()
        + _read("_lib")
    )
    return shebang + prelude + "\n-- " + name + ".lua\n" + _read(name)


class Scripts:
    """The scripts registered on one Redis client, called as `scripts.call("dispatch", ...)`."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.namespace = namespace
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPT_NAMES}

    def call(self, name: str, *args: Any, keys: Sequence[str] = ()) -> Any:
        """Runs script `name` with `keys` as KEYS and `args` from ARGV[2]; a status move its
        transition table forbids raises InvalidTransition (core/replies.py)."""
        try:
            return self._scripts[name](keys=list(keys), args=[self.namespace, *args])
        except redis.exceptions.ResponseError as exc:
            error = transition_error(str(exc))
            if error is None:
                raise
            raise error from None
