"""The live cluster as a policy sees it: one device type's waiting batches, the batches holding
its QPUs, each project's usage and share, read from Redis in four round trips (the waiting
batches' fields as one JSON reply per ROWS_PER_CALL batches: a forecast reads every waiting
batch, and a reply per batch cost the scheduler a core's tenth of a second per thousand).

Only the indexed waiting set is read (queue:{type}:{priority} and each project's queue), and of
each project's queue only its oldest `window` batches: a pass costs the same on a queue of ten
batches or ten thousand (for policies whose window is 1).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import redis

from tweezer.core.decay import decayed
from tweezer.core.keys import Keys
from tweezer.core.priorities import PRIORITIES
from tweezer.core.scripts import Scripts
from tweezer.core.status import BatchStatus
from tweezer.core.timefmt import SECOND_US
from tweezer.scheduling.snapshot import Holding, Snapshot, Waiting

#: Waiting batches read per script call: Redis serves other clients between calls.
ROWS_PER_CALL = 500

#: Batch fields a Waiting is made of.
_FIELDS = (
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


class SnapshotReader:
    def __init__(self, client: redis.Redis, namespace: str, half_life_s: float) -> None:
        self.redis = client
        self.keys = Keys(namespace)
        self.scripts = Scripts(client, namespace)
        self.half_life_s = half_life_s

    def read(self, device_type: str, qpus: Iterable[str], window: int, now: int) -> Snapshot:
        """What a policy sees at `now` (µs) when a QPU of `device_type` is free; `qpus` are the
        type's QPUs, whose batches count as holding."""
        k = self.keys
        now_s = now / SECOND_US
        pipe = self.redis.pipeline(transaction=False)
        for priority in PRIORITIES:
            pipe.zrange(k.queue(device_type, priority), 0, -1)
        holders = list(qpus)
        for qpu in holders:
            pipe.get(k.qpu_batch(qpu))
        pipe.hgetall(k.device_usage(device_type))
        pipe.hgetall(k.device_usage_at(device_type))
        *levels, usage, usage_at = pipe.execute()
        projects_by_level, serving = levels[: len(PRIORITIES)], levels[len(PRIORITIES) :]

        # The oldest `window` batches of each (level, project) queue, and the holders' batches.
        for priority, projects in zip(PRIORITIES, projects_by_level, strict=True):
            for project in projects:
                pipe.zrange(k.project_queue(device_type, priority, project), 0, window - 1)
        held = [batch_id for batch_id in serving if batch_id]
        for batch_id in held:
            pipe.hmget(k.batch(batch_id), "project_id", "start_us", "status", "predicted_qpu_s")
        replies = pipe.execute()
        queued = [batch_id for ids in replies[: len(replies) - len(held)] for batch_id in ids]
        holding = [
            Holding(batch_id, h[0], int(h[1]) / SECOND_US, float(h[3] or 0.0))
            for batch_id, h in zip(held, replies[len(replies) - len(held) :], strict=True)
            if h[0] and h[1] and h[2] == BatchStatus.RUNNING
        ]

        rows = self._rows(queued)
        projects = sorted({row[0] for row in rows if row[0]} | {h.project for h in holding})
        pipe = self.redis.pipeline(transaction=False)
        for project in projects:
            pipe.hget(k.project(project), "share")
        shares = {
            project: float(share)
            for project, share in zip(projects, pipe.execute(), strict=True)
            if share is not None
        }

        waiting = [
            Waiting(
                id=batch_id,
                project=row[0],
                user=row[1],
                priority=row[2],
                device_type=device_type,
                submitted_s=int(row[7]) / SECOND_US,
                open=row[3] == "1",
                jobs=int(row[4] or 0),
                runs=int(row[5] or 0),
                predicted_qpu_s=float(row[6] or 0.0),
            )
            for batch_id, row in zip(queued, rows, strict=True)
            if row[0] and row[8] == BatchStatus.PENDING  # one granted meanwhile no longer waits
        ]
        waiting.sort(key=lambda w: (w.submitted_s, w.id))
        decayed_usage = {
            project: decayed(
                float(value), int(usage_at.get(project, now)) / SECOND_US, now_s, self.half_life_s
            )
            for project, value in usage.items()
        }
        return Snapshot(
            now_s=now_s,
            device_type=device_type,
            waiting=tuple(waiting),
            holding=tuple(holding),
            usage=decayed_usage,
            shares=shares,
        )

    def _rows(self, batch_ids: list[str]) -> list[list[Any]]:
        """The _FIELDS of each batch, in order (None where missing)."""
        rows: list[list[Any]] = []
        fields = json.dumps(_FIELDS)
        for start in range(0, len(batch_ids), ROWS_PER_CALL):
            keys = [self.keys.batch(b) for b in batch_ids[start : start + ROWS_PER_CALL]]
            reply = json.loads(self.scripts.call("hash_rows", fields, keys=keys)) or []
            rows += [[value if value is not False else None for value in row] for row in reply]
        return rows
