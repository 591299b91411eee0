"""A delivery's jobs, from claim to commit, around an executor (emulator or QPU bridge).

A delivery is a chunk of one batch's jobs (dispatch.lua sizes it by their predicted time; an
expensive or retried job comes alone). The worker claims the chunk in one script, which also
returns every job's inputs; runs the jobs one after another, each under its own soft time
limit; heartbeats from a thread for every job not committed yet, with the progress of the one
running (a job the heartbeat finds cancelled is aborted if running, skipped if not); and
commits the outcomes in groups: at once when jobs take long, every COMMIT_EVERY_S when they are
quick, so one script and one fsync serve many jobs. A job that cannot be built or run ends
ERROR; the others go on. A failure of Redis itself is not the jobs': they are left to the
reconciler, which runs them again.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from celery.exceptions import SoftTimeLimitExceeded
from redis.backoff import ConstantBackoff
from redis.retry import Retry

from core.execution import Claim, ClaimedRun, Execution, Outcome
from core.liveness import process_name
from core.settings import Settings
from core.timefmt import now_us
from workers.drivers import Aborted
from workers.executors import Executor

log = logging.getLogger("tweezer.worker")

#: Retries of a claim after a dropped connection before the jobs are left to the reconciler: a
#: claim whose reply was lost finds this worker's jobs again (claim_jobs.lua).
_CLAIM_RETRY = Retry(ConstantBackoff(0.5), retries=2)

#: Finished jobs wait at most this long for their commit, so quick jobs share one.
COMMIT_EVERY_S = 0.2


class _Chunk:
    """What the heartbeat thread shares with the jobs' loop: the jobs not committed yet, the
    one running and its shots, and the jobs found no longer ours."""

    def __init__(self, job_ids: Sequence[str]) -> None:
        self.lock = threading.Lock()
        self.uncommitted = list(job_ids)
        self.current = ""
        self.shots = 0
        self.lost: set[str] = set()

    def progress(self, shots: int) -> None:
        self.shots = shots

    def start(self, job_id: str) -> None:
        with self.lock:
            self.current, self.shots = job_id, 0

    def committed(self, job_ids: Sequence[str]) -> None:
        with self.lock:
            done = set(job_ids)
            self.uncommitted = [j for j in self.uncommitted if j not in done]

    def snapshot(self) -> tuple[list[str], str, int]:
        with self.lock:
            return list(self.uncommitted), self.current, self.shots

    def lose(self, job_ids: Iterable[str], running: str, abort: Callable[[], None]) -> None:
        """`job_ids` are no longer ours; if `running` is among them and still runs, `abort`
        stops it (under the lock: never the job started after it)."""
        with self.lock:
            self.lost.update(job_ids)
            if running in self.lost and self.current == running:
                abort()


def execute_chunk(
    execution: Execution,
    settings: Settings,
    executor: Executor,
    delivery: str,
    job_ids: Sequence[str],
) -> dict[str, str]:
    """Runs a delivery's jobs; returns what happened to each (for logs and tests): done, error
    or stale (another delivery owns it, or it was cancelled)."""
    ttl = settings.job_heartbeat_ttl_s
    claim = _claim(execution, delivery, job_ids, ttl)
    happened = {job_id: "stale" for job_id in job_ids}
    for job_id, stale in claim.stale.items():
        log.info("job %s: delivery %s is stale (%s), skipped", job_id, delivery, stale.status)
    if not claim.runs:
        return happened
    chunk = _Chunk([run.job_id for run in claim.runs])
    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat,
        args=(execution, executor, delivery, ttl, chunk, stop),
        daemon=True,
    )
    beat.start()
    pending: list[Outcome] = []
    flushed = time.monotonic()
    try:
        for run in claim.runs:
            if run.job_id in chunk.lost:
                # Cancelled (or given to another worker) before it started: not run. Its
                # commit stores nothing and takes it off the QPU's in-flight set now, so a
                # cancelled batch frees the QPU without waiting for its deadline.
                log.info("job %s: no longer this delivery's, not run", run.job_id)
                pending.append(Outcome.error(run.job_id, "The job was not run."))
                continue
            chunk.start(run.job_id)
            pending.append(_run(settings, executor, run, chunk))
            if time.monotonic() - flushed >= COMMIT_EVERY_S:
                happened.update(_commit(execution, delivery, pending, chunk))
                pending, flushed = [], time.monotonic()
        happened.update(_commit(execution, delivery, pending, chunk))
    finally:
        # Redis failed (the exception goes on): nothing is recorded on the jobs left; without
        # heartbeats their deadlines pass and the reconciler runs them again.
        stop.set()
    return happened


def execute_job(
    execution: Execution, settings: Settings, executor: Executor, job_id: str, delivery: str
) -> str:
    """One job, as a one-job chunk (messages of schedulers before chunks)."""
    return execute_chunk(execution, settings, executor, delivery, [job_id])[job_id]


def _claim(execution: Execution, delivery: str, job_ids: Sequence[str], ttl_s: float) -> Claim:
    claim: Claim = _CLAIM_RETRY.call_with_retry(
        lambda: execution.claim_jobs(delivery, job_ids, ttl_s, now_us(), worker=process_name()),
        lambda _error: None,
    )
    for run in claim.runs:
        log.info("job %s: attempt %d started", run.job_id, run.attempt)
    return claim


def _run(settings: Settings, executor: Executor, run: ClaimedRun, chunk: _Chunk) -> Outcome:
    """Runs one job under its soft time limit; its outcome, DONE or ERROR."""
    started_us, started = now_us(), time.monotonic()

    def error(message: str) -> Outcome:
        return Outcome.error(run.job_id, message[:2000], started_us, time.monotonic() - started)

    try:
        with _time_limit(settings.job_soft_time_limit_s):
            document = executor.run(run.inputs, chunk.progress)
    except SoftTimeLimitExceeded:
        return error(f"The job exceeded the time limit of {settings.job_soft_time_limit_s:g} s.")
    except Aborted:
        return error("The job was aborted.")
    except Exception as exc:  # Any failure of the user's job is reported on the job.
        log.info("job %s failed: %s", run.job_id, exc, exc_info=True)
        return error(f"{type(exc).__name__}: {exc}".strip())
    seconds = time.monotonic() - started
    return Outcome.done(run.job_id, document, started_us, seconds, executor.notes)


def _commit(
    execution: Execution, delivery: str, outcomes: list[Outcome], chunk: _Chunk
) -> dict[str, str]:
    """Stores `outcomes` in one script; a job cancelled meanwhile stores nothing (stale)."""
    if not outcomes:
        return {}
    stale = execution.commit_jobs(delivery, outcomes, now_us())
    chunk.committed([o.job_id for o in outcomes])
    return {o.job_id: "stale" if o.job_id in stale else o.status.value.lower() for o in outcomes}


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raises SoftTimeLimitExceeded in the job after `seconds`: a pool process runs its jobs on
    its main thread, one at a time, so SIGALRM interrupts the one running (elsewhere, e.g.
    a thread, the job runs unlimited: the hard limit still holds)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(_signum: int, _frame: object) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _heartbeat(
    execution: Execution,
    executor: Executor,
    delivery: str,
    ttl_s: float,
    chunk: _Chunk,
    stop: threading.Event,
) -> None:
    while not stop.wait(ttl_s / 3):
        job_ids, current, shots = chunk.snapshot()
        if not job_ids:
            continue
        try:
            stale = execution.heartbeat_jobs(delivery, job_ids, ttl_s, now_us(), current, shots)
        except Exception as exc:  # Redis blips: the next beat may succeed; the deadline decides.
            log.warning("delivery %s: heartbeat failed: %s", delivery, exc)
            continue
        # Cancelled, or handed to another worker: stop the device, nothing will be kept.
        chunk.lose(stale, current, executor.abort)
