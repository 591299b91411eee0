"""Loads the Lua scripts of core/lua/ once and calls them by SHA (EVALSHA, reloaded on NOSCRIPT).

Each script is sent with a prelude: `NS` (the namespace, always ARGV[1]), the `K.*` key
functions rendered from core/keys.py, the audit entry's layout (core/audit.py), the status
names, sets and transition tables (core/status.py), the reply codes `R.*` and other wire words
(core/replies.py), the record field lists `FIELDS.*` (core/records.py), the shared library
(`LIBRARY`: the `_*.lua` files, in that order, each a concern), and last the script's own
arguments as the table `A` (core/script_args.py). A script reads `A.now`, never `ARGV[n]`.

A script receives as KEYS the keys its caller can name from the arguments (the record or the
QPU it is about); the keys it finds through them (indexes, the QPU a job runs on, ...) it builds
with `K.*`. Its header lists both.

An error inside a script names the line of the whole text Redis ran; `Scripts.run` rewrites it
to the file and line it came from (`_lib/_statuses.lua:41`), through `SourceMap`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import redis

from core.audit import lua_audit
from core.counters import lua_counters
from core.forecasts import lua_forecasts
from core.keys import lua_functions
from core.records import lua_fields
from core.replies import lua_replies, transition_error
from core.script_args import ARGS, ScriptArgs
from core.status import lua_tables

#: The shared library, by concern, in the order each may use the ones before it.
LIBRARY = (
    "_base",
    "_metrics",
    "_queues",
    "_accounting",
    "_statuses",
    "_sequences",
    "_idempotency",
    "_audit",
)

#: Every script: one per argument type (core/script_args.py), core/lua/<name>.lua each.
SCRIPT_NAMES = tuple(ARGS)


def _read(name: str) -> str:
    text = resources.files("core").joinpath("lua", f"{name}.lua").read_text()
    return text if text.endswith("\n") else text + "\n"


#: Flags beyond the default (may write; refused whole when Redis is full).
FLAGS = {
    # Only read.
    "device_status": "no-writes",
    "idempotency_check": "no-writes",
    "overview": "no-writes",
    "hash_rows": "no-writes",
    "read_snapshot": "no-writes",
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


def _located(name: str, exc: redis.exceptions.ResponseError) -> Exception:
    """A script's error as callers see it: InvalidTransition for a move its transition table
    forbids, else the error naming the file and line it came from."""
    error = transition_error(str(exc))
    if error is not None:
        return error
    located: Exception = type(exc)(assembled(name)[1].rewrite(str(exc)))
    return located


@dataclass(frozen=True)
class SourceMap:
    """Where each line of a script's full text came from: (first line, part name) per part."""

    parts: tuple[tuple[int, str], ...]

    def locate(self, line: int) -> tuple[str, int]:
        """The part (`dispatch.lua`, `_statuses.lua`, `prelude`) and its own line number."""
        found = ("prelude", line)
        for first, part in self.parts:
            if line >= first:
                found = (part, line - first + 1)
        return found

    def rewrite(self, message: str) -> str:
        """`user_script:N` in a Redis error as `part:line`."""

        def located(match: re.Match[str]) -> str:
            part, line = self.locate(int(match.group(1)))
            return f"{part}:{line}"

        return re.sub(r"user_script:(\d+)", located, message)


@cache
def assembled(name: str) -> tuple[str, SourceMap]:
    """The full text sent to Redis for script `name`, and where each of its lines came from.

    The shebang makes Redis check for a full memory once, before the script runs, and refuse it
    whole: without it, a script is refused only at the write that finds memory full, after the
    writes before it (scripts are not rolled back).
    """
    shebang = f"#!lua flags={FLAGS[name]}\n" if name in FLAGS else "#!lua\n"
    parts: list[tuple[str, str]] = [
        (
            "prelude",
            "local NS = ARGV[1]\n"
            + lua_functions()
            + lua_audit()
            + lua_tables()
            + lua_replies()
            + lua_counters()
            + lua_forecasts()
            + lua_fields(),
        ),
        *((f"{part}.lua", _read(part)) for part in LIBRARY),
        ("arguments", ARGS[name].lua()),
        (f"{name}.lua", _read(name)),
    ]
    text, starts, line = shebang, [], 2
    for part, source in parts:
        starts.append((line, part))
        text += source
        line += source.count("\n")
    return text, SourceMap(tuple(starts))


def script_source(name: str) -> str:
    return assembled(name)[0]


class Scripts:
    """The scripts registered on one Redis client, run as `scripts.run(DispatchArgs(...))`."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.namespace = namespace
        self.client = client
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPT_NAMES}

    def run(self, args: ScriptArgs, keys: Sequence[str] = ()) -> Any:
        """Runs the script `args` are for, with `keys` as KEYS; a status move its transition
        table forbids raises InvalidTransition (core/replies.py), any other error names the
        file and line it came from."""
        reply = self._run_or_error(args, keys)
        if isinstance(reply, redis.exceptions.ResponseError):
            raise _located(args.SCRIPT, reply) from None
        return reply

    def run_many(self, calls: Sequence[tuple[ScriptArgs, Sequence[str]]]) -> list[Any]:
        """Runs several scripts in one round trip (a pipeline, not a transaction: each is
        atomic on its own), in order; their replies in order. An error of any is raised as
        `run` raises it, once all of them ran."""
        pipe = self.client.pipeline(transaction=False)
        for args, keys in calls:
            # EVALSHA itself: a pipeline given the Script objects asks SCRIPT EXISTS first,
            # a second round trip on every call.
            sha = self._scripts[args.SCRIPT].sha
            pipe.evalsha(sha, len(keys), *keys, self.namespace, *args.argv())
        replies: list[Any] = pipe.execute(raise_on_error=False)
        for index, ((args, keys), reply) in enumerate(zip(calls, replies, strict=True)):
            if isinstance(reply, redis.exceptions.NoScriptError):
                # Not loaded (Redis restarted, or flushed its scripts): it did not run, so it
                # runs now, alone (which loads it).
                replies[index] = self._run_or_error(args, keys)
        for (args, _), reply in zip(calls, replies, strict=True):
            if isinstance(reply, redis.exceptions.ResponseError):
                raise _located(args.SCRIPT, reply) from None
        return replies

    def _run_or_error(self, args: ScriptArgs, keys: Sequence[str]) -> Any:
        """The script's reply, or the error Redis answered (loading it first if Redis has
        lost it)."""
        try:
            return self._scripts[args.SCRIPT](keys=list(keys), args=[self.namespace, *args.argv()])
        except redis.exceptions.ResponseError as exc:
            return exc
