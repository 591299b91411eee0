"""The Celery app of the worker pools (`celery -A workers.celery_app worker`, or
`tweezer worker --qpu NAME`). The task is thin: workers/runner.py does the work."""

from __future__ import annotations

from functools import cache

from celery import Celery

from core.celery_config import RUN_JOB_TASK, celery_config
from core.execution import Execution
from core.redis_client import connect
from core.settings import Settings
from workers.runner import execute_job


def make_celery(settings: Settings) -> Celery:
    app = Celery("tweezer-worker")
    app.conf.update(celery_config(settings))

    @cache
    def execution() -> Execution:
        # Created in the pool child on its first job, never shared across a fork.
        return Execution(connect(settings), settings.namespace)

    @app.task(name=RUN_JOB_TASK)
    def run_job(job_id: str, delivery: str) -> str:
        return execute_job(execution(), settings, job_id, delivery)

    return app


#: For `celery -A workers.celery_app worker`: settings from the TWEEZER_* environment.
app = make_celery(Settings.from_env())
