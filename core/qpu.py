"""QPU leases and dispatch, as the scheduler drives them (scripts in core/lua/).

A lease is a batch's exclusive hold on a QPU: `SET NX PX` of a random token, a fencing epoch
(INCR) that every scheduler write is checked against, renewed by the holder, released by
compare-and-delete once the batch is terminal and nothing of it is in flight.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from core.accounts import QUEUE_PRIORITIES
from core.devices import device_type_of_qpu
from core.keys import Keys
from core.scripts import Scripts
from core.settings import Settings

#: A QPU not in TWEEZER_QPUS is served while one of its workers announced itself this recently;
#: workers announce every sixth of it.
PRESENCE_TTL_S = 30.0


@dataclass
class Lease:
    qpu: str
    token: str
    epoch: int
    batch_id: str


@dataclass(frozen=True)
class OpenBatchHold:
    """How long an open batch may keep its QPU (Settings.open_batch_*)."""

    #: Idle (no active job, nothing added or finished) this long: it ends.
    idle_s: float
    #: Idle this long while another project waits for the device type: it ends.
    contended_idle_s: float
    #: Held this long since it started, busy or not: it ends.
    max_hold_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenBatchHold:
        return cls(
            settings.open_batch_timeout_s,
            settings.open_batch_contended_idle_s,
            settings.open_batch_max_hold_s,
        )


@dataclass(frozen=True)
class Delivery:
    """One dispatch of one job: the Celery message carries both."""

    job_id: str
    delivery: str


class QpuControl:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis = client
        self.keys = Keys(namespace)
        self.scripts = Scripts(client, namespace)

    def announce(self, qpu: str, now: int) -> None:
        """A worker of `qpu` is alive (workers say so every few seconds)."""
        self.redis.hset(self.keys.qpu_presence(), qpu, now)

    def announced(self, device_types: Iterable[str], since: int) -> list[str]:
        """QPUs of `device_types` whose workers said they were alive at `since` or later:
        a QPU added on another host is served without restarting anything."""
        seen: dict[str, str] = self.redis.hgetall(self.keys.qpu_presence())
        types = set(device_types)
        return sorted(
            qpu for qpu, at in seen.items() if int(at) >= since and device_type_of_qpu(qpu) in types
        )

    def acquire(self, qpu: str, ttl_s: float, now: int) -> Lease | None:
        """Grants `qpu` to the batch it was serving or to the next queued one; None if the QPU
        is held by someone else or nothing waits."""
        token = secrets.token_hex(16)
        reply = self.scripts.call(
            "acquire_qpu",
            now,
            qpu,
            device_type_of_qpu(qpu),
            token,
            int(ttl_s * 1000),
            json.dumps(QUEUE_PRIORITIES),
        )
        if reply[0] != "acquired":
            return None
        return Lease(qpu=qpu, token=token, epoch=int(reply[2]), batch_id=reply[1])

    def renew(self, lease: Lease, ttl_s: float) -> bool:
        return bool(self._fenced("renew_lease", lease, int(ttl_s * 1000)))

    def release(self, lease: Lease) -> bool:
        return bool(self._fenced("release_qpu", lease))

    def dispatch(self, lease: Lease, capacity: int, timeout_s: float, now: int) -> list[Delivery]:
        reply = self.scripts.call(
            "dispatch", now, lease.qpu, lease.token, lease.epoch, capacity, int(timeout_s * 1000)
        )
        if reply[0] != "ok":
            return []
        pairs = reply[2:]
        return [Delivery(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)]

    def reconcile(self, lease: Lease, max_attempts: int, now: int) -> tuple[int, int]:
        """(requeued, failed) among the QPU's jobs whose claim or heartbeat deadline passed."""
        reply = self.scripts.call(
            "reconcile", now, lease.qpu, lease.token, lease.epoch, max_attempts
        )
        return (int(reply[1]), int(reply[2])) if reply[0] == "ok" else (0, 0)

    def expire_open_batch(self, lease: Lease, hold: OpenBatchHold, now: int) -> str | None:
        """Ends the QPU's open batch TIMED_OUT if `hold` says it has held the QPU long enough;
        returns why ('idle', 'contended_idle', 'max_hold') or None."""
        reply = self.scripts.call(
            "expire_open_batch",
            now,
            lease.qpu,
            lease.token,
            lease.epoch,
            int(hold.idle_s * 1_000_000),
            int(min(hold.contended_idle_s, hold.idle_s) * 1_000_000),
            int(hold.max_hold_s * 1_000_000),
            json.dumps(QUEUE_PRIORITIES),
        )
        return str(reply[2]) if reply[0] == "timed_out" else None

    def _fenced(self, script: str, lease: Lease, *args: object) -> int:
        result: int = self.scripts.call(script, lease.qpu, lease.token, lease.epoch, *args)
        return result
