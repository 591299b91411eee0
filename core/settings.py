"""Typed settings shared by the API, the scheduler and the workers.

Every process reads the same `TWEEZER_*` environment variables, so `tweezer up` starts its children
by handing them `Settings.to_env()`. Names carry their unit (`_s` seconds, `_ns` nanoseconds,
`_bytes`). Values are validated once, at start-up, with messages that say what is allowed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from core.device_types import DEFAULT_QPUS, DeviceType, retired_message
from core.errors import ConfigurationError
from core.webhooks import Allowlist

ENV_PREFIX = "TWEEZER_"


def _default_qpus() -> dict[str, int]:
    return dict(DEFAULT_QPUS)


class Settings(BaseModel):
    """Configuration of one Tweezer cluster; identical in every process of the cluster.

    Pydantic converts each value to its field's type (from the environment's text too) and
    checks the bounds each field carries (`PositiveFloat`, `Field(ge=0)`); `check_ranges()`
    then checks what concerns several fields or the file system."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Redis holding the record, the Celery broker and the wake-ups: `redis://` on loopback,
    #: `rediss://USER:PASSWORD@host:port/0` (TLS, an ACL user) across machines, or `unix://`.
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: For `rediss://`: the CA that signed Redis's certificate (empty: the system's CAs), and
    #: this process's own certificate and key when Redis asks clients for one.
    redis_tls_ca_file: str = ""
    redis_tls_cert_file: str = ""
    redis_tls_key_file: str = ""
    #: Prefix of every key this cluster writes (see core/keys.py), so clusters can share a Redis.
    namespace: str = "tweezer"
    #: QPUs per device type: `EMU_FREE=2` gives two lockable EMU_FREE units, each a Celery queue.
    qpus: dict[str, int] = Field(default_factory=_default_qpus)
    #: Where a batch sent without a device type goes when the device its sequence was built for
    #: is not served or refuses it; empty: EMU_FREE when served, else nowhere.
    default_device_type: str = ""
    #: Pool processes per QPU worker: the jobs of its batch that run at once. 0 (automatic):
    #: an emulator QPU uses every core of its machine (the emulation is CPU-bound and its jobs
    #: independent), a QPU bridge and a synthetic device run one job at a time (the device is
    #: serial). Every process of a cluster must resolve it alike (see `pool_size`): with
    #: workers on machines of other sizes, set it.
    worker_concurrency: Annotated[int, Field(ge=0, description="0: automatic")] = 0
    #: A worker's pool process that holds more resident memory than this after a job is
    #: replaced by a fresh one (between jobs: nothing is lost).
    worker_max_memory_mb: PositiveInt = 2048
    #: Which waiting batch a free QPU runs next (scheduling/policies.py): fifo, priority,
    #: fair-share, shortest-first, or a lab's own `module:Class`. Every scheduler of a cluster
    #: must use the same.
    policy: str = "fair-share"
    #: Fair share: past QPU usage counts half as much after this long (Slurm's
    #: PriorityDecayHalfLife, a week by default).
    fair_share_half_life_s: PositiveFloat = 7 * 86_400.0
    #: How often a scheduler runs the policy forward to forecast when waiting batches start
    #: (`queue_position`, `estimated_start_at` on batches; `tweezer queue`).
    forecast_interval_s: PositiveFloat = 5.0

    #: An open batch whose jobs are all terminal and that receives nothing for this long ends
    #: TIMED_OUT and frees its QPU.
    open_batch_timeout_s: PositiveFloat = 300.0
    #: Lifetime of a QPU lease; the scheduler renews it every third of it.
    lease_ttl_s: PositiveFloat = 10.0
    #: A dispatched job no worker has claimed after this long is dispatched again.
    dispatch_timeout_s: PositiveFloat = 60.0
    #: Jobs go to a worker in chunks of about this many predicted seconds of work (at most
    #: core/qpu.py MAX_CHUNK_JOBS): one message, one claim and grouped commits serve many cheap
    #: jobs; a job predicted to take longer goes alone. A chunk's jobs show RUNNING from its
    #: claim. 0: one job per message.
    dispatch_chunk_s: Annotated[float, Field(ge=0, description="0: one job per message")] = 0.5
    #: A running job whose worker sent no heartbeat for this long is presumed lost.
    job_heartbeat_ttl_s: PositiveFloat = 15.0
    #: How many times a job may start before a lost worker makes it ERROR instead of retrying.
    max_attempts: PositiveInt = 3
    #: Soft limit raises inside the job (it ends ERROR); the hard limit kills the pool child.
    job_soft_time_limit_s: PositiveFloat = 600.0
    job_hard_time_limit_s: PositiveFloat = 660.0
    #: A worker that has run nothing while messages waited in its queue this long exits, so that
    #: its supervisor restarts it (workers/watchdog.py: a stuck Celery consumer).
    worker_stall_s: PositiveFloat = 30.0
    #: Longest the scheduler sleeps between passes when nothing wakes it.
    scheduler_tick_s: PositiveFloat = 1.0

    #: Key signing result download links (HMAC-SHA256). Required by the API.
    results_secret: str = ""
    #: Key signing access tokens (JWT, HS256) issued by the OAuth endpoint. Required by the API.
    auth_secret: str = ""
    #: The `aud` claim of our access tokens; a token for another audience is refused.
    token_audience: str = "tweezer"
    #: Lifetime of an access token from the password grant.
    access_token_ttl_s: PositiveInt = 3600
    #: How long a results link stays valid.
    results_link_ttl_s: PositiveInt = 3600
    #: Base URL put in results links (`tweezer up` and `tweezer api` set it to their own
    #: address when it is not given). A client's `Host` header is never trusted for it...
    public_url: str = ""
    #: ...unless it is one of these host[:port] names (comma-separated), e.g. the names a lab's
    #: proxy answers to; then links name the host the client called.
    allowed_hosts: str = ""
    #: How many reverse proxies in front of the API may be trusted to set X-Forwarded-For
    #: (and -Proto, -Host). 0: the client address is the TCP peer, and those headers are ignored.
    trusted_proxy_count: Annotated[int, Field(ge=0)] = 0

    #: The munged socket MUNGE credentials are decoded through (qrmi's on-premises routes,
    #: core/munge.py); empty: the host's default, /run/munge/munge.socket.2.
    munge_socket: str = ""

    #: Key signing webhook deliveries (HMAC-SHA256, core/webhooks.py): receivers verify with it.
    #: Without it no webhook is called (each delivery records why).
    webhook_secret: str = ""
    #: Non-public networks (CIDR) and host names webhooks may reach, comma-separated, e.g.
    #: `10.1.2.0/24,hooks.lab.internal`; every other loopback, link-local or private address
    #: is refused, so a webhook cannot reach into the lab's network.
    webhook_allow: str = ""
    #: CA certificates (PEM) that https:// webhook receivers' certificates must chain to;
    #: empty: the system's. A lab's internal CA goes here.
    webhook_ca_file: str = ""
    #: One delivery attempt's wall-clock deadline: resolving, connecting, TLS, sending and the
    #: receiver's status line, all together (a receiver dripping bytes cannot stretch it).
    webhook_timeout_s: PositiveFloat = 10.0
    #: A delivery is tried again, with backoff, for this long after its batch ended...
    webhook_retry_for_s: PositiveFloat = 3600.0
    #: ...and at most this many times (an attempt whose sender died counts too).
    webhook_max_attempts: PositiveInt = 30
    #: Deliveries one scheduler makes at once: a slow receiver holds one of them, for at most
    #: `webhook_timeout_s`, never the others.
    webhook_concurrency: PositiveInt = 8

    #: Largest request body accepted on the wire (compressed size for gzip bodies).
    max_body_bytes: PositiveInt = 16 * 1024 * 1024
    #: Largest request body once decompressed; bigger gzip bodies are refused with 413.
    max_inflated_bytes: PositiveInt = 64 * 1024 * 1024
    #: How long a POST's Idempotency-Key is remembered (a retry within it is answered with the
    #: first result instead of creating again).
    idempotency_ttl_s: PositiveInt = 86_400
    #: Requests per second one token may make, sustained (0 turns rate limits off), and how
    #: many it may make at once after a pause. Above it: 429 with Retry-After.
    rate_limit_per_s: Annotated[float, Field(ge=0, description="0: no rate limit")] = 50.0
    rate_limit_burst: PositiveInt = 200
    #: Password logins one client address may attempt per minute (as many at once), right or
    #: wrong, whatever the username: bounds guessing and the CPU spent hashing per address.
    login_attempts_per_min: PositiveInt = 20
    #: Password checks the whole cluster makes per second (a burst of 4x as many), whoever asks:
    #: unauthenticated traffic from many addresses cannot take the CPU from everyone else.
    login_checks_per_s: PositiveFloat = 5.0
    #: Password hashes one API process computes at once (argon2id: 64 MiB, ~0.1 s each); a login
    #: that finds them busy for a second gets 429.
    login_concurrent_checks: PositiveInt = 2
    #: Wrong passwords for one username from one client address before each further attempt of
    #: that pair must wait, 1 s doubling per failure up to login_max_delay_s. A correct password
    #: resets it; other addresses (the user's own) are not held back by it.
    login_free_failures: PositiveInt = 5
    login_max_delay_s: PositiveInt = 900
    #: Longest an open batch may hold a QPU, however busy it keeps it: past it, the batch ends
    #: TIMED_OUT (closed; its unfinished jobs CANCELED) and the QPU goes to the next batch.
    open_batch_max_hold_s: PositiveFloat = 4 * 3600.0
    #: While another project has a batch waiting for the same device type, an open batch with no
    #: active job ends TIMED_OUT after this much idle time (or open_batch_timeout_s if shorter).
    open_batch_contended_idle_s: PositiveFloat = 30.0
    #: Bytes one project may keep stored (inputs, results, and an estimate of the results of its
    #: unfinished jobs) unless an administrator sets its own `max_stored_bytes`; 0: no limit.
    project_max_stored_bytes: Annotated[int, Field(ge=0, description="0: no limit")] = 1024**3
    #: How long the sequences of a finished (DONE, ERROR, CANCELED, TIMED_OUT) batch are kept;
    #: then they are dropped (the batch and job records, variables and results stay).
    input_retention_s: PositiveFloat = 7 * 86_400.0
    #: Most jobs one create/add request may carry.
    max_jobs_per_request: PositiveInt = 1000
    #: Most operations (pulses, delays, targets...) one sequence may hold; checked before Pulser
    #: parses it, so a huge sequence costs nothing.
    max_sequence_operations: PositiveInt = 2000
    #: Shots for an emulator job sent without `runs` and without a BitStrings observable.
    default_runs: PositiveInt = 100
    #: Limits of the EMU_FREE (QuTiP) emulator; its cost grows as 2**atoms and with duration,
    #: so within them a job is also admitted by its predicted time (core/costs.py), which must
    #: fit `job_soft_time_limit_s`.
    emu_free_max_atoms: PositiveInt = 16
    emu_free_max_runs: PositiveInt = 100_000
    emu_free_max_duration_ns: PositiveInt = 20_000
    #: What one pool process of an EMU_SV, EMU_MPS or EMU_FRESNEL QPU may hold (MB): a job
    #: whose predicted memory (core/engines.py) exceeds it is refused at submission, not
    #: OOM-killed, and it sets the largest register /devices/specs states. With workers on
    #: other hosts, set it to what a pool process there may use (the host's memory divided
    #: by its pool size, less what else runs there).
    emulator_max_memory_mb: PositiveInt = 8192
    #: Threads of torch (emu-sv, emu-mps) in each pool process; 0 (automatic): the process's
    #: cores divided by the pool size, so a pool uses the cores rather than pool x cores.
    emulator_threads: Annotated[int, Field(ge=0, description="0: automatic")] = 0

    #: Every device's jobs take exactly the QPU seconds a load test gives them (else their
    #: predicted time) and return synthetic bitstrings, without QuTiP: load-tests the platform,
    #: not the emulator (`tweezer up --synthetic-devices`, workers/synthetic.py).
    synthetic_devices: bool = False
    #: The FRESNEL bridge's device driver, as `module:Class` (see workers/drivers/).
    bridge_driver: str = "workers.drivers.virtual:VirtualQpu"
    #: The virtual QPU's pace: shots per second, and the time to load a batch's register.
    bridge_shot_rate_hz: PositiveFloat = 5.0
    bridge_register_load_s: Annotated[float, Field(ge=0)] = 20.0
    #: Divides every time of the virtual QPU (tests and demos run it 100x faster, say).
    bridge_speedup: PositiveFloat = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, /, **overrides: Any) -> Settings:
        """Reads `TWEEZER_<FIELD>` variables (e.g. `TWEEZER_LEASE_TTL_S=5`), then `overrides`."""
        env = os.environ if env is None else env
        raw = {
            name: env[ENV_PREFIX + name.upper()]
            for name in cls.model_fields
            if ENV_PREFIX + name.upper() in env
        }
        return cls._build(
            {**raw, **overrides}, {n: v for n, v in raw.items() if n not in overrides}
        )

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes`, validated."""
        return self._build({**self.model_dump(), **changes}, {})

    @classmethod
    def _build(cls, values: dict[str, Any], from_env: dict[str, str]) -> Settings:
        """Validated settings; a value that does not convert is a ConfigurationError naming
        the variable it came from."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            error = exc.errors()[0]
            name = str(error["loc"][0]) if error["loc"] else ""
            where = f"{ENV_PREFIX}{name.upper()}={from_env[name]!r}" if name in from_env else name
            raise ConfigurationError(f"{where}: {_message(name, error)}") from None

    def to_env(self) -> dict[str, str]:
        """The environment that makes `Settings.from_env()` rebuild these settings exactly."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, dict):
                value = ",".join(f"{k}={v}" for k, v in value.items())
            env[ENV_PREFIX + name.upper()] = str(value)
        return env

    @field_validator("qpus", mode="before")
    @classmethod
    def _qpus_from_text(cls, value: Any) -> Any:
        """`EMU_FREE=2,FRESNEL=1` (TWEEZER_QPUS, `--qpus`) as a mapping."""
        if not isinstance(value, str):
            return value
        try:
            return parse_qpus(value)
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None

    @model_validator(mode="after")
    def _in_range(self) -> Settings:
        self.check_ranges()
        return self

    def check_ranges(self) -> None:
        """Raises ConfigurationError naming the first setting that is out of range."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.namespace):
            raise ConfigurationError("namespace must be 1-64 characters of [A-Za-z0-9_.-]")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError("redis_url must start with redis://, rediss:// or unix://")
        if bool(self.redis_tls_cert_file) != bool(self.redis_tls_key_file):
            raise ConfigurationError("redis_tls_cert_file and redis_tls_key_file go together")
        for name in ("redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file"):
            path = getattr(self, name)
            if path and not self.redis_url.startswith("rediss://"):
                raise ConfigurationError(f"{name} is set but redis_url is not rediss:// (TLS)")
            if path and not os.path.isfile(path):
                raise ConfigurationError(f"{name}: no such file {path!r}")
        if not self.qpus:
            raise ConfigurationError("qpus must name at least one device type, e.g. EMU_FREE=1")
        for device_type, count in self.qpus.items():
            retired = retired_message(device_type)
            if retired is not None:
                raise ConfigurationError(f"qpus: {retired}")
            if device_type not in tuple(DeviceType):
                raise ConfigurationError(
                    f"qpus: unknown device type {device_type!r}; allowed: {', '.join(DeviceType)}"
                )
            if not 1 <= count <= 64:
                raise ConfigurationError(f"qpus: {device_type} needs 1 to 64 QPUs, got {count}")
        if self.default_device_type and self.default_device_type not in self.qpus:
            raise ConfigurationError(
                f"default_device_type {self.default_device_type!r} is not served; "
                f"served: {', '.join(self.qpus)}"
            )
        if self.job_hard_time_limit_s <= self.job_soft_time_limit_s:
            raise ConfigurationError("job_hard_time_limit_s must be above job_soft_time_limit_s")
        if self.scheduler_tick_s > min(self.lease_ttl_s / 3, 5.0):
            # Leases are renewed once per pass; the wake-up wait must fit the socket timeout.
            raise ConfigurationError("scheduler_tick_s must be at most lease_ttl_s / 3 and 5 s")
        if self.default_runs > self.emu_free_max_runs:
            raise ConfigurationError("default_runs must not exceed emu_free_max_runs")
        if ":" not in self.bridge_driver:
            raise ConfigurationError("bridge_driver must read module:Class")
        if self.public_url.endswith("/"):
            raise ConfigurationError("public_url must not end with '/'")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ConfigurationError("public_url must start with http:// or https://")
        if self.webhook_ca_file and not os.path.isfile(self.webhook_ca_file):
            raise ConfigurationError(f"webhook_ca_file: no such file {self.webhook_ca_file!r}")
        try:
            Allowlist.parse(self.webhook_allow)
        except ValueError as exc:
            raise ConfigurationError(f"webhook_allow: {exc}") from None

    @property
    def redis_tls(self) -> dict[str, str]:
        """redis-py's `ssl_*` options for a `rediss://` URL (empty otherwise)."""
        if not self.redis_url.startswith("rediss://"):
            return {}
        options = {"ssl_cert_reqs": "required"}
        if self.redis_tls_ca_file:
            options["ssl_ca_certs"] = self.redis_tls_ca_file
        if self.redis_tls_cert_file:
            options["ssl_certfile"] = self.redis_tls_cert_file
            options["ssl_keyfile"] = self.redis_tls_key_file
        return options

    @property
    def default_device(self) -> str:
        """The default device type in force ('' for none)."""
        if self.default_device_type:
            return self.default_device_type
        return DeviceType.EMU_FREE if DeviceType.EMU_FREE in self.qpus else ""

    @property
    def allowed_host_names(self) -> frozenset[str]:
        """`allowed_hosts` as a set of lower-case host[:port] names."""
        return frozenset(h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip())

    def pool_size(self, device_type: str) -> int:
        """Jobs a QPU of `device_type` runs at once: `worker_concurrency`, or when 0 the cores
        this process may use for the QuTiP emulator (not synthetic), else 1: a QPU is serial,
        and torch's engines spread one job over every core (`emulator_thread_count`), with one
        state of 20-odd atoms in memory rather than one per core. The worker sizes its pool
        with it, the scheduler its dispatches, the cost model its predictions."""
        if self.worker_concurrency:
            return self.worker_concurrency
        if device_type == DeviceType.EMU_FREE and not self.synthetic_devices:
            return max(1, len(os.sched_getaffinity(0)))
        return 1

    def emulator_thread_count(self, device_type: str) -> int:
        """torch's threads in each pool process of `device_type`'s QPU."""
        if self.emulator_threads:
            return self.emulator_threads
        return max(1, len(os.sched_getaffinity(0)) // self.pool_size(device_type))

    @property
    def webhook_allowlist(self) -> Allowlist:
        return Allowlist.parse(self.webhook_allow)

    @property
    def visibility_timeout_s(self) -> int:
        """Celery/kombu redelivery delay: above the hard limit (reliability.md §1.4)."""
        return int(2 * self.job_hard_time_limit_s + 60)


#: Pydantic's bound errors, in the words of the rest of our messages.
_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">=")}


