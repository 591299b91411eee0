"""The live cluster as a policy sees it: one device type's waiting batches, the batches holding
its QPUs, each project's usage and share, read from Redis in a few round trips, none of them a
command per project or per batch: the heads of every project's queue and the shares come from
one script (read_snapshot.lua; 1,000 projects cost the scheduler 20 ms a grant as a command
each), the waiting batches' fields as one JSON reply per ROWS_PER_CALL batches.

Only the indexed waiting set is read (queue:{type}:{priority} and each project's queue), and of
each project's queue only its oldest `window` batches: a pass costs the same on a queue of ten
batches or ten thousand (for policies whose window is 1). A caller that keeps a SnapshotCache
between reads (the scheduler, the forecaster) reads again only the project queues that changed
and the fields only of batches it has not seen. For a policy that ranks, the cache also keeps
the waiting batches ranked, and a grant's snapshot holds only what can be its choice
(`read_ranked`): a grant costs the same with ten projects waiting or a thousand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from core.db import Db
from core.decay import DecayedUsage
from core.priorities import PRIORITIES
from core.script_args import HashRowsArgs, ReadSnapshotArgs
from core.status import BatchStatus
from core.timefmt import SECOND_US
from scheduling.ranked import RankedBatches
from scheduling.snapshot import Holding, Snapshot, Waiting

#: A policy's `rank` (scheduling/policies.py).
Rank = Callable[[Waiting, float], tuple[float, ...]]

#: Longest a scheduler goes on the changes alone before it reads every queue's heads again.
FULL_READ_EVERY_S = 60.0

#: Waiting batches read per script call: Redis serves other clients between calls.
ROWS_PER_CALL = 500

#: Batch fields (core/records.py BATCH_FIELDS) a Waiting is made of.
_WAITING_FIELDS = (
    "project_id",
    "user_id",
    "queue_priority",
    "open",
    "jobs_total",
    "runs_total",
    "predicted_qpu_s",
    "created_us",
    "status",
)
#: Batch fields a Holding is made of.
_HOLDING_FIELDS = ("project_id", "start_us", "status", "predicted_qpu_s")


@dataclass
class SnapshotCache:
    """What a caller that reads one device type's snapshot again and again (the scheduler for
    each grant, the forecaster each round) keeps between reads, so that a read costs what
    changed, not what waits."""

    #: The closed waiting batches read before, by id: a closed batch's fields do not change
    #: while it waits (priority and project are fixed at submission; leaving the queue is a
    #: status change, which takes it out of the queue in the same script).
    known: dict[str, Waiting] = field(default_factory=dict)
    #: (priority, project) -> the oldest `window` batch ids of that queue; project -> its
    #: usage (QPU seconds, when counted in s): both as of `version` of the type's
    #: snapshot-version (-1: not read yet).
    heads: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    usage: dict[str, tuple[float, float]] = field(default_factory=dict)
    window: int = 0
    version: int = -1
    #: When they were last read whole (µs): at least every FULL_READ_EVERY_S, so that nothing
    #: (a Redis that lost its data and counted its versions up again) keeps a cache wrong for
    #: long.
    full_read_us: int = 0
    #: Each project's share as stored (None: the default), as of `shares_version`.
    shares: dict[str, str | None] = field(default_factory=dict)
    shares_version: str = ""
    #: For a policy that ranks (read_ranked): the waiting batches of each (priority, project)
    #: queue's window, those of them ranked, the queues holding an open batch (read again at
    #: every read: their jobs grow), and the moment ranks count usage at (s).
    queues: dict[tuple[str, str], list[Waiting]] = field(default_factory=dict)
    ranked: RankedBatches = field(default_factory=RankedBatches)
    open_queues: set[tuple[str, str]] = field(default_factory=set)
    ranked_at_s: float = 0.0


@dataclass
class _Changes:
    """What a read of the heads found changed since the cache's version."""

    #: Everything: read whole, or every share read again.
    everything: bool
    #: (priority, project) queues read again.
    queues: set[tuple[str, str]] = field(default_factory=set)
    #: Projects whose usage was read again.
    usage: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return self.everything or bool(self.queues) or bool(self.usage)


