"""The Celery app of one QPU's worker pool (`tweezer worker --qpu NAME`). The tasks are thin:
workers/runner.py does the work, with the QPU's executor (emulator or bridge)."""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

from celery import Celery
from celery.exceptions import TimeLimitExceeded
from celery.signals import worker_ready, worker_shutdown
from celery.worker import state as worker_state

from core.celery_config import RUN_JOB_TASK, RUN_JOBS_TASK, celery_config
from core.db import open_db
from core.execution import Execution
from core.keys import Keys
from core.qpu import QpuControl
from core.settings import Settings
from core.timefmt import now_us
from workers.executors import Executor, executor_for
from workers.presence import announce_forever
from workers.runner import execute_chunk, execute_job
from workers.watchdog import watch


def make_celery(settings: Settings, qpu: str) -> Celery:
    app = Celery(f"tweezer-worker-{qpu}")
    app.conf.update(celery_config(settings))

    # Created in the pool child on its first job, never shared across a fork.
    @cache
    def execution() -> Execution:
        return Execution(open_db(settings))

    @cache
    def executor() -> Executor:
        return executor_for(settings, qpu)

    class JobTask(app.Task):  # type: ignore[name-defined]
        def on_failure(
            self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any
        ) -> None:
            # A hard time limit kills the pool child; Celery then calls this in the worker's
            # main process, which records why on a job that ran alone instead of leaving it to
            # look "lost". Of a chunk, it cannot tell which job ran over: the jobs not committed
            # are lost to the reconciler, which runs each again alone.
            if not isinstance(exc, TimeLimitExceeded):
                return
            if self.name == RUN_JOBS_TASK:
                delivery, job_ids = args
                job_id = job_ids[0] if len(job_ids) == 1 else None
            else:
                job_id, delivery = args
            if job_id is not None:
                limit = settings.job_hard_time_limit_s
                message = f"The job exceeded the hard time limit of {limit:g} s."
                execution().commit_error(job_id, delivery, message, now_us())

    @app.task(name=RUN_JOBS_TASK, base=JobTask)
    def run_jobs(delivery: str, job_ids: list[str]) -> dict[str, str]:
        return execute_chunk(execution(), settings, executor(), delivery, job_ids)

    @app.task(name=RUN_JOB_TASK, base=JobTask)
    def run_job(job_id: str, delivery: str) -> str:
        return execute_job(execution(), settings, executor(), job_id, delivery)

    stop, threads = threading.Event(), list[threading.Thread]()

    @worker_ready.connect(weak=False)
    def start_threads(**_: Any) -> None:
        # In the main process, once it consumes: the watchdog watches the consumer, not the
        # jobs; the announcements tell schedulers this QPU is alive.
        db = open_db(settings)
        queue_key = db.keys.celery_prefix() + Keys.celery_queue(qpu)
        for name, target, args in (
            ("watchdog", watch, (db.client, queue_key, _busy, settings.worker_stall_s, stop)),
            ("presence", announce_forever, (QpuControl(db), qpu, stop)),
        ):
            thread = threading.Thread(target=target, args=args, name=f"tweezer-{name}")
            thread.daemon = True
            thread.start()
            threads.append(thread)

    @worker_shutdown.connect(weak=False)
    def stop_threads(**_: Any) -> None:
        # A clean stop: the presence thread says this worker left (it is not "lost"). One
        # Redis command, but on a loaded host it may wait for a core: 2 s was once too short
        # (the process exited with the departure unsent), and Redis's own timeouts bound it.
        stop.set()
        for thread in threads:
            thread.join(timeout=10)

    return app


def _busy() -> int:
    """Messages this worker has taken and not finished (running, or reserved for its pool)."""
    return len(worker_state.active_requests) + len(worker_state.reserved_requests)
