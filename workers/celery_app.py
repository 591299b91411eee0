"""The Celery app of one QPU's worker pool (`tweezer worker --qpu NAME`). The task is thin:
workers/runner.py does the work, with the QPU's executor (emulator or bridge)."""

from __future__ import annotations

from functools import cache

from celery import Celery

from core.celery_config import RUN_JOB_TASK, celery_config
from core.execution import Execution
from core.redis_client import connect
from core.settings import Settings
from workers.executors import Executor, executor_for
from workers.runner import execute_job


def make_celery(settings: Settings, qpu: str) -> Celery:
    app = Celery(f"tweezer-worker-{qpu}")
    app.conf.update(celery_config(settings))

    # Created in the pool child on its first job, never shared across a fork.
    @cache
    def execution() -> Execution:
        return Execution(connect(settings), settings.namespace)

    @cache
    def executor() -> Executor:
        return executor_for(settings, qpu)

    @app.task(name=RUN_JOB_TASK)
    def run_job(job_id: str, delivery: str) -> str:
        return execute_job(execution(), settings, executor(), job_id, delivery)

    return app