def _message(name: str, error: Any) -> str:
    """`max_attempts must be > 0, got 0` for a field's bound (with what 0 means, where it
    means something); pydantic's own words for anything else."""
    if error["type"] not in _BOUNDS:
        return str(error["msg"])
    key, sign = _BOUNDS[error["type"]]
    field = Settings.model_fields[name]
    meaning = f" ({field.description})" if field.description else ""
    return f"{name} must be {sign} {error['ctx'][key]:g}{meaning}, got {error['input']}"


#: QPUs of one device type a cluster (or a simulation) may have: each is a lease, a queue and a
#: pool of worker processes.
MAX_QPUS_PER_TYPE = 1000


def parse_qpus(raw: str) -> dict[str, int]:
    """Parses `EMU_FREE=2,FRESNEL=1` (the `--qpus` option and TWEEZER_QPUS)."""
    qpus: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        device_type, sep, count = part.partition("=")
        if not sep or not re.fullmatch(r"[0-9]{1,4}", count.strip()):
            raise ConfigurationError(f"expected DEVICE_TYPE=COUNT, got {part!r}")
        if int(count) > MAX_QPUS_PER_TYPE:
            raise ConfigurationError(
                f"{part!r}: at most {MAX_QPUS_PER_TYPE} QPUs of one device type"
            )
        qpus[device_type.strip()] = int(count)
    return qpus
