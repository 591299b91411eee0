"""The audit log: who created, cancelled, closed, rebatched... what, and when.

Batch changes are logged by the Lua script that makes them (same atomic step: no change without
its entry, no entry without its change); account changes by core/accounts.py in the transaction
that makes them. Entries live in one Redis stream, trimmed to about `AUDIT_RETAINED` entries, and
are read newest first by administrators (`GET /admin/api/v1/audit`, `tweezer audit`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis

from core.keys import Keys

#: Entries kept (approximately: Redis trims whole nodes of the stream).
AUDIT_RETAINED = 100_000
#: The actor of changes made from the command line (whoever can reach the cluster's Redis).
CLI_ACTOR = "cli"
#: The fields of a stream entry, in the order they are written (here and by `audit()` in
#: core/lua/_audit.lua, which gets this tuple in its prelude).
AUDIT_FIELDS = ("at", "actor", "action", "project_id", "batch_id", "detail")


def lua_audit() -> str:
    """The entry layout and the log's length for the Lua prelude (core/scripts.py)."""
    names = ", ".join(f"'{name}'" for name in AUDIT_FIELDS)
    return f"local AUDIT_FIELDS = {{{names}}}\nlocal AUDIT_RETAINED = {AUDIT_RETAINED}\n"


@dataclass(frozen=True)
class Audit:
    """What to log with a change: who made it, the action, and anything worth keeping."""

    actor: str
    action: str
    detail: dict[str, Any] = field(default_factory=dict)

    def arg(self) -> str:
        """The script argument `audit()` in _audit.lua completes (with `at`, `project_id` and
        `batch_id`, which the script knows) and writes."""
        return json.dumps(self.fields(0))

    def fields(self, now: int, project_id: str = "", batch_id: str = "") -> dict[str, str]:
        """The stream entry, in AUDIT_FIELDS order."""
        values = {
            "at": str(now),
            "actor": self.actor,
            "action": self.action,
            "project_id": project_id,
            "batch_id": batch_id,
            "detail": json.dumps(self.detail, sort_keys=True),
        }
        return {name: values[name] for name in AUDIT_FIELDS}


@dataclass(frozen=True)
class AuditEntry:
    id: str
    at_us: int
    actor: str
    action: str
    project_id: str
    batch_id: str
    detail: dict[str, Any]


class AuditLog:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis = client
        self.keys = Keys(namespace)

    def record(
        self, pipe: redis.client.Pipeline, audit: Audit, now: int, project_id: str = ""
    ) -> None:
        """Queues the entry on `pipe`, the transaction that makes the change."""
        pipe.xadd(
            self.keys.audit(),
            audit.fields(now, project_id),
            maxlen=AUDIT_RETAINED,
            approximate=True,
        )

    def entries(
        self,
        limit: int = 100,
        before: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        project_id: str | None = None,
        scan: int = 10_000,
    ) -> list[AuditEntry]:
        """Up to `limit` entries, newest first, older than the entry id `before` if given and
        matching every filter given; looks through at most `scan` entries."""
        newest = f"({before}" if before else "+"
        raw = self.redis.xrevrange(self.keys.audit(), max=newest, min="-", count=scan)
        found: list[AuditEntry] = []
        for entry_id, f in raw:
            if (
                (actor and f.get("actor") != actor)
                or (action and f.get("action") != action)
                or (project_id and f.get("project_id") != project_id)
            ):
                continue
            found.append(
                AuditEntry(
                    id=entry_id,
                    at_us=int(f["at"]),
                    actor=f["actor"],
                    action=f["action"],
                    project_id=f.get("project_id", ""),
                    batch_id=f.get("batch_id", ""),
                    detail=json.loads(f.get("detail") or "{}"),
                )
            )
            if len(found) == limit:
                break
        return found
