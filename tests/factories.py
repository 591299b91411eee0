"""What tests build their worlds from: the store's fixtures (a namespace, a fixed clock, a batch
of jobs), QpuControl as the scheduler drives it, a producer that records what a scheduler pass
sends, and `tweezer up` started as the README starts it. Test modules import from here, never
from one another."""

from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass, field

import redis

from core.celery_config import RUN_JOBS_TASK
from core.db import Db
from core.device_types import device_type_of_qpu
from core.execution import Execution
from core.qpu import QpuControl
from core.records import Batch, Job
from core.status import BatchStatus, JobStatus
from core.store import Store
from core.timefmt import SECOND_US
from scheduler.reader import SnapshotReader
from scheduling.policies import FairShare

NS = "t"
QPU = "EMU_FREE-0"
T0 = 1_800_000_000_000_000  # µs
SECOND = SECOND_US


def new_batch(
    store: Store,
    runs=(10, 20),
    open_=False,
    priority="MEDIUM",
    now=T0,
    tags=(),
    project="p",
    sequence=None,
    reserved_bytes=0,
):
    batch = Batch(
        id=str(uuid.uuid4()),
        project_id=project,
        user_id="u",
        device_type="EMU_FREE",
        status=BatchStatus.PENDING,
        open=open_,
        queue_priority=priority,
        created_us=0,
        updated_us=0,
        sequence_builder="{}",
        tags=list(tags),
    )
    jobs = [
        Job(
            id=str(uuid.uuid4()),
            batch_id=batch.id,
            project_id=project,
            user_id="u",
            status=JobStatus.PENDING,
            runs=r,
            created_us=0,
            updated_us=0,
            sequence=sequence,
            reserved_bytes=reserved_bytes,
        )
        for r in runs
    ]
    store.create_batch(batch, jobs, now)
    return batch, jobs


WEEK_S = 7 * 86_400.0


class Granting(QpuControl):
    """QpuControl as the scheduler drives it, with the default policy (fair share) choosing
    from the live snapshot when a test does not say who to grant."""

    def acquire(self, qpu, ttl_s, now, choose=None):
        if choose is None:
            policy = FairShare()
            reader = SnapshotReader(Db.of(self.redis, self.keys.namespace), WEEK_S)

            def choose():
                snapshot = reader.read(device_type_of_qpu(qpu), [], policy.window, now)
                chosen = policy.choose(snapshot)
                return None if chosen is None else chosen.id

        return super().acquire(qpu, ttl_s, now, choose)

    def release(self, lease, usage_half_life_s=WEEK_S, now=T0):
        return super().release(lease, usage_half_life_s, now)


def store_parts(client: redis.Redis) -> tuple[Store, Granting, Execution]:
    """The store, the QPU control and the workers' side, on one Redis handle."""
    db = Db.of(client, NS)
    return Store(db), Granting(db), Execution(db)


@dataclass
class Sent:
    job_id: str
    delivery_id: str
    queue: str


@dataclass
class RecordingProducer:
    """Stands in for Celery: the jobs a pass sends, in order, one Sent per job of each chunk
    (`messages` counts the chunks)."""

    sent: list[Sent] = field(default_factory=list)
    messages: int = 0

    def send_task(self, name: str, args: list, queue: str) -> None:
        assert name == RUN_JOBS_TASK
        delivery_id, job_ids = args
        self.messages += 1
        self.sent += [Sent(job_id, delivery_id, queue) for job_id in job_ids]

    def take(self) -> list[Sent]:
        taken, self.sent = self.sent, []
        return taken


def tweezer_up(port: int, data_dir, *options: str, **popen: object) -> subprocess.Popen:
    """`tweezer up` as the README runs it (a fast virtual QPU), in the background."""
    argv = [
        sys.executable,
        "-m",
        "cli.main",
        "up",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--bridge-speedup",
        "100",
        *options,
    ]
    return subprocess.Popen(argv, **popen)  # type: ignore[call-overload]
