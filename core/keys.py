"""Every Redis key the platform writes, under one namespace (`Settings.namespace`).

No other module spells a key. Lua scripts get the same names from `lua_functions()`, rendered from
the table below, so Python and Lua cannot drift apart.

Records
  clock                           string  last creation timestamp handed out, in µs; makes
                                          created_at unique and increasing (creation order)
  batch:{id}                      hash    one batch (fields: core/records.py)
  batch:{id}:jobs                 zset    its job ids, scored by creation time (creation order)
  batch:{id}:pending              list    its job ids waiting for dispatch, head first
  batch:{id}:counts               hash    its job count per JobStatus
  batch:{id}:sequences            hash    sha256 -> text of its jobs' own sequences, each once
                                          (a job names its sequence by `sequence_sha`)
  job:{id}                        hash    one job (fields: core/records.py)
  job:{id}:result                 string  the job's results document (JSON), once DONE

Indexes (zsets of ids scored by creation time; filters intersect them, never scan records)
  idx:batches                     every batch
  idx:batches:{field}:{value}     batches by project_id, user_id, device_type, status, open,
                                  queue_priority, tag
  idx:jobs                        every job
  idx:jobs:{field}:{value}        jobs by project_id, user_id, status, errors
  idx:jobs:runs                   zset  job ids scored by runs (min_runs / max_runs)

Scheduling (the policy chooses in Python: scheduling/policies.py; docs/design.md)
  queue:{device_type}:{priority}  zset    projects with PENDING batches waiting at this level
                                          (score 0: a set the snapshot reads in order)
  queue:{device_type}:{priority}:{project}
                                  zset    that project's waiting batches, by creation time
  snapshot-version:{type}         string  INCR on every change of what a policy's snapshot of
                                          the type is made of (queues, usage)
  snapshot-changes:{type}         zset    "queue|{priority}|{project}" or "usage|{project}"
                                          -> the version that last changed it: a scheduler
                                          reads again only what changed since the version it
                                          read (scheduler/reader.py; one member each)
  shares-version                  string  INCR whenever a project's share changes
  device:{type}:usage             hash    project id -> QPU seconds its batches held QPUs of
                                          the type, decayed to device:{type}:usage-at
  device:{type}:usage-at          hash    project id -> when its usage was last counted (µs)
  device:{type}:costs             hash    atom count -> fitted seconds per job per (1 + µs of
                                          pulse) on this type (core/costs.py)
  forecast:{type}                 hash    batch id -> [position, start, end]: when its waiting
                                          and running batches are expected to start and end,
                                          and @at -> when it was made (core/forecasts.py;
                                          replaced whole, expires)
  forecast-order:{type}           zset    its waiting batches by position, for pages of the
                                          queue (replaced with forecast:{type})
  {key}:staging:{writer}          —       a forecast being written (core/forecasts.py), and
  {key}:old:{writer}                      the one it replaced, freed in the background
  forecast_turn                   string  id of the forecaster whose turn it is
                                          (scheduler/forecaster.py; PX = 3 rounds)
  qpu:{name}:lease                string  lease token of the batch holding the QPU (PX = TTL)
  qpu:{name}:epoch                string  fencing epoch, INCR on every lease grant
  qpu:{name}:batch                string  batch the QPU serves; outlives the lease so a new
                                          scheduler resumes it
  qpu:{name}:inflight             zset    job ids dispatched on the QPU, scored by the deadline
                                          (ms) of their claim or heartbeat
  qpu-presence                    hash    QPU name -> when a worker of it last said it was alive
                                          (µs): how schedulers learn of QPUs added later
  scheduler-presence              hash    scheduler (host:pid) -> its last pass (µs): readiness
                                          (core/liveness.py)
  scheduler-leases                hash    scheduler (host:pid) -> the QPUs whose leases it holds,
                                          space-separated (as of its last announcement)
  worker-presence                 hash    worker ("{qpu}/{host}:{pid}") -> when it last said it
                                          was alive (µs); dropped when it stops cleanly
  deliveries                      string  counter giving each dispatch a unique delivery id
  wakeup                          list    pokes that wake the scheduler before its tick

Webhooks (core/webhooks.py, scheduler/webhooks.py)
  webhooks                        zset    batches whose end is still to be announced to their
                                          webhook, scored by when the next attempt is due (µs);
                                          a claimed delivery is pushed a lease ahead, so one
                                          lost with its sender is made again
  batch:{id}:webhook              list    the delivery attempts: JSON {at, outcome, status,
                                          error, seconds}, oldest first

Counting (core/counters.py; read by /metrics and `tweezer status`)
  totals                          hash    "batch|job:{device type}:{status}" -> how many now
  counters                        hash    counters and histogram buckets of what happened
  throughput:{slot}               string  jobs finished in that 10-second slot (expires)

Retention
  retention                       zset    finished batches whose sequences are still kept,
                                          scored by when they finished (µs)

Idempotency
  idempotency:{user}:{sha256 of key}  string  JSON {fingerprint, batch_id} of the first POST that
                                          carried this Idempotency-Key (expires)

Devices
  device:{type}                   hash    status (DeviceStatus; absent = UP), reason, updated_us
  device:{type}:calibrations      zset    calibration windows "start_us:end_us", by start
                                          (calibration_window() below)
  device:{type}:history           zset    "at_us:STATUS" of each status set and
                                          "start_us:<window>" of each calibration window, by
                                          time (the newest 10,000): when it was out of service

Accounts
  token:{sha256 of token}         hash    user_id, token_id, expires_us of an API token (only its
                                          hash is stored)
  token-id:{token id}             string  the sha256 of that token (to revoke it by id)
  user:{id}                       hash    a user: id, password_hash (argon2), admin, disabled
  users                           set     every user id
  unix-uid:{uid}                  string  the user a Unix uid is (MUNGE authentication,
                                          core/munge.py; `tweezer user add --unix-uid`)
  user:{id}:projects              hash    the user's projects: project id -> role (ADMIN|MEMBER)
  project:{id}                    hash    a project (id, name, status, queue_priority) and
                                          its quotas (core/quotas.py; absent = no limit)
  project:{id}:usage              hash    unfinished_jobs: its jobs not finished yet (queued
                                          or running; max_queued_jobs counts them);
                                          stored_bytes: what it stores (core/quotas.py)
  project:{id}:open-batches       set     its open batches that are not finished
  project:{id}:batch-counts       hash    its batches per status (a filtered list's exact total
                                          without counting the index intersection)
  projects                        set     every project id

Sessions of qrmi's on-premises path (core/sessions.py, api/pasqal_local.py)
  session:{id}                    hash    id, user_id, unix_uid, project_id, device_type,
                                          slurm_job_id, created_us, closed_us, batch_id (its
                                          open batch now)
  session:{id}:batches            zset    every batch its tasks ran in, by when it was opened
  sessions                        zset    every session id, by creation time (µs)
  sessions-held                   zset    the sessions not released yet, likewise
  slurm-job:{id}:sessions         zset    the sessions a Slurm job opened, by creation time
  session-job-counter             string  the last task number handed out (INCR)
  user:{id}:session-jobs          zset    a user's task numbers (score: the number)

Audit and rate limits
  audit                           stream  who created, cancelled, closed, rebatched... what
                                          (core/audit.py), trimmed to the newest entries
  rate:{sha256 of token}          string  the token's next allowed request time (GCRA, µs);
                                          also of "login-addr:<address>" (password logins
                                          per client address) and "login-all" (the cluster's)
  login-failures:{sha256}         hash    failures, next_us: wrong passwords of one (username,
                                          client address) pair and when it may try again

Temporary
  tmp:{random}                    zset    intermediate filter results (expire in seconds)
  celery:*                        (kombu) Celery's broker keys, under our prefix
"""

