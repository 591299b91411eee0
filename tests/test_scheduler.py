"""The scheduler's pass, driven by hand: `Scheduler.run_once(now)` over a real redis-server with
a producer that records what it would send, and a clock that only moves when a test moves it.
Leases, device status windows, timeouts and dispatch order are proved without waiting.

Lease expiry is Redis's own clock (PX), so a test that needs a lease gone deletes its key, as
expiry would.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from core.db import Db
from core.device_status import DeviceStatuses
from core.execution import Execution
from core.liveness import Liveness
from core.status import BatchStatus, DeviceStatus, JobStatus
from core.store import Store
from scheduler.loop import Scheduler
from scheduling.policies import BUILT_IN, load_policy
from tests.conftest import make_settings
from tests.factories import NS, QPU, SECOND, T0, RecordingProducer, Sent, new_batch


@dataclass
class Rig:
    store: Store
    scheduler: Scheduler
    producer: RecordingProducer
    execution: Execution
    devices: DeviceStatuses

    def another_scheduler(self) -> tuple[Scheduler, RecordingProducer]:
        producer = RecordingProducer()
        return Scheduler(self.scheduler.settings, self.store.db, producer), producer

    def run_jobs(self, sent: list[Sent], now: int) -> None:
        """Workers claim and finish every job in `sent`."""
        for message in sent:
            assert self.execution.claim(message.job_id, message.delivery_id, 15, now) == 1
            assert self.execution.commit_done(
                message.job_id, message.delivery_id, {"counter": {"0": 1}}, now
            )

    def status(self, batch_id: str) -> BatchStatus:
        batch = self.store.get_batch(batch_id)
        assert batch is not None
        return batch.status


@pytest.fixture(params=list(BUILT_IN))
def rig(redis_only, request) -> Rig:
    """A rig under each built-in policy: leases, fencing, device windows and timeouts are the
    grant's and the pass's, and must hold whichever policy chooses."""
    return make_rig(redis_only, request.param)


def make_rig(redis_only, policy: str) -> Rig:
    settings = make_settings(
        "redis://127.0.0.1:1/0",  # unused: the scheduler gets its client
        namespace=NS,
        qpus={"EMU_FREE": 1},
        worker_concurrency=2,
        dispatch_timeout_s=5.0,
        dispatch_chunk_s=0.0,  # one job per message: leases and fencing, job by job
        open_batch_timeout_s=60.0,
        open_batch_contended_idle_s=10.0,
        policy=policy,
    )
    producer = RecordingProducer()
    scheduler = Scheduler(settings, Db.of(redis_only, settings.namespace), producer)
    return Rig(
        Store(Db.of(redis_only, NS)),
        scheduler,
        producer,
        Execution(Db.of(redis_only, NS)),
        DeviceStatuses(Db.of(redis_only, NS)),
    )


def ids(sent: list[Sent]) -> list[str]:
    return [message.job_id for message in sent]


def test_a_pass_grants_the_oldest_batch_and_sends_its_jobs_in_creation_order(rig):
    first, first_jobs = new_batch(rig.store, runs=(1, 2, 3), now=T0)
    second, _ = new_batch(rig.store, runs=(4,), now=T0 + SECOND)
    rig.scheduler.run_once(T0 + 2 * SECOND)
    sent = rig.producer.take()
    # Two in flight (worker_concurrency), to the QPU's own queue, oldest jobs first.
    assert ids(sent) == [job.id for job in first_jobs[:2]]
    assert {message.queue for message in sent} == {f"qpu.{QPU}"}
    assert rig.status(first.id) is BatchStatus.RUNNING
    assert rig.status(second.id) is BatchStatus.PENDING

    rig.scheduler.run_once(T0 + 3 * SECOND)
    assert rig.producer.take() == []  # the QPU is full: nothing more until a job ends
    rig.run_jobs(sent[:1], T0 + 4 * SECOND)
    rig.scheduler.run_once(T0 + 4 * SECOND)
    assert ids(rig.producer.take()) == [first_jobs[2].id]


def test_fair_share_serves_higher_priority_first_then_the_project_with_less_qpu_time(redis_only):
    rig = make_rig(redis_only, "fair-share")
    low, _ = new_batch(rig.store, runs=(1,), priority="LOW", project="a", now=T0)
    a1, _ = new_batch(rig.store, runs=(1,), project="a", now=T0 + 1)
    a2, _ = new_batch(rig.store, runs=(1,), project="a", now=T0 + 2)
    b1, _ = new_batch(rig.store, runs=(1,), project="b", now=T0 + 3)
    high, _ = new_batch(rig.store, runs=(1,), priority="HIGH", project="b", now=T0 + 4)
    order = []
    now = T0 + SECOND
    for _ in range(5):
        rig.scheduler.run_once(now)
        order.append(rig.scheduler.leases[QPU].batch_id)
        rig.run_jobs(rig.producer.take(), now)
        now += SECOND
    # HIGH first; then MEDIUM alternating between projects (b has just had a second of QPU
    # time, so a goes, then b, then a again); LOW last.
    assert order == [high.id, a1.id, b1.id, a2.id, low.id]


def test_no_batch_starts_inside_a_calibration_window(rig):
    rig.devices.add_calibration("EMU_FREE", T0, T0 + 10 * SECOND, T0)
    batch, jobs = new_batch(rig.store, runs=(1,), now=T0)
    for moment in (T0 + SECOND, T0 + 9 * SECOND):
        rig.scheduler.run_once(moment)
        assert rig.producer.take() == [] and rig.status(batch.id) is BatchStatus.PENDING
    rig.scheduler.run_once(T0 + 10 * SECOND + 1)
    assert ids(rig.producer.take()) == [jobs[0].id]


def test_a_device_in_maintenance_pauses_its_batch_until_it_is_up(rig):
    batch, jobs = new_batch(rig.store, runs=(1, 2, 3), now=T0)
    rig.scheduler.run_once(T0)
    rig.run_jobs(rig.producer.take(), T0)
    rig.devices.set("EMU_FREE", DeviceStatus.MAINTENANCE, "laser", T0)
    for moment in (T0 + SECOND, T0 + 600 * SECOND):
        rig.scheduler.run_once(moment)
        assert rig.producer.take() == []  # it keeps the QPU; its last job waits
    assert rig.status(batch.id) is BatchStatus.RUNNING
    rig.devices.set("EMU_FREE", DeviceStatus.UP, "", T0)
    rig.scheduler.run_once(T0 + 601 * SECOND)
    assert ids(rig.producer.take()) == [jobs[2].id]


def test_a_dispatch_nobody_claims_is_sent_again_after_the_dispatch_timeout(rig):
    _, [job] = new_batch(rig.store, runs=(1,), now=T0)
    rig.scheduler.run_once(T0)
    [first] = rig.producer.take()
    rig.scheduler.run_once(T0 + 5 * SECOND - 1)
    assert rig.producer.take() == []  # not yet
    rig.scheduler.run_once(T0 + 5 * SECOND + 1000)
    [again] = rig.producer.take()
    assert again.job_id == job.id and again.delivery_id != first.delivery_id
    assert rig.execution.claim(job.id, first.delivery_id, 15, T0 + 6 * SECOND) is None
    assert rig.execution.claim(job.id, again.delivery_id, 15, T0 + 6 * SECOND) == 1


def test_an_idle_open_batch_gives_the_qpu_to_another_project_waiting(rig):
    held, _ = new_batch(rig.store, runs=(), open_=True, project="a", now=T0)
    rig.scheduler.run_once(T0)
    waiting, [job] = new_batch(rig.store, runs=(1,), project="b", now=T0 + SECOND)
    rig.scheduler.run_once(T0 + 9 * SECOND)
    assert rig.producer.take() == [] and rig.status(held.id) is BatchStatus.RUNNING
    # Idle for the contended limit while project b waits: it ends, and b gets the QPU at once.
    rig.scheduler.run_once(T0 + 10 * SECOND)
    assert rig.status(held.id) is BatchStatus.TIMED_OUT
    assert ids(rig.producer.take()) == [job.id]
    assert rig.scheduler.leases[QPU].batch_id == waiting.id


def test_a_released_session_frees_its_qpu_in_the_next_pass(rig):
    """A Slurm job's session (qrmi pasqal-local) is an open batch: its tasks done, the job
    releases it (the batch is closed) and the very next pass gives the QPU to the batch of
    the Slurm job waiting."""
    held, [task] = new_batch(rig.store, runs=(1,), open_=True, project="a", now=T0)
    rig.scheduler.run_once(T0)
    rig.run_jobs(rig.producer.take(), T0 + SECOND)
    waiting, [job] = new_batch(rig.store, runs=(1,), project="b", now=T0 + SECOND)
    rig.scheduler.run_once(T0 + 2 * SECOND)
    assert rig.scheduler.leases[QPU].batch_id == held.id  # kept between the job's tasks
    rig.store.close_batch(held.id, T0 + 3 * SECOND, "a-user")  # DELETE /sessions/{id}
    rig.scheduler.run_once(T0 + 3 * SECOND)
    assert rig.status(held.id) is BatchStatus.DONE
    assert rig.scheduler.leases[QPU].batch_id == waiting.id
    assert ids(rig.producer.take()) == [job.id] and task.id != job.id


def test_a_finished_batch_keeps_the_qpu_until_its_last_job_is_in(rig):
    first, _ = new_batch(rig.store, runs=(1, 2), now=T0)
    second, _ = new_batch(rig.store, runs=(1,), project="b", now=T0 + 1)
    rig.scheduler.run_once(T0)
    sent = rig.producer.take()
    rig.execution.claim(sent[0].job_id, sent[0].delivery_id, 15, T0)
    rig.store.cancel_batch(first.id, T0, "u")  # its running job is still on the QPU
    rig.scheduler.run_once(T0 + SECOND)
    assert rig.producer.take() == [] and rig.scheduler.leases[QPU].batch_id == first.id
    # The worker lets go (its result is refused): the QPU goes to the next batch.
    assert not rig.execution.commit_done(sent[0].job_id, sent[0].delivery_id, {}, T0)
    rig.scheduler.run_once(T0 + 2 * SECOND)
    assert rig.scheduler.leases[QPU].batch_id == second.id
    assert len(rig.producer.take()) == 1


def test_a_scheduler_that_lost_its_lease_sends_nothing_and_the_new_holder_resumes(rig):
    batch, jobs = new_batch(rig.store, runs=(1, 2, 3), now=T0)
    rig.scheduler.run_once(T0)
    sent = rig.producer.take()
    rig.store.redis.delete(rig.store.keys.qpu_lease(QPU))  # its lease expired
    other, other_producer = rig.another_scheduler()
    other.run_once(T0 + SECOND)
    assert other.leases[QPU].batch_id == batch.id  # the same batch, under a new epoch
    assert other.leases[QPU].epoch == rig.scheduler.leases[QPU].epoch + 1
    rig.run_jobs(sent, T0 + SECOND)  # work already running under the old epoch is kept
    rig.scheduler.run_once(T0 + 2 * SECOND)  # the old holder wakes up
    assert rig.producer.take() == [] and QPU not in rig.scheduler.leases
    other.run_once(T0 + 2 * SECOND)
    assert ids(other_producer.take()) == [jobs[2].id]
    assert [j.status for j in rig.store.batch_jobs(batch.id)][:2] == [JobStatus.DONE] * 2


class RacingPolicy:
    """Wraps a policy: between its choice and the grant, the other scheduler makes a whole
    pass (the widest window a race between two schedulers can have; one level deep)."""

    def __init__(self, inner, now: int) -> None:
        self.inner, self.now = inner, now
        self.name, self.window = inner.name, inner.window
        self.other: Scheduler | None = None
        self.racing = False

    def choose(self, snapshot):
        choice = self.inner.choose(snapshot)
        other = self.other
        if other is not None and not other.policy.racing:
            self.racing = True
            try:
                other.run_once(self.now)
            finally:
                self.racing = False
        return choice


@pytest.mark.parametrize("policy", list(BUILT_IN))
def test_racing_schedulers_grant_each_qpu_once(redis_only, policy):
    """Whichever scheduler chooses, the other grants its own choice before that choice's
    grant: the late grant finds the QPU held and writes nothing; each batch runs once, one at
    a time."""
    rig = make_rig(redis_only, policy)
    batches = [
        new_batch(rig.store, runs=(1,), project=p, now=T0 + i)[0] for i, p in enumerate("abc")
    ]
    other, other_producer = rig.another_scheduler()
    pair = [(rig.scheduler, rig.producer), (other, other_producer)]
    for mine, theirs in ((rig.scheduler, other), (other, rig.scheduler)):
        mine.policy = RacingPolicy(load_policy(policy), T0)
        mine.policy.other = theirs
    now, first, granted = T0 + SECOND, rig.scheduler, []
    while len(granted) < len(batches):
        for scheduler, _ in pair:
            scheduler.policy.now = now
        first.run_once(now)  # releases what it holds, chooses; the other grants meanwhile
        sent = [(s, m) for s, producer in pair for m in producer.take()]
        assert len(sent) == 1  # one grant, one job sent
        running = [b for b in rig.store.get_batches(b.id for b in batches)]
        assert [b.status for b in running].count(BatchStatus.RUNNING) == 1
        granted.append(next(b.id for b in running if b.status is BatchStatus.RUNNING))
        holder, message = sent[0]
        assert holder is not first and QPU in holder.leases and QPU not in first.leases
        rig.run_jobs([message], now)
        now += SECOND
        first = holder  # next round, the holder releases and races the other
    assert sorted(granted) == sorted(b.id for b in batches)


def test_readiness_follows_scheduler_passes_and_worker_announcements(rig):
    """Ready while a scheduler passed and every configured QPU's worker announced itself in
    the last 30 s; past that, it says what is missing."""
    liveness = Liveness(rig.store.redis, NS)
    assert not liveness.readiness([QPU], T0).ready  # nobody yet
    rig.scheduler.run_once(T0)
    rig.scheduler.control.announce(QPU, T0)
    assert liveness.readiness([QPU], T0 + 10 * SECOND).ready
    later = liveness.readiness([QPU, "EMU_FREE-1"], T0 + 10 * SECOND)
    assert not later.ready and later.missing() == [
        "no worker of EMU_FREE-1 announced itself in the last 30 s"
    ]
    stale = liveness.readiness([QPU], T0 + 31 * SECOND)
    assert stale.schedulers == 0 and stale.qpus == {QPU: False}
