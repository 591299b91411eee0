"""Celery settings shared by the producer (scheduler) and the consumers (workers).

The profile of reliability.md §1.4: JSON only (a pickled message is refused, never run), late
acks with requeue when a pool child dies, one message per process, time limits below the
visibility timeout, pool children replaced on memory, not on a task count. Celery is only the
delivery hint: results and states live in our own keys.
"""

from __future__ import annotations

import ssl
from typing import Any

from core.keys import Keys
from core.settings import Settings

#: The task the scheduler sends and the workers run: a chunk of jobs (delivery id, job ids).
RUN_JOBS_TASK = "tweezer.run_jobs"
#: One job (job id, delivery id): what schedulers before chunks sent; workers still run it.
RUN_JOB_TASK = "tweezer.run_job"


def celery_config(settings: Settings) -> dict[str, Any]:
    transport = {
        "visibility_timeout": settings.visibility_timeout_s,
        "global_keyprefix": Keys(settings.namespace).celery_prefix(),
        "socket_connect_timeout": 2,
        "socket_timeout": 10,
        "health_check_interval": 10,
    }
    tls = settings.redis_tls
    return {
        "broker_url": settings.redis_url,
        # kombu takes redis-py's ssl options as they are (CA, client certificate), for rediss://.
        "broker_use_ssl": {**tls, "ssl_cert_reqs": ssl.CERT_REQUIRED} if tls else None,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_ignore_result": True,
        "result_backend": None,
        "worker_prefetch_multiplier": 1,
        # A pool child is not replaced after so many tasks (each replacement stalled the
        # queue for up to seconds): only when, after a job, it holds more memory than this
        # (QuTiP's state for big registers, anything a job leaked). The caches it keeps are
        # bounded (core/sequences.py).
        "worker_max_tasks_per_child": None,
        "worker_max_memory_per_child": settings.worker_max_memory_mb * 1024,  # in KiB
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
        # The soft limit is each job's, armed by the runner around it (a message may carry a
        # chunk of jobs); the hard limit kills the pool child running a message (a chunk's
        # jobs are predicted to take far less; any it did not commit are retried one by one).
        "task_soft_time_limit": None,
        "task_time_limit": settings.job_hard_time_limit_s,
        "task_create_missing_queues": True,
        "task_default_queue": "unrouted",
        "worker_enable_remote_control": False,
        "worker_send_task_events": False,
    }