from __future__ import annotations

import re

# name -> key pattern under the namespace; {0}, {1} are the arguments, in order.
_PATTERNS: dict[str, str] = {
    "clock": "clock",
    "batch": "batch:{0}",
    "batch_jobs": "batch:{0}:jobs",
    "batch_pending": "batch:{0}:pending",
    "batch_counts": "batch:{0}:counts",
    "batch_sequences": "batch:{0}:sequences",
    "job": "job:{0}",
    "job_result": "job:{0}:result",
    "all_batches": "idx:batches",
    "batch_index": "idx:batches:{0}:{1}",
    "all_jobs": "idx:jobs",
    "job_index": "idx:jobs:{0}:{1}",
    "jobs_by_runs": "idx:jobs:runs",
    "queue": "queue:{0}:{1}",
    "project_queue": "queue:{0}:{1}:{2}",
    "snapshot_version": "snapshot-version:{0}",
    "snapshot_changes": "snapshot-changes:{0}",
    "shares_version": "shares-version",
    "device_usage": "device:{0}:usage",
    "device_usage_at": "device:{0}:usage-at",
    "device_costs": "device:{0}:costs",
    "forecast": "forecast:{0}",
    "forecast_order": "forecast-order:{0}",
    "forecast_turn": "forecast_turn",
    "qpu_lease": "qpu:{0}:lease",
    "qpu_epoch": "qpu:{0}:epoch",
    "qpu_batch": "qpu:{0}:batch",
    "qpu_inflight": "qpu:{0}:inflight",
    "qpu_presence": "qpu-presence",
    "scheduler_presence": "scheduler-presence",
    "scheduler_leases": "scheduler-leases",
    "worker_presence": "worker-presence",
    "totals": "totals",
    "counters": "counters",
    "throughput": "throughput:{0}",
    "deliveries": "deliveries",
    "retention": "retention",
    "webhooks": "webhooks",
    "batch_webhook": "batch:{0}:webhook",
    "wakeup": "wakeup",
    "idempotency": "idempotency:{0}:{1}",
    "device": "device:{0}",
    "device_calibrations": "device:{0}:calibrations",
    "device_history": "device:{0}:history",
    "token": "token:{0}",
    "token_id": "token-id:{0}",
    "users": "users",
    "user": "user:{0}",
    "user_projects": "user:{0}:projects",
    "project": "project:{0}",
    "project_usage": "project:{0}:usage",
    "project_open_batches": "project:{0}:open-batches",
    "project_batch_counts": "project:{0}:batch-counts",
    "projects": "projects",
    "audit": "audit",
    "rate": "rate:{0}",
    "login_failures": "login-failures:{0}",
    "unix_uid": "unix-uid:{0}",
    "session": "session:{0}",
    "session_batches": "session:{0}:batches",
    "sessions": "sessions",
    "held_sessions": "sessions-held",
    "slurm_job_sessions": "slurm-job:{0}:sessions",
    "session_job_counter": "session-job-counter",
    "user_session_jobs": "user:{0}:session-jobs",
    "tmp": "tmp:{0}",
}


