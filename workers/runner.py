"""One job, from delivery to commit, around an executor (emulator or QPU bridge).

Claim (compare-and-set on the delivery id), heartbeat from a thread while the job runs (with its
progress; a refused heartbeat means the job was cancelled, so the executor is aborted), commit
DONE with the results document or ERROR with a readable message. A job that cannot be built or
run ends ERROR; its batch goes on. A failure of Redis itself is not the job's: the job is left to
the reconciler, which runs it again.
"""

from __future__ import annotations

import logging
import threading

import redis
from celery.exceptions import SoftTimeLimitExceeded
from redis.backoff import ConstantBackoff
from redis.retry import Retry

from core.execution import Execution, JobInputs
from core.liveness import process_name
from core.settings import Settings
from core.timefmt import now_us
from workers.drivers import Aborted
from workers.executors import Executor

log = logging.getLogger("tweezer.worker")

#: Retries of a job's inputs read before a Redis failure is left to the reconciler.
_READ_RETRY = Retry(ConstantBackoff(0.5), retries=2)


class _Progress:
    """Shots done so far, written by the executor, read by the heartbeat."""

    def __init__(self) -> None:
        self.shots = 0

    def __call__(self, shots: int) -> None:
        self.shots = shots


def execute_job(
    execution: Execution, settings: Settings, executor: Executor, job_id: str, delivery: str
) -> str:
    """Runs one delivered job; returns what happened (for logs and tests)."""
    ttl = settings.job_heartbeat_ttl_s
    attempt = execution.claim(job_id, delivery, ttl, now_us(), worker=process_name())
    if attempt is None:
        log.info("job %s: delivery %s is stale, skipped", job_id, delivery)
        return "stale"
    log.info("job %s: attempt %d started", job_id, attempt)
    progress = _Progress()
    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat,
        args=(execution, executor, job_id, delivery, ttl, progress, stop),
        daemon=True,
    )
    beat.start()
    try:
        inputs = _read_inputs(execution, job_id)
    except redis.exceptions.RedisError:
        # The store failed, not the job: nothing is recorded on it. Without heartbeats its
        # deadline passes and the reconciler runs it again (reliability.md, lost worker).
        stop.set()
        raise
    try:
        document = executor.run(inputs, progress)
    except SoftTimeLimitExceeded:
        message = f"The job exceeded the time limit of {settings.job_soft_time_limit_s:g} s."
        return _error(execution, job_id, delivery, message, stop)
    except Aborted:
        return _error(execution, job_id, delivery, "The job was aborted.", stop)
    except Exception as exc:  # Any failure of the user's job is reported on the job.
        log.info("job %s failed: %s", job_id, exc, exc_info=True)
        message = f"{type(exc).__name__}: {exc}".strip()
        return _error(execution, job_id, delivery, message, stop)
    stop.set()
    committed = execution.commit_done(job_id, delivery, document, now_us())
    return "done" if committed else "stale"


def _read_inputs(execution: Execution, job_id: str) -> JobInputs:
    """The job's inputs, read again after a dropped connection (the client reconnects): a read
    may be retried, unlike the scripts, which run once."""
    inputs: JobInputs = _READ_RETRY.call_with_retry(
        lambda: execution.inputs(job_id), lambda _error: None
    )
    return inputs


def _error(
    execution: Execution, job_id: str, delivery: str, message: str, stop: threading.Event
) -> str:
    stop.set()
    # Refused (and only the in-flight entry cleared) if the job was cancelled meanwhile.
    committed = execution.commit_error(job_id, delivery, message[:2000], now_us())
    return "error" if committed else "stale"


def _heartbeat(
    execution: Execution,
    executor: Executor,
    job_id: str,
    delivery: str,
    ttl_s: float,
    progress: _Progress,
    stop: threading.Event,
) -> None:
    while not stop.wait(ttl_s / 3):
        try:
            alive = execution.heartbeat(job_id, delivery, ttl_s, progress.shots, now_us())
        except Exception as exc:  # Redis blips: the next beat may succeed; the deadline decides.
            log.warning("job %s: heartbeat failed: %s", job_id, exc)
            continue
        if not alive:
            # Cancelled, or handed to another worker: stop the device, nothing will be kept.
            executor.abort()
            return