class SnapshotReader:
    def __init__(self, db: Db, half_life_s: float) -> None:
        self.redis = db.client
        self.keys = db.keys
        self.scripts = db.scripts
        self.half_life_s = half_life_s

    def read(
        self,
        device_type: str,
        qpus: Iterable[str],
        window: int | None,
        now: int,
        cache: SnapshotCache | None = None,
    ) -> Snapshot:
        """What a policy sees at `now` (µs) when a QPU of `device_type` is free; `qpus` are the
        type's QPUs, whose batches count as holding. Of each project's queue per level, its
        oldest `window` batches (None: all of them, for forecasts).

        `cache`, kept by the caller between reads of this device type, makes them
        incremental: for a window, only the project queues and usage changed since the last
        read are read again (snapshot-changes); always, the fields only of batches not known
        yet, and of open ones (their jobs grow)."""
        cache = SnapshotCache() if cache is None else cache
        holding = self._holding(list(qpus))
        if window is None:
            queued, shares = self._whole_queues(device_type, cache, now)
        else:
            self._heads(device_type, window, cache, now)
            queued, shares = _flatten(cache)

        waiting = self._still_waiting(device_type, queued, cache)
        waiting.sort(key=lambda w: (w.submitted_s, w.id))

        return self._snapshot(device_type, waiting, holding, shares, cache.usage, now)

    def read_ranked(
        self,
        device_type: str,
        qpus: Iterable[str],
        window: int,
        now: int,
        cache: SnapshotCache,
        rank: Rank,
    ) -> Snapshot:
        """What a policy that ranks (scheduling/policies.py, `rank`) needs to see to choose as
        it would among every project's window: its best-ranked batch of the projects holding
        no QPU of the type, and every batch of the window of those that hold one (their usage
        grows while they hold). Costs what changed since `cache` was read, not what waits."""
        holding = self._holding(list(qpus))
        self._rerank(device_type, window, cache, now, rank, reread_open=True)
        held = {h.project for h in holding}
        best = cache.ranked.best(held)
        waiting = [] if best is None else [best]
        waiting += [
            w for project in held for p in PRIORITIES for w in cache.queues.get((p, project), ())
        ]
        waiting.sort(key=lambda w: (w.submitted_s, w.id))
        projects = {w.project for w in waiting}
        shares = {p: cache.shares.get(p) for p in projects}
        usage = {p: cache.usage[p] for p in projects | held if p in cache.usage}
        return self._snapshot(device_type, waiting, holding, shares, usage, now)

    def _snapshot(
        self,
        device_type: str,
        waiting: list[Waiting],
        holding: list[Holding],
        shares: dict[str, str | None],
        usage: dict[str, tuple[float, float]],
        now: int,
    ) -> Snapshot:
        # Shares of the projects holding QPUs without waiting too (their usage counts).
        missing = sorted({h.project for h in holding} - set(shares))
        pipe = self.redis.pipeline(transaction=False)
        for project in missing:
            pipe.hget(self.keys.project(project), "share")
        shares.update(zip(missing, pipe.execute(), strict=True))
        return Snapshot(
            now_s=now / SECOND_US,
            device_type=device_type,
            waiting=tuple(waiting),
            holding=tuple(holding),
            usage=DecayedUsage(usage, now / SECOND_US, self.half_life_s),
            shares={p: float(share) for p, share in shares.items() if share is not None},
        )

    def catch_up(
        self, device_type: str, window: int, cache: SnapshotCache, now: int, rank: Rank | None
    ) -> None:
        """Brings `cache` up to date with what changed since it was read, without making a
        snapshot: a scheduler does it every pass, so that the grant that follows a burst of
        submissions does not read them all first (one round trip when nothing changed).
        `rank`: the policy's, when it ranks (read_ranked)."""
        if cache.version < 0:
            return  # never read: the first grant reads it whole
        if rank is not None:
            self._rerank(device_type, window, cache, now, rank, reread_open=False)
        elif self._heads(device_type, window, cache, now):
            self._still_waiting(device_type, _flatten(cache)[0], cache)

    def _rerank(
        self,
        device_type: str,
        window: int,
        cache: SnapshotCache,
        now: int,
        rank: Rank,
        reread_open: bool,
    ) -> None:
        """Reads what changed (`_heads`) and ranks again the batches of the queues that
        changed, of the projects whose usage did, and of the queues holding an open batch
        when `reread_open`; all of them when everything was read again."""
        changes = self._heads(device_type, window, cache, now)
        if changes.everything:
            # Ranks count usage at one moment, now: every rank again (once a minute at most).
            cache.ranked_at_s = now / SECOND_US
            cache.ranked.clear()
            touched = set(cache.heads) | set(cache.queues)
        else:
            touched = changes.queues | {
                (p, project) for project in changes.usage for p in PRIORITIES
            }
            if reread_open:
                touched |= cache.open_queues
        if not touched:
            return
        before = [w for key in touched for w in cache.queues.pop(key, ())]
        cache.ranked.drop(w.id for w in before)
        gone = {w.id for w in before}
        queued = [i for key in touched for i in cache.heads.get(key, ())]
        read = self._read_waiting(device_type, [i for i in queued if i not in cache.known])
        for key in touched:
            cache.open_queues.discard(key)
            ids = cache.heads.get(key, ())
            found = [w for i in ids if (w := cache.known.get(i) or read.get(i))]
            if found:
                cache.queues[key] = found
            for w in found:
                gone.discard(w.id)
                cache.ranked.put(w, rank(w, self._usage_per_share(w.project, cache)))
                if w.open:
                    cache.open_queues.add(key)
                else:
                    cache.known[w.id] = w
        for batch_id in gone:
            cache.known.pop(batch_id, None)

    def _usage_per_share(self, project: str, cache: SnapshotCache) -> float:
        """The project's usage per share at `cache.ranked_at_s` (held time apart): what a
        policy's rank compares."""
        value, since = cache.usage.get(project, (0.0, 0.0))
        if value:
            # Decayed, or grown when counted after that moment: the same factor for all. (The
            # cap keeps a half-life of milliseconds from overflowing: usage is gone then.)
            value *= math.pow(2.0, min((since - cache.ranked_at_s) / self.half_life_s, 1000.0))
        share = cache.shares.get(project)
        return value / max(1.0 if share is None else float(share), 1e-9)

    def _still_waiting(
        self, device_type: str, queued: list[str], cache: SnapshotCache
    ) -> list[Waiting]:
        """The batches of `queued` still waiting: those `cache` knows as it knows them, the
        others read. Leaves `cache.known` holding the closed ones."""
        unknown = [batch_id for batch_id in queued if batch_id not in cache.known]
        read = self._read_waiting(device_type, unknown)
        known = cache.known
        waiting = [w for batch_id in queued if (w := known.get(batch_id) or read.get(batch_id))]
        cache.known = {w.id: w for w in waiting if not w.open}
        return waiting

    def _read_waiting(self, device_type: str, batch_ids: list[str]) -> dict[str, Waiting]:
        """Those of `batch_ids` still waiting, read."""
        return {
            batch_id: self._waiting(batch_id, device_type, row)
            for batch_id, row in zip(batch_ids, self._rows(batch_ids), strict=True)
            # One granted meanwhile no longer waits.
            if row["project_id"] and row["status"] == BatchStatus.PENDING
        }

    def _holding(self, qpus: list[str]) -> list[Holding]:
        """The batches running on `qpus`."""
        pipe = self.redis.pipeline(transaction=False)
        for qpu in qpus:
            pipe.get(self.keys.qpu_batch(qpu))
        held = [batch_id for batch_id in pipe.execute() if batch_id]
        for batch_id in held:
            pipe.hmget(self.keys.batch(batch_id), _HOLDING_FIELDS)
        rows = [dict(zip(_HOLDING_FIELDS, v, strict=True)) for v in pipe.execute()]
        return [
            Holding(
                batch_id,
                h["project_id"],
                int(h["start_us"]) / SECOND_US,
                float(h["predicted_qpu_s"] or 0.0),
            )
            for batch_id, h in zip(held, rows, strict=True)
            if h["project_id"] and h["start_us"] and h["status"] == BatchStatus.RUNNING
        ]

    def _heads(self, device_type: str, window: int, cache: SnapshotCache, now: int) -> _Changes:
        """Into `cache`: of each project's queue per level, its oldest `window` batch ids, the
        projects' shares and usage. Read whole by one script (read_snapshot.lua) the first
        time and every FULL_READ_EVERY_S; in between, only the queues and usage changed since
        (snapshot-changes above the version read), and the shares again only when one changed
        (shares-version): a grant costs the same with ten projects waiting or a thousand.
        Returns what it read again."""
        k = self.keys
        fresh = now - cache.full_read_us < FULL_READ_EVERY_S * SECOND_US
        if cache.version >= 0 and cache.window == window and fresh:
            pipe = self.redis.pipeline(transaction=True)
            pipe.get(k.snapshot_version(device_type))
            pipe.zrangebyscore(k.snapshot_changes(device_type), f"({cache.version}", "+inf")
            pipe.get(k.shares_version())
            version, changed, shares_version = pipe.execute()
            # A version that went back (Redis emptied): read everything again.
            if int(version or 0) >= cache.version:
                changes = self._changed(
                    device_type, window, cache, changed, shares_version or "0", now
                )
                cache.version = int(version or 0)
                return changes
        args = ReadSnapshotArgs(device_type, json.dumps(list(PRIORITIES)), window)
        reply = json.loads(self.scripts.run(args))
        levels = [level or [] for level in reply["levels"] or []]
        cache.heads = {
            (priority, row[0]): row[1:]
            for priority, level in zip(PRIORITIES, levels, strict=False)
            for row in level
        }
        cache.usage = {
            project: _usage(value, at, now)
            for project, (value, at) in (reply["usage"] or {}).items()
        }
        cache.shares = {p: None if s is False else s for p, s in (reply["shares"] or {}).items()}
        cache.window, cache.version, cache.full_read_us = window, int(reply["version"]), now
        cache.shares_version = reply["shares_version"]
        return _Changes(everything=True)

    def _changed(
        self,
        device_type: str,
        window: int,
        cache: SnapshotCache,
        changed: list[str],
        shares_version: str,
        now: int,
    ) -> _Changes:
        """Reads again what `changed` names ("queue|priority|project": its heads;
        "usage|project": its usage), the shares of projects not seen before, and every share
        when one changed."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        changes = _Changes(everything=shares_version != cache.shares_version)
        for member in changed:
            kind, _, rest = member.partition("|")
            if kind == "queue":
                priority, _, project = rest.partition("|")
                changes.queues.add((priority, project))
                pipe.zrange(k.project_queue(device_type, priority, project), 0, window - 1)
            elif kind == "usage":
                changes.usage.add(rest)
                pipe.hget(k.device_usage(device_type), rest)
                pipe.hget(k.device_usage_at(device_type), rest)
        replies = iter(pipe.execute())
        for member in changed:
            kind, _, rest = member.partition("|")
            if kind == "queue":
                priority, _, project = rest.partition("|")
                ids = next(replies)
                if ids:
                    cache.heads[(priority, project)] = ids
                else:
                    cache.heads.pop((priority, project), None)
            elif kind == "usage":
                value, at = next(replies), next(replies)
                if value is not None:
                    cache.usage[rest] = _usage(value, at, now)
        if changes.everything:  # a share changed: all of them again
            unseen, cache.shares = sorted({project for _, project in cache.heads}), {}
        else:  # only projects whose queue changed can be new
            unseen = sorted(
                {
                    p
                    for key in changes.queues
                    if key in cache.heads and (p := key[1]) not in cache.shares
                }
            )
        for project in unseen:
            pipe.hget(k.project(project), "share")
        cache.shares.update(zip(unseen, pipe.execute(), strict=True))
        cache.shares_version = shares_version
        return changes

    def _whole_queues(
        self, device_type: str, cache: SnapshotCache, now: int
    ) -> tuple[list[str], dict[str, str | None]]:
        """Every waiting batch id, a command per project queue (each bounded by one project's
        queue: a forecast's read must not hold Redis for the whole of a long one), and the
        projects' shares (and into `cache`, the usage)."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        for priority in PRIORITIES:
            pipe.zrange(k.queue(device_type, priority), 0, -1)
        pipe.hgetall(k.device_usage(device_type))
        pipe.hgetall(k.device_usage_at(device_type))
        *projects_by_level, usage, usage_at = pipe.execute()
        cache.usage = {p: _usage(v, usage_at.get(p), now) for p, v in usage.items()}
        for priority, projects in zip(PRIORITIES, projects_by_level, strict=True):
            for project in projects:
                pipe.zrange(k.project_queue(device_type, priority, project), 0, -1)
        queued = [batch_id for ids in pipe.execute() for batch_id in ids]
        projects = sorted({p for level in projects_by_level for p in level})
        for project in projects:
            pipe.hget(k.project(project), "share")
        return queued, dict(zip(projects, pipe.execute(), strict=True))

    @staticmethod
    def _waiting(batch_id: str, device_type: str, row: dict[str, Any]) -> Waiting:
        return Waiting(
            id=batch_id,
            project=row["project_id"],
            user=row["user_id"],
            priority=row["queue_priority"],
            device_type=device_type,
            submitted_s=int(row["created_us"]) / SECOND_US,
            open=row["open"] == "1",
            jobs=int(row["jobs_total"] or 0),
            runs=int(row["runs_total"] or 0),
            predicted_qpu_s=float(row["predicted_qpu_s"] or 0.0),
        )

    def _rows(self, batch_ids: list[str]) -> list[dict[str, Any]]:
        """The _WAITING_FIELDS of each batch, in order, by name (None where missing)."""
        rows: list[dict[str, Any]] = []
        fields = json.dumps(_WAITING_FIELDS)
        for start in range(0, len(batch_ids), ROWS_PER_CALL):
            keys = [self.keys.batch(b) for b in batch_ids[start : start + ROWS_PER_CALL]]
            reply = json.loads(self.scripts.run(HashRowsArgs(fields), keys=keys)) or []
            rows += [
                {
                    name: None if value is False else value
                    for name, value in zip(_WAITING_FIELDS, row, strict=True)
                }
                for row in reply
            ]
        return rows


def _flatten(cache: SnapshotCache) -> tuple[list[str], dict[str, str | None]]:
    """The cached heads' batch ids, and the shares of their projects."""
    present = {project for _, project in cache.heads}
    return [i for ids in cache.heads.values() for i in ids], {
        p: share for p, share in cache.shares.items() if p in present
    }


def _usage(value: str, at: str | bool | None, now: int) -> tuple[float, float]:
    """A project's usage as stored (QPU seconds; when counted, µs, absent: `now`) as
    (QPU seconds, when counted in s)."""
    counted = int(at) if isinstance(at, str) else now
    return float(value), counted / SECOND_US
