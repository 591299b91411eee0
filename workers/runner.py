"""One job, from delivery to commit, around the pure `run_emulation`.

Claim (compare-and-set on the delivery id), heartbeat from a thread while the emulation runs,
commit DONE with the results document or ERROR with a readable message. A job that cannot be
built or emulated ends ERROR; its batch goes on.
"""

from __future__ import annotations

import logging
import threading

from celery.exceptions import SoftTimeLimitExceeded

from core.execution import Execution
from core.settings import Settings
from core.timefmt import now_us
from workers.emulation import EmulationOptions, run_emulation

log = logging.getLogger("tweezer.worker")


def execute_job(execution: Execution, settings: Settings, job_id: str, delivery: str) -> str:
    """Runs one delivered job; returns what happened (for logs and tests)."""
    ttl = settings.job_heartbeat_ttl_s
    attempt = execution.claim(job_id, delivery, ttl, now_us())
    if attempt is None:
        log.info("job %s: delivery %s is stale, skipped", job_id, delivery)
        return "stale"
    log.info("job %s: attempt %d started", job_id, attempt)
    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat, args=(execution, job_id, delivery, ttl, stop), daemon=True
    )
    beat.start()
    try:
        inputs = execution.inputs(job_id)
        options = EmulationOptions(
            backend_configuration=inputs.backend_configuration,
            with_noise=bool((inputs.configuration or {}).get("with_noise", False)),
        )
        document = run_emulation(inputs.sequence, inputs.variables, inputs.runs, options)
    except SoftTimeLimitExceeded:
        message = f"The job exceeded the time limit of {settings.job_soft_time_limit_s:g} s."
        return _error(execution, job_id, delivery, message, stop)
    except Exception as exc:  # Any failure of the user's job is reported on the job.
        log.info("job %s failed: %s", job_id, exc, exc_info=True)
        message = f"{type(exc).__name__}: {exc}".strip()
        return _error(execution, job_id, delivery, message, stop)
    stop.set()
    committed = execution.commit_done(job_id, delivery, document, now_us())
    return "done" if committed else "stale"


def _error(
    execution: Execution, job_id: str, delivery: str, message: str, stop: threading.Event
) -> str:
    stop.set()
    committed = execution.commit_error(job_id, delivery, message[:2000], now_us())
    return "error" if committed else "stale"


def _heartbeat(
    execution: Execution, job_id: str, delivery: str, ttl_s: float, stop: threading.Event
) -> None:
    while not stop.wait(ttl_s / 3):
        try:
            if not execution.heartbeat(job_id, delivery, ttl_s, now_us()):
                return  # cancelled, or recovered by the scheduler: nothing left to keep alive
        except Exception as exc:  # Redis blips: the next beat may succeed; the deadline decides.
            log.warning("job %s: heartbeat failed: %s", job_id, exc)
