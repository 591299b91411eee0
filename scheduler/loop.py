"""The scheduler: leases QPUs to batches, dispatches their jobs, and recovers what was lost.

One pass over every QPU of the cluster: renew the leases it holds (a lost lease is dropped at
once, before anything else), recover jobs whose worker vanished, end open batches that held
their QPU too long, release QPUs whose batch is finished (counting its project's usage), grant
each free QPU to the batch it was serving or the waiting batch the cluster's policy chooses
(scheduling/policies.py; the grant itself is fenced in Lua), dispatch the jobs of each held
QPU's batch in creation order, in chunks (dispatch.lua). Forecasts of when waiting batches
start are made by a process of its own (scheduler/forecaster.py): a pass never waits for one.
Every write is fenced by the lease, so several schedulers may run at once: at most one holds a
given QPU, and a paused one that lost its lease writes nothing when it wakes. A thread of its
own announces finished batches to their webhooks (scheduler/webhooks.py). Between passes it
sleeps on the wake-up list, which the API and the workers poke when there is something to do.
"""

from __future__ import annotations

import logging
import threading

import redis
from celery import Celery

from core.celery_config import RUN_JOBS_TASK, celery_config
from core.db import Db, open_db
from core.device_types import device_type_of_qpu, qpu_names
from core.keys import Keys
from core.liveness import Liveness, alive_since, process_name
from core.qpu import PRESENCE_TTL_S, Lease, OpenBatchHold, QpuControl
from core.settings import Settings
from core.store import Store
from core.timefmt import SECOND_US, now_us
from scheduler import forecaster
from scheduler.reader import Rank, SnapshotCache, SnapshotReader
from scheduler.webhooks import WebhookSender
from scheduling.policies import load_policy

log = logging.getLogger("tweezer.scheduler")