class Keys:
    """Key names of one cluster: `Keys("tweezer").batch(id) == "tweezer:batch:<id>"`."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def _key(self, name: str, *args: object) -> str:
        return f"{self.namespace}:{_PATTERNS[name].format(*args)}"

    def clock(self) -> str:
        return self._key("clock")

    def batch(self, batch_id: str) -> str:
        return self._key("batch", batch_id)

    def batch_jobs(self, batch_id: str) -> str:
        return self._key("batch_jobs", batch_id)

    def batch_pending(self, batch_id: str) -> str:
        return self._key("batch_pending", batch_id)

    def batch_counts(self, batch_id: str) -> str:
        return self._key("batch_counts", batch_id)

    def batch_sequences(self, batch_id: str) -> str:
        return self._key("batch_sequences", batch_id)

    def retention(self) -> str:
        return self._key("retention")

    def webhooks(self) -> str:
        return self._key("webhooks")

    def batch_webhook(self, batch_id: str) -> str:
        return self._key("batch_webhook", batch_id)

    def job(self, job_id: str) -> str:
        return self._key("job", job_id)

    def job_result(self, job_id: str) -> str:
        return self._key("job_result", job_id)

    def all_batches(self) -> str:
        return self._key("all_batches")

    def batch_index(self, field: str, value: str) -> str:
        return self._key("batch_index", field, value)

    def all_jobs(self) -> str:
        return self._key("all_jobs")

    def job_index(self, field: str, value: str) -> str:
        return self._key("job_index", field, value)

    def jobs_by_runs(self) -> str:
        return self._key("jobs_by_runs")

    def queue(self, device_type: str, priority: str) -> str:
        return self._key("queue", device_type, priority)

    def project_queue(self, device_type: str, priority: str, project_id: str) -> str:
        return self._key("project_queue", device_type, priority, project_id)

    def snapshot_version(self, device_type: str) -> str:
        return self._key("snapshot_version", device_type)

    def snapshot_changes(self, device_type: str) -> str:
        return self._key("snapshot_changes", device_type)

    def shares_version(self) -> str:
        return self._key("shares_version")

    def device_usage(self, device_type: str) -> str:
        return self._key("device_usage", device_type)

    def device_usage_at(self, device_type: str) -> str:
        return self._key("device_usage_at", device_type)

    def device_costs(self, device_type: str) -> str:
        return self._key("device_costs", device_type)

    def forecast(self, device_type: str) -> str:
        return self._key("forecast", device_type)

    def forecast_order(self, device_type: str) -> str:
        return self._key("forecast_order", device_type)

    @staticmethod
    def staging(key: str, writer: str) -> str:
        """Where `writer` builds the next value of `key` before it replaces it whole."""
        return f"{key}:staging:{writer}"

    @staticmethod
    def replaced(key: str, writer: str) -> str:
        """Where the value `writer` replaced waits to be freed in the background."""
        return f"{key}:old:{writer}"

    def forecast_turn(self) -> str:
        return self._key("forecast_turn")

    def qpu_lease(self, qpu: str) -> str:
        return self._key("qpu_lease", qpu)

    def qpu_epoch(self, qpu: str) -> str:
        return self._key("qpu_epoch", qpu)

    def qpu_batch(self, qpu: str) -> str:
        return self._key("qpu_batch", qpu)

    def qpu_inflight(self, qpu: str) -> str:
        return self._key("qpu_inflight", qpu)

    def qpu_presence(self) -> str:
        return self._key("qpu_presence")

    def scheduler_presence(self) -> str:
        return self._key("scheduler_presence")

    def scheduler_leases(self) -> str:
        return self._key("scheduler_leases")

    def worker_presence(self) -> str:
        return self._key("worker_presence")

    def totals(self) -> str:
        return self._key("totals")

    def counters(self) -> str:
        return self._key("counters")

    def throughput(self, slot: int) -> str:
        return self._key("throughput", slot)

    def deliveries(self) -> str:
        return self._key("deliveries")

    def wakeup(self) -> str:
        return self._key("wakeup")

    def idempotency(self, user_id: str, key_hash: str) -> str:
        return self._key("idempotency", user_id, key_hash)

    def device(self, device_type: str) -> str:
        return self._key("device", device_type)

    def device_calibrations(self, device_type: str) -> str:
        return self._key("device_calibrations", device_type)

    def device_history(self, device_type: str) -> str:
        return self._key("device_history", device_type)

    def token(self, token_hash: str) -> str:
        return self._key("token", token_hash)

    def token_id(self, token_id: str) -> str:
        return self._key("token_id", token_id)

    def users(self) -> str:
        return self._key("users")

    def user(self, user_id: str) -> str:
        return self._key("user", user_id)

    def user_projects(self, user_id: str) -> str:
        return self._key("user_projects", user_id)

    def project(self, project_id: str) -> str:
        return self._key("project", project_id)

    def project_usage(self, project_id: str) -> str:
        return self._key("project_usage", project_id)

    def project_open_batches(self, project_id: str) -> str:
        return self._key("project_open_batches", project_id)

    def project_batch_counts(self, project_id: str) -> str:
        return self._key("project_batch_counts", project_id)

    def projects(self) -> str:
        return self._key("projects")

    def audit(self) -> str:
        return self._key("audit")

    def rate(self, token_hash: str) -> str:
        return self._key("rate", token_hash)

    def login_failures(self, pair_hash: str) -> str:
        return self._key("login_failures", pair_hash)

    def unix_uid(self, uid: int) -> str:
        return self._key("unix_uid", str(uid))

    def session(self, session_id: str) -> str:
        return self._key("session", session_id)

    def session_batches(self, session_id: str) -> str:
        return self._key("session_batches", session_id)

    def sessions(self) -> str:
        return self._key("sessions")

    def held_sessions(self) -> str:
        return self._key("held_sessions")

    def slurm_job_sessions(self, slurm_job_id: str) -> str:
        return self._key("slurm_job_sessions", slurm_job_id)

    def session_job_counter(self) -> str:
        return self._key("session_job_counter")

    def user_session_jobs(self, user_id: str) -> str:
        return self._key("user_session_jobs", user_id)

    def tmp(self, token: str) -> str:
        return self._key("tmp", token)

    def celery_prefix(self) -> str:
        """kombu's `global_keyprefix`: Celery's own keys live under our namespace too."""
        return f"{self.namespace}:celery:"

    @staticmethod
    def celery_queue(qpu: str) -> str:
        """The Celery queue (and routing key) of a QPU's worker pool."""
        return f"qpu.{qpu}"


