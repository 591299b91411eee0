"""Records as the SDK's Batch and Job models read them (contract §3.6).

Lists leave out the big fields (`sequence_builder`, `sequence`); single-record responses carry
them, as the SDK's lazy attributes expect.
"""

from __future__ import annotations

from typing import Any

from core.records import Batch, Job, JobAttempt
from core.status import BatchStatus, DeviceStatus, JobStatus
from core.timefmt import to_iso, to_us

#: Above this many jobs a batch response embeds none, and the SDK pages through GET /jobs
#: instead (it must embed all jobs or none).
EMBED_JOBS_MAX = 1000


def batch_json(
    batch: Batch,
    jobs: list[Job] | None = None,
    with_sequence: bool = True,
    device_status: str = DeviceStatus.UP,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": batch.id,
        "open": batch.open,
        "complete": not batch.open,
        "created_at": to_iso(batch.created_us),
        "updated_at": to_iso(batch.updated_us),
        "device_type": batch.device_type,
        "project_id": batch.project_id,
        "user_id": batch.user_id,
        "status": batch.status.value,
        "queue_priority": batch.queue_priority,
        "jobs_count": batch.jobs_count,
        "jobs_count_per_status": batch.counts,
        "webhook": batch.webhook,
        "start_datetime": to_iso(batch.start_us),
        "end_datetime": to_iso(batch.end_us),
        "device_status": device_status,
        "parent_id": batch.parent_id,
        "configuration": batch.configuration,
        "backend_configuration": batch.backend_configuration,
        "tags": batch.tags,
        # Not in the SDK's model: when the batch's sequences were dropped, its retention
        # period after it finished (`sequence_builder` and the jobs' `sequence` are null then).
        "inputs_expired_at": to_iso(batch.inputs_purged_us),
        # Nor these: the scheduling policy run forward (docs/design.md, "Forecasts"): its place
        # among the batches waiting for its device type (1: next), and when it is expected to
        # start and end; null when it is not waiting or running, or not forecast yet.
        **forecast_json(batch),
    }
    if with_sequence:
        data["sequence_builder"] = batch.sequence_builder
    if jobs is not None:
        data["jobs"] = [job_json(job) for job in jobs] if len(jobs) <= EMBED_JOBS_MAX else []
    return data


def batch_document(batch: Batch, job_ids: list[str], device_status: str) -> dict[str, Any]:
    """`GET /api/v2/batches/{id}`'s answer, which is also what its webhook receives: the batch
    without embedded jobs, and their ids in creation order (what qrmi reads)."""
    return {**batch_json(batch, None, True, device_status), "job_ids": job_ids}


def forecast_json(batch: Batch) -> dict[str, Any]:
    f = batch.forecast
    waiting = f is not None and batch.status is BatchStatus.PENDING
    return {
        "queue_position": f.position if f is not None and waiting else None,
        "estimated_start_at": _iso_s(f.start_s) if f is not None and waiting else None,
        "estimated_end_at": _iso_s(f.end_s) if f is not None else None,
        # When that forecast was made: forecasts run beside the scheduler, every few seconds.
        "forecast_at": to_iso(f.at_us) if f is not None and f.at_us else None,
    }


def _iso_s(seconds: float) -> str | None:
    return to_iso(to_us(seconds))


def job_json(job: Job, with_sequence: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": job.id,
        "batch_id": job.batch_id,
        "project_id": job.project_id,
        "user_id": job.user_id,
        "status": job.status.value,
        "created_at": to_iso(job.created_us),
        "updated_at": to_iso(job.updated_us),
        "runs": job.runs,
        "variables": job.variables,
        "errors": job.errors,
        "start_timestamp": to_iso(job.start_us),
        "end_timestamp": to_iso(job.end_us),
        "parent_id": job.parent_id,
        # Not in the SDK's model (it keeps extra fields): shots done while the job runs, and
        # what the API noted at submission without refusing the job.
        "progress": job.runs if job.status is JobStatus.DONE else job.progress,
        "warnings": job.warnings,
        # Nor this: each start on a worker (which QPU and worker process, when, how it ended),
        # so a job that failed or was lost says where and how often.
        "history": [attempt_json(a) for a in job.history],
    }
    if with_sequence:
        # The job's own sequence, or null when it uses the batch's (so `batch.retry` sends
        # `sequence: null` with the variables rather than both).
        data["sequence"] = job.sequence
    return data


def attempt_json(attempt: JobAttempt) -> dict[str, Any]:
    return {
        "attempt": attempt.attempt,
        "qpu": attempt.qpu,
        "worker": attempt.worker,
        "started_at": to_iso(attempt.started_us),
        "ended_at": to_iso(attempt.ended_us),
        "outcome": attempt.outcome,
    }


def batch_status_json(batch: Batch) -> dict[str, Any]:
    return {
        "id": batch.id,
        "status": batch.status.value,
        "jobs_count": batch.jobs_count,
        "jobs_count_per_status": batch.counts,
    }