class Scheduler:
    def __init__(self, settings: Settings, db: Db, producer: Celery) -> None:
        self.settings = settings
        self.redis = client = db.client
        self.producer = producer
        self.control = QpuControl(db)
        self.keys = Keys(settings.namespace)
        #: The QPUs of TWEEZER_QPUS, always served; workers may announce more (serving()).
        self.configured_qpus = qpu_names(settings.qpus)
        self.leases: dict[str, Lease] = {}
        self.hold = OpenBatchHold.from_settings(settings)
        self.store = Store(db)
        self.policy = load_policy(settings.policy)
        #: The policy's `rank`, when it has one: then a grant looks only at the batches that
        #: can be its choice (SnapshotReader.read_ranked).
        self.rank: Rank | None = getattr(self.policy, "rank", None)
        self.snapshots = SnapshotReader(db, settings.fair_share_half_life_s)
        #: Per device type, what its snapshots read before (a grant reads what changed).
        self.cache: dict[str, SnapshotCache] = {}
        self.liveness = Liveness(client, settings.namespace)
        #: How readiness (GET /readyz) knows this scheduler, and when it last said it was alive.
        self.scheduler_id = process_name()
        self.announced_us = 0
        #: The leases it held when it last announced itself.
        self.announced: list[str] = []

    def run(self, stop: threading.Event) -> None:
        """Passes until `stop` is set; Redis outages are waited out, never fatal."""
        log.info(
            "scheduler serving QPUs %s under the %s policy",
            ", ".join(self.configured_qpus),
            self.policy.name,
        )
        while not stop.is_set():
            try:
                self.run_once()
                self.redis.blpop([self.keys.wakeup()], timeout=self.settings.scheduler_tick_s)
            except redis.exceptions.ConnectionError as exc:
                log.warning("redis unavailable (%s); retrying", exc)
                stop.wait(1.0)
            except Exception:
                # A failed publish or any surprise must not stop scheduling: every write is
                # fenced and idempotent, so the next pass simply tries again.
                log.exception("scheduler pass failed; retrying")
                stop.wait(1.0)

    def serving(self, now: int) -> list[str]:
        """The configured QPUs, and those of the same device types that workers on other hosts
        announced within the last PRESENCE_TTL_S (a QPU whose workers left is not granted new
        batches; one it was serving keeps being driven while the scheduler holds its lease)."""
        served = self.control.served(self.settings.qpus, alive_since(now))
        return [*served, *(q for q in self.leases if q not in served)]

    def run_once(self, now: int | None = None) -> None:
        now = now_us() if now is None else now
        serving = self.serving(now)
        self.serve(serving, now)
        for device_type, cache in self.cache.items():
            self.snapshots.catch_up(device_type, self.policy.window, cache, now, self.rank)
        # As often as workers announce their QPUs: passes come on every job's commit, and
        # readiness needs no more than one in PRESENCE_TTL_S.
        # And whenever the leases it holds change, so `tweezer status` shows who holds what.
        held = sorted(self.leases)
        if now - self.announced_us >= PRESENCE_TTL_S / 6 * SECOND_US or held != self.announced:
            self.liveness.scheduler_passed(self.scheduler_id, now, held)
            self.announced_us, self.announced = now, held
        if self.store.purge_inputs(self.settings.input_retention_s, now):
            log.info("dropped the sequences of batches past their retention")

    def serve(self, serving: list[str], now: int) -> None:
        """One step of each QPU's life, every QPU at once: each step is one round trip for
        all the leases it concerns (a pass over 32 QPUs made 160 of them), and each QPU still
        goes through them in order: renewed, reconciled, timed out, released, granted,
        dispatched."""
        s = self.settings
        held = [self.leases[qpu] for qpu in serving if qpu in self.leases]
        for lease, kept in zip(held, self.control.renew_all(held, s.lease_ttl_s), strict=True):
            if not kept:
                log.warning("lost the lease of %s (epoch %s)", lease.qpu, lease.epoch)
                del self.leases[lease.qpu]
        held = [lease for lease in held if lease.qpu in self.leases]
        recovered = self.control.reconcile_all(held, s.max_attempts, now)
        for lease, found in zip(held, recovered, strict=True):
            if found.requeued or found.failed:
                log.warning(
                    "%s: %d job(s) requeued, %d failed after lost workers",
                    lease.qpu,
                    found.requeued,
                    found.failed,
                )
        timed_out = self.control.expire_open_batches(held, self.hold, now)
        for lease, why in zip(held, timed_out, strict=True):
            if why:
                log.info("%s: open batch %s timed out (%s)", lease.qpu, lease.batch_id, why)
        released = self.control.release_all(held, s.fair_share_half_life_s, now)
        for lease, free in zip(held, released, strict=True):
            if free:
                log.info("%s: released by batch %s", lease.qpu, lease.batch_id)
                del self.leases[lease.qpu]
        for qpu in serving:
            if qpu not in self.leases:
                self.grant(qpu, now, serving)
        held = [self.leases[qpu] for qpu in serving if qpu in self.leases]
        pools = [(lease, s.pool_size(device_type_of_qpu(lease.qpu))) for lease in held]
        dispatched = self.control.dispatch_all(
            pools, s.dispatch_timeout_s, now, chunk_s=s.dispatch_chunk_s
        )
        for lease, chunks in zip(held, dispatched, strict=True):
            for chunk in chunks:
                # If this send is lost, the dispatch deadline makes the reconciler send it
                # again.
                self.producer.send_task(
                    RUN_JOBS_TASK,
                    args=[chunk.delivery_id, list(chunk.job_ids)],
                    queue=Keys.celery_queue(lease.qpu),
                )

    def grant(self, qpu: str, now: int, serving: list[str]) -> None:
        """Leases the free `qpu` to the batch it was serving or the one the policy chooses."""
        lease = self.control.acquire(
            qpu, self.settings.lease_ttl_s, now, lambda: self.choose(qpu, serving, now)
        )
        if lease is not None:
            log.info("%s: leased to batch %s (epoch %s)", qpu, lease.batch_id, lease.epoch)
            self.leases[qpu] = lease

    def choose(self, qpu: str, serving: list[str], now: int) -> str | None:
        """The policy's choice for the free `qpu`, from a snapshot of its device type."""
        device_type = device_type_of_qpu(qpu)
        siblings = [q for q in _of_type(device_type, serving) if q != qpu]
        cache = self.cache.setdefault(device_type, SnapshotCache())
        window = self.policy.window
        if self.rank is not None:
            snapshot = self.snapshots.read_ranked(
                device_type, siblings, window, now, cache, self.rank
            )
        else:
            snapshot = self.snapshots.read(device_type, siblings, window, now, cache)
        chosen = self.policy.choose(snapshot)
        return None if chosen is None else chosen.id


def _of_type(device_type: str, qpus: list[str]) -> list[str]:
    return [q for q in qpus if device_type_of_qpu(q) == device_type]


def make_producer(settings: Settings) -> Celery:
    """The Celery app the scheduler sends with, warmed: Celery imports its result backend and
    builds its producer pool on the first send, which made a new scheduler's first grant 30-40
    ms late (measured by bench/scale.py)."""
    producer = Celery("tweezer-scheduler")
    producer.conf.update(celery_config(settings))
    _ = producer.backend, producer.amqp.producer_pool
    return producer


def main(settings: Settings) -> None:
    """`tweezer scheduler`: runs until SIGTERM/SIGINT."""
    import signal

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    db = open_db(settings)
    if changed := Store(db).migrate():
        log.info("brought %d record(s) of an earlier version up to date", changed)
    # Its own thread: a slow receiver never delays a lease renewal or a dispatch.
    sender = WebhookSender(db, settings)
    threading.Thread(target=sender.run, args=(stop,), name="tweezer-webhooks", daemon=True).start()
    forecasts = forecaster.start(settings)
    try:
        Scheduler(settings, db, make_producer(settings)).run(stop)
    finally:
        forecaster.stop(forecasts)
    log.info("scheduler stopped")