#: Between the start and the end of a calibration window's member.
_WINDOW_SEPARATOR = ":"


def calibration_window(start_us: int, end_us: int) -> str:
    """The member of `device:{type}:calibrations` for one window."""
    return f"{start_us}{_WINDOW_SEPARATOR}{end_us}"


def calibration_bounds(window: str) -> tuple[int, int]:
    """(start_us, end_us) of a calibration window's member (Lua: `calibration_end`)."""
    start, end = window.split(_WINDOW_SEPARATOR)
    return int(start), int(end)


def lua_functions() -> str:
    """`K.<name>(...)` Lua functions for every key above; scripts receive the namespace as NS."""
    lines = ["local K = {}"]
    for name, pattern in _PATTERNS.items():
        parts = re.split(r"(\{\d\})", pattern)
        nargs = sum(1 for p in parts if re.fullmatch(r"\{\d\}", p))
        params = ", ".join(f"a{i}" for i in range(nargs))
        pieces = ["NS", "':'"]
        for part in parts:
            if not part:
                continue
            match = re.fullmatch(r"\{(\d)\}", part)
            pieces.append(f"a{match.group(1)}" if match else repr(part))
        lines.append(f"K.{name} = function({params}) return {' .. '.join(pieces)} end")
    lines.append(
        "local function calibration_end(window) "
        f"return tonumber(string.match(window, '{_WINDOW_SEPARATOR}(%d+)$')) end"
    )
    return "\n".join(lines) + "\n"
