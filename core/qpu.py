"""QPU leases and dispatch, as the scheduler drives them (scripts in core/lua/).

A lease is a batch's exclusive hold on a QPU: `SET NX PX` of a random token, a fencing epoch
(INCR) that every scheduler write is checked against, renewed by the holder, released by
compare-and-delete once the batch is terminal and nothing of it is in flight.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core import replies
from core.db import Db
from core.device_types import device_type_of_qpu, qpu_names
from core.priorities import PRIORITIES
from core.script_args import (
    AcquireQpuArgs,
    DispatchArgs,
    ExpireOpenBatchArgs,
    ReconcileArgs,
    ReleaseQpuArgs,
    RenewLeaseArgs,
    ScriptArgs,
)
from core.settings import Settings
from core.status import HoldEnd
from core.timefmt import to_ms, to_us

#: Most jobs one message carries to a worker (dispatch.lua): enough to amortise a message, a
#: claim and a commit over many cheap jobs, few enough that a lost worker loses little.
MAX_CHUNK_JOBS = 64

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


class QpuControl:
    def __init__(self, db: Db) -> None:
        self.redis = db.client
        self.keys = db.keys
        self.scripts = db.scripts

    def announce(self, qpu: str, now: int, worker: str = "") -> None:
        """A worker of `qpu` is alive (workers say so every few seconds); `worker` names it
        (core/liveness.py worker_name) for `tweezer status` and /metrics."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.keys.qpu_presence(), qpu, now)
        if worker:
            pipe.hset(self.keys.worker_presence(), worker, now)
        pipe.execute()

    def depart(self, worker: str) -> None:
        """A worker stops cleanly: it is gone, not lost."""
        self.redis.hdel(self.keys.worker_presence(), worker)

    def announced(self, device_types: Iterable[str], since: int) -> list[str]:
        """QPUs of `device_types` whose workers said they were alive at `since` or later:
        a QPU added on another host is served without restarting anything."""
        seen: dict[str, str] = self.redis.hgetall(self.keys.qpu_presence())
        types = set(device_types)
        return sorted(
            qpu for qpu, at in seen.items() if int(at) >= since and device_type_of_qpu(qpu) in types
        )

    def served(self, qpus: Mapping[str, int], since: int) -> list[str]:
        """The configured QPUs (`qpus`: how many per device type), then those of the same
        device types that workers announced at `since` or later (core/liveness.py
        alive_since): the QPUs a scheduler grants and a forecaster forecasts."""
        configured = qpu_names(qpus)
        announced = self.announced(qpus.keys(), since)
        return [*configured, *(q for q in announced if q not in configured)]

    def held(self, qpus: Iterable[str]) -> int:
        """How many of `qpus` a batch holds right now (their leases)."""
        pipe = self.redis.pipeline(transaction=False)
        for qpu in qpus:
            pipe.exists(self.keys.qpu_lease(qpu))
        return sum(pipe.execute())

    def acquire(
        self, qpu: str, ttl_s: float, now: int, choose: Callable[[], str | None]
    ) -> Lease | None:
        """Grants `qpu` to the batch it was serving, else to the waiting batch `choose()` names
        (the scheduling policy, asked only when the QPU is free and batches wait); None if the
        QPU is held by someone else, its device is not UP, nothing waits, or the choice was
        taken meanwhile (the next pass chooses again)."""
        token = secrets.token_hex(16)

        def grant(candidate: str) -> replies.Granted | replies.Choose | replies.Refused:
            reply = self.scripts.run(
                AcquireQpuArgs(
                    now=now,
                    qpu=qpu,
                    device_type=device_type_of_qpu(qpu),
                    token=token,
                    ttl_ms=to_ms(ttl_s),
                    candidate=candidate,
                    priorities=json.dumps(PRIORITIES),
                ),
                keys=self._qpu_keys(qpu),
            )
            return replies.decode_acquired(reply)

        acquired = grant("")
        if isinstance(acquired, replies.Choose):
            candidate = choose()
            if candidate is None:
                return None
            acquired = grant(candidate)
        match acquired:
            case replies.Granted(batch_id, epoch):
                return Lease(qpu=qpu, token=token, epoch=epoch, batch_id=batch_id)
            case _:
                return None

    def renew(self, lease: Lease, ttl_s: float) -> bool:
        """False when the lease is lost (expired, or taken over)."""
        return self.renew_all([lease], ttl_s)[0]

    def renew_all(self, leases: Sequence[Lease], ttl_s: float) -> list[bool]:
        """`renew` of each lease, in one round trip."""
        calls = [
            (RenewLeaseArgs(token=lease.token, epoch=lease.epoch, ttl_ms=to_ms(ttl_s)), lease)
            for lease in leases
        ]
        return [replies.decode_fenced_ok(reply) for reply in self._fenced_all(calls)]

    def release(self, lease: Lease, usage_half_life_s: float, now: int) -> bool:
        """True when the QPU is free again: its batch is finished and nothing is in flight (the
        time it held the QPU is then counted as its project's usage)."""
        return self.release_all([lease], usage_half_life_s, now)[0]

    def release_all(
        self, leases: Sequence[Lease], usage_half_life_s: float, now: int
    ) -> list[bool]:
        """`release` of each lease, in one round trip."""
        calls = [
            (ReleaseQpuArgs(now, lease.token, lease.epoch, usage_half_life_s), lease)
            for lease in leases
        ]
        return [replies.decode_fenced_ok(reply) for reply in self._fenced_all(calls)]

    def dispatch(
        self,
        lease: Lease,
        capacity: int,
        timeout_s: float,
        now: int,
        chunk_s: float = 0.0,
        max_chunk: int = MAX_CHUNK_JOBS,
    ) -> list[replies.Dispatch]:
        """Hands out the batch's next jobs in chunks of about `chunk_s` predicted seconds each
        (0: one job per chunk), for a QPU that runs `capacity` jobs at once (dispatch.lua)."""
        return self.dispatch_all([(lease, capacity)], timeout_s, now, chunk_s, max_chunk)[0]

    def dispatch_all(
        self,
        leases: Sequence[tuple[Lease, int]],
        timeout_s: float,
        now: int,
        chunk_s: float = 0.0,
        max_chunk: int = MAX_CHUNK_JOBS,
    ) -> list[list[replies.Dispatch]]:
        """`dispatch` for each (lease, capacity), in one round trip."""
        calls = [
            (
                DispatchArgs(
                    now=now,
                    qpu=lease.qpu,
                    token=lease.token,
                    epoch=lease.epoch,
                    pool=capacity,
                    timeout_ms=to_ms(timeout_s),
                    chunk_s=chunk_s,
                    max_chunk=max_chunk,
                ),
                lease,
            )
            for lease, capacity in leases
        ]
        return [replies.decode_dispatched(reply) for reply in self._fenced_all(calls)]

    def reconcile(self, lease: Lease, max_attempts: int, now: int) -> replies.Reconciled:
        """Recovers the QPU's jobs whose claim or heartbeat deadline passed."""
        return self.reconcile_all([lease], max_attempts, now)[0]

    def reconcile_all(
        self, leases: Sequence[Lease], max_attempts: int, now: int
    ) -> list[replies.Reconciled]:
        """`reconcile` of each lease, in one round trip."""
        calls = [
            (ReconcileArgs(now, lease.token, lease.epoch, max_attempts), lease) for lease in leases
        ]
        return [replies.decode_reconciled(reply) for reply in self._fenced_all(calls)]

    def expire_open_batch(self, lease: Lease, hold: OpenBatchHold, now: int) -> HoldEnd | None:
        """Ends the QPU's open batch TIMED_OUT if `hold` says it has held the QPU long enough;
        returns why, or None."""
        return self.expire_open_batches([lease], hold, now)[0]

    def expire_open_batches(
        self, leases: Sequence[Lease], hold: OpenBatchHold, now: int
    ) -> list[HoldEnd | None]:
        """`expire_open_batch` of each lease, in one round trip."""
        calls = [
            (
                ExpireOpenBatchArgs(
                    now=now,
                    token=lease.token,
                    epoch=lease.epoch,
                    idle_us=to_us(hold.idle_s),
                    contended_idle_us=to_us(min(hold.contended_idle_s, hold.idle_s)),
                    max_hold_us=to_us(hold.max_hold_s),
                    priorities=json.dumps(PRIORITIES),
                ),
                lease,
            )
            for lease in leases
        ]
        return [replies.decode_timed_out(reply) for reply in self._fenced_all(calls)]

    def _qpu_keys(self, qpu: str) -> list[str]:
        """The KEYS of the scheduler's scripts, in the order of `qpu_keys()` in _queues.lua."""
        k = self.keys
        return [k.qpu_lease(qpu), k.qpu_epoch(qpu), k.qpu_batch(qpu), k.qpu_inflight(qpu)]

    def _fenced(self, args: ScriptArgs, lease: Lease) -> Any:
        """Runs a script fenced by `lease` (its arguments carry the lease's token and epoch),
        with the lease's QPU keys."""
        return self.scripts.run(args, keys=self._qpu_keys(lease.qpu))

    def _fenced_all(self, calls: Sequence[tuple[ScriptArgs, Lease]]) -> list[Any]:
        """`_fenced` of each (script arguments, lease), in one round trip: a scheduler serving
        32 QPUs makes one for all their renewals, not 32."""
        if not calls:
            return []
        return self.scripts.run_many([(args, self._qpu_keys(lease.qpu)) for args, lease in calls])
