"""Validation at the edge: turns a create-batch or add-jobs body into records, or refuses it.

Every sequence is deserialized with Pulser's own schema (`Sequence.from_abstract_repr`), so the
legacy JSON format and anything malformed are refused; every job is built with its variables
and checked against its device's limits. Nothing reaches Redis, let alone a worker, unless the
whole request passes: one bad job refuses the request and names the job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pulser import Sequence
from pulser.backend import BitStrings
from pulser.backend.abc import Backend
from pulser.backend.config import EmulationConfig
from pulser.devices._device_datacls import BaseDevice

from tweezer.api.schemas import CreateBatchIn, EmuFreeConfigurationIn, JobIn, parse_model
from tweezer.core.costs import CostModel, Costs
from tweezer.core.device_types import DeviceKind
from tweezer.core.devices import DeviceSpec
from tweezer.core.errors import Conflict, InvalidRequest, InvalidSequence, UnknownDeviceType
from tweezer.core.hints import given_qpu_seconds
from tweezer.core.quotas import predicted_result_bytes
from tweezer.core.records import Batch, Job, Principal
from tweezer.core.sequences import built
from tweezer.core.settings import Settings
from tweezer.core.status import BatchStatus
from tweezer.core.timefmt import to_iso
from tweezer.core.webhooks import check_at_submission

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class BatchPlan:
    """What a batch's jobs are checked against: its device, sequence and shot defaults."""

    spec: DeviceSpec
    sequence_builder: str | None
    #: Shots for jobs without `runs` (the cluster's default).
    default_runs: int
    #: The backend configuration's BitStrings `num_shots`: on an emulator it is every job's
    #: shot count, `runs` or not (as Pulser's EmuFreeBackendV2 means it); None when unset.
    config_shots: int | None = None


class Submission:
    """Checks submissions against the served devices and the cluster's settings."""

    def __init__(
        self, settings: Settings, registry: dict[str, DeviceSpec], costs: Costs | None = None
    ) -> None:
        self.settings = settings
        self.registry = registry
        #: Predicted QPU time (core/costs.py); without it, the emulator's default fit.
        self.costs = costs
        #: Sequences checked by earlier requests of this process, by content.
        self.checked = CheckedSequences()

    def _cache(self) -> _SequenceCache:
        return _SequenceCache(self.settings.max_sequence_operations, self.checked)

    def cost_model(self, spec: DeviceSpec) -> CostModel:
        if self.costs is not None:
            return self.costs.model(spec.device_type, spec.kind)
        return CostModel(spec.kind, self.settings.pool_size(spec.kind))

    def new_batch(
        self, body: CreateBatchIn, principal: Principal, queue_priority: str
    ) -> tuple[Batch, list[Job]]:
        if not body.jobs and not body.open:
            raise InvalidRequest("A closed batch needs at least one job (or set open: true)")
        self._check_job_count(body.jobs)
        if body.webhook is not None:
            check_at_submission(body.webhook, self.settings.webhook_allowlist)
        cache = self._cache()
        if body.device_type is not None:
            spec = self.registry.get(body.device_type)
            if spec is None:
                served = ", ".join(sorted(self.registry)) or "none"
                raise UnknownDeviceType(
                    f"Unknown device_type {body.device_type!r}; this cluster serves: {served}"
                )
            return self._batch_on(spec, body, principal, queue_priority, cache)
        # Pulser's QPUBackend and the SDK's own examples send no device type: the first
        # candidate that accepts the whole batch takes it (README, "Batches without a device type").
        refusals = []
        for spec, why in self._candidates(body, cache):
            try:
                return self._batch_on(spec, body, principal, queue_priority, cache)
            except (InvalidRequest, InvalidSequence) as exc:
                refusals.append(f"{spec.device_type} ({why}) refused it: {exc.message}")
        raise InvalidSequence(
            "device_type is null and no served device type can run this batch; "
            + ("; ".join(refusals) or "there is no default device type")
        )

    def _batch_on(
        self,
        spec: DeviceSpec,
        body: CreateBatchIn,
        principal: Principal,
        queue_priority: str,
        cache: _SequenceCache,
    ) -> tuple[Batch, list[Job]]:
        """The batch and its jobs on `spec`, checked against it entirely."""
        configuration = self._configuration(spec, body.configuration)
        plan = BatchPlan(spec, body.sequence_builder, *self._shots(spec, body))
        costs = self.cost_model(spec)  # read once: a request's jobs are priced alike
        if body.sequence_builder is not None:
            cache.parse(body.sequence_builder, spec, "sequence_builder")
        batch = Batch(
            id=str(uuid.uuid4()),
            project_id=str(body.project_id),
            user_id=principal.user_id,
            device_type=spec.device_type,
            status=BatchStatus.PENDING,
            open=body.open,
            queue_priority=queue_priority,
            created_us=0,
            updated_us=0,
            sequence_builder=body.sequence_builder,
            configuration=configuration,
            backend_configuration=body.backend_configuration,
            tags=body.tags or [],
            webhook=body.webhook,
            predicted_qpu_s=costs.batch_base_s,
        )
        return batch, self._jobs(batch, plan, body.jobs, cache, costs)

    def _candidates(
        self, body: CreateBatchIn, cache: _SequenceCache
    ) -> list[tuple[DeviceSpec, str]]:
        """Where a batch without a device type may go, in order: the served devices its
        sequence was built for (by name, or by identical specs, so that Pulser's AnalogDevice
        finds FRESNEL), then the cluster's default device type; each with why it is tried."""
        text = body.sequence_builder or next((j.sequence for j in body.jobs if j.sequence), None)
        if text is None:
            raise InvalidRequest("device_type is null and there is no sequence to infer it from")
        device = cache.device(text)
        found = []
        for spec in self.registry.values():
            if spec.pulser_device.name == device.name:
                found.append((spec, f"the sequence's device is {device.name}"))
            elif spec.same_specs(device):
                found.append((spec, f"the sequence's device {device.name} has its specs"))
        default = self.registry.get(self.settings.default_device)
        if default is not None and all(spec is not default for spec, _ in found):
            found.append((default, "the cluster's default device type"))
        return found

    def new_jobs(self, batch: Batch, data: Any) -> list[Job]:
        """Jobs for POST /batches/{id}/jobs (a JSON array), checked like those of a new batch."""
        if not isinstance(data, list):
            raise InvalidRequest("Invalid request body: expected a JSON array of jobs")
        jobs = [parse_model(JobIn, item, f"[{i}]") for i, item in enumerate(data)]
        if not jobs:
            raise InvalidRequest("Invalid request body: the array of jobs is empty")
        self._check_job_count(jobs)
        spec = self.registry.get(batch.device_type)
        if spec is None:
            raise UnknownDeviceType(f"Device type {batch.device_type} is no longer served")
        config_shots = self._config_shots(batch.backend_configuration)
        plan = BatchPlan(spec, batch.sequence_builder, self.settings.default_runs, config_shots)
        return self._jobs(batch, plan, jobs, self._cache(), self.cost_model(spec))

    def rebatch(
        self, original: Batch, jobs: list[Job], principal: Principal
    ) -> tuple[Batch, list[Job]]:
        """A new closed batch re-running copies of `jobs` of `original` (already validated when
        they were first submitted); `parent_id` links the copies to what they copy."""
        batch = dataclasses.replace(
            original,
            id=str(uuid.uuid4()),
            user_id=principal.user_id,
            status=BatchStatus.PENDING,
            open=False,
            created_us=0,
            updated_us=0,
            start_us=None,
            end_us=None,
            qpu=None,
            counts={},
            parent_id=original.id,
        )
        if original.inputs_purged_us is not None:
            raise Conflict(
                f"The sequences of batch {original.id} were dropped at "
                f"{to_iso(original.inputs_purged_us)}, {self.settings.input_retention_s:g} s "
                "after it finished: it can no longer be rebatched"
            )
        copies = []
        for job in jobs:
            copy = Job.pending(
                batch, job.runs, job.variables, job.sequence, job.id, job.reserved_bytes
            )
            copy.atoms, copy.duration_ns, copy.qpu_s = job.atoms, job.duration_ns, job.qpu_s
            copies.append(copy)
        return batch, copies

    # -- pieces -----------------------------------------------------------------------------

    def _check_job_count(self, jobs: list[JobIn]) -> None:
        if len(jobs) > self.settings.max_jobs_per_request:
            raise InvalidRequest(
                f"Too many jobs in one request: {len(jobs)} "
                f"(at most {self.settings.max_jobs_per_request})"
            )

    def _configuration(
        self, spec: DeviceSpec, configuration: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        if configuration is None or spec.device_type != "EMU_FREE":
            return configuration
        parsed = parse_model(EmuFreeConfigurationIn, configuration, "configuration")
        return parsed.model_dump()

    def _shots(self, spec: DeviceSpec, body: CreateBatchIn) -> tuple[int, int | None]:
        """The plan's (default_runs, config_shots) for a new batch on `spec`."""
        if body.backend_configuration is not None and spec.kind is not DeviceKind.EMULATOR:
            raise InvalidRequest(
                f"backend_configuration is for emulators; {spec.device_type} does not take one"
            )
        return self.settings.default_runs, self._config_shots(body.backend_configuration)

    def _config_shots(self, backend_configuration: str | None) -> int | None:
        """The BitStrings observable's `num_shots` of a backend configuration, if it sets one."""
        if backend_configuration is None:
            return None
        try:
            with _quiet():
                config = EmulationConfig.from_abstract_repr(backend_configuration)
        except Exception as exc:  # Pulser raises many types for a malformed config.
            raise InvalidRequest(
                f"backend_configuration is not a valid EmulationConfig: {exc}"
            ) from None
        for observable in config.observables:
            if isinstance(observable, BitStrings) and observable.num_shots:
                return int(observable.num_shots)
        return None

    def _jobs(
        self,
        batch: Batch,
        plan: BatchPlan,
        jobs: list[JobIn],
        cache: _SequenceCache,
        costs: CostModel,
    ) -> list[Job]:
        records = []
        for index, job in enumerate(jobs):
            what = f"jobs[{index}]"
            text = job.sequence or plan.sequence_builder
            if text is None:
                raise InvalidSequence(
                    f"{what} has no sequence and the batch has no sequence_builder"
                )
            checked = cache.checked(
                text, plan.spec, f"{what}.sequence" if job.sequence else "sequence_builder"
            )
            notes, duration_ns = checked.build(job.variables or {}, plan.spec, what)
            runs = self._runs(job, plan, what)
            atoms = checked.atoms
            reserved = predicted_result_bytes(runs, atoms, batch.backend_configuration is not None)
            record = Job.pending(batch, runs, job.variables, job.sequence, None, reserved)
            record.warnings = notes
            record.atoms, record.duration_ns = atoms, duration_ns
            seconds = costs.job_seconds(atoms, duration_ns, runs)
            given = given_qpu_seconds(job.variables)
            if self.settings.synthetic_devices and given is not None:
                # A synthetic device takes what the load test says (workers/synthetic.py): the
                # policies, forecasts and the dispatcher's chunks are told so.
                seconds = given
            self._check_predicted_time(plan.spec, what, atoms, duration_ns, seconds)
            record.qpu_s = costs.qpu_share_s(seconds)
            records.append(record)
        return records

    def _check_predicted_time(
        self, spec: DeviceSpec, what: str, atoms: int, duration_ns: int, seconds: float
    ) -> None:
        """An emulator job is priced, not capped: admitted when its predicted run time (the
        cost model, fitted on this cluster's own jobs) fits the job time limit."""
        limit = self.settings.job_soft_time_limit_s
        if spec.kind is DeviceKind.EMULATOR and seconds > limit:
            raise InvalidSequence(
                f"{what} is predicted to run {seconds:.0f} s on {spec.device_type} ({atoms} "
                f"atoms, {duration_ns} ns), over the job time limit of {limit:g} s: use fewer "
                "atoms or a shorter sequence",
                predicted_s=round(seconds, 1),
                limit_s=limit,
            )

    def _runs(self, job: JobIn, plan: BatchPlan, what: str) -> int:
        """The job's shot count: on an emulator the backend configuration's `num_shots` when
        it sets one, else `runs`, else the default; always within the device's limit."""
        if plan.spec.kind is DeviceKind.EMULATOR and plan.config_shots is not None:
            runs, source = plan.config_shots, "backend_configuration's BitStrings num_shots"
        elif job.runs is not None:
            runs, source = job.runs, f"{what}.runs"
        elif plan.spec.kind is not DeviceKind.EMULATOR:
            raise InvalidRequest(f"{what}.runs is required on {plan.spec.device_type}")
        else:
            return plan.default_runs
        if runs > plan.spec.max_runs:
            raise InvalidRequest(
                f"{source} is {runs}; {plan.spec.device_type} allows at most {plan.spec.max_runs}"
            )
        return runs


class Newest(Generic[K, V]):
    """The newest `size` entries put or found (least recently used goes first). Not locked:
    its owner holds the lock its entries need."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)


#: Builds each checked sequence remembers (the newest; a variable set's canonical JSON is its
#: key, at most a few hundred bytes): 64 sequences x 128 builds stay within a few MB.
BUILDS_PER_SEQUENCE = 128


@dataclass
class Checked:
    """A sequence deserialised and checked against one device (for a QPU: moved onto it), what
    building it with each variable set found, and the lock its builds take: Pulser's `build`
    sets the sequence's variables in place, so two requests must not build one shared sequence
    at once."""

    sequence: Sequence
    atoms: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    max_builds: int = BUILDS_PER_SEQUENCE
    #: Canonical variables (JSON) -> (warnings, duration ns) of a build that passed its checks.
    builds: Newest[str, tuple[list[str], int]] = field(init=False)

    def __post_init__(self) -> None:
        self.builds = Newest(self.max_builds)

    def build(
        self, variables: dict[str, Any], spec: DeviceSpec, what: str
    ) -> tuple[list[str], int]:
        """`_check_build` once per distinct variable set, across requests: building is half of
        a request's time, and sweeps, retries and load tests send the same sets again and
        again. Pure in (sequence, device, variables), so a remembered result is the result. A
        set that fails is not remembered: its error names the job that sent it."""
        key = json.dumps(variables, sort_keys=True, default=str)
        with self.lock:
            found = self.builds.get(key)
            if found is None:
                found = _check_build(self.sequence, variables, spec, what)
                self.builds.put(key, found)
        return list(found[0]), found[1]


class CheckedSequences:
    """Sequences this API process checked, by (sha256 of the text, device type), the newest
    `size` kept: a variational loop submits the same sequence again and again with new
    variables, and each submission reuses the checked form instead of deserialising it (a
    fifth of a request's time) and checking it anew. Shared by the request threads."""

    def __init__(self, size: int = 64) -> None:
        self._items: Newest[tuple[str, str], Checked] = Newest(size)
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Checked | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: tuple[str, str], checked: Checked) -> None:
        with self._lock:
            self._items.put(key, checked)


class _SequenceCache:
    """One request's view of its sequences: each distinct text deserialised and checked once
    (or found checked by an earlier request), each distinct variable set built once (or found
    built by an earlier one: Checked.build)."""

    def __init__(self, max_operations: int, shared: CheckedSequences) -> None:
        self.max_operations = max_operations
        self.shared = shared
        #: As deserialized (the device is read from it when the request names none).
        self._raw: dict[str, Sequence] = {}
        #: sha256 of each text seen.
        self._sha: dict[str, str] = {}

    def sha(self, text: str) -> str:
        if text not in self._sha:
            self._sha[text] = hashlib.sha256(text.encode()).hexdigest()
        return self._sha[text]

    def checked(self, text: str, spec: DeviceSpec, what: str) -> Checked:
        key = (self.sha(text), spec.device_type)
        found = self.shared.get(key)
        if found is None:
            sequence = self._deserialize(text, what)
            atoms = len(sequence.get_register(include_mappable=True).qubit_ids)
            if spec.kind is DeviceKind.QPU:
                # Pulser checks every limit of the QPU's device, the atom count among them.
                sequence = _as_for_qpu(sequence, spec, what)
            elif atoms > spec.max_atoms:
                # A sequence built for any device runs on the emulator, so Pulser's checks
                # are those of its own device: the emulator's cost limit is checked here.
                raise InvalidSequence(
                    f"{what} has {atoms} atoms; {spec.device_type} allows at most {spec.max_atoms}"
                )
            found = Checked(sequence, atoms)
            self.shared.put(key, found)
        return found

    def parse(self, text: str, spec: DeviceSpec, what: str) -> Sequence:
        return self.checked(text, spec, what).sequence

    def device(self, text: str) -> BaseDevice:
        """The device the sequence was built for."""
        device: BaseDevice = self._deserialize(text, "sequence").device
        return device

    def _deserialize(self, text: str, what: str) -> Sequence:
        sequence = self._raw.get(text)
        if sequence is None:
            operations = _count_operations(text)
            if operations > self.max_operations:
                raise InvalidSequence(
                    f"{what} has {operations} operations; "
                    f"at most {self.max_operations} are accepted"
                )
            sequence = self._raw[text] = _deserialize(text, what)
        return sequence


def _count_operations(text: str) -> int:
    """The length of the abstract repr's `operations` list (0 if it is not a sequence at all:
    Pulser's own parse then says what is wrong)."""
    try:
        operations = json.loads(text).get("operations", [])
    except (ValueError, AttributeError, RecursionError):
        return 0
    return len(operations) if isinstance(operations, list) else 0


def _deserialize(text: str, what: str) -> Sequence:
    try:
        with _quiet():
            return Sequence.from_abstract_repr(text)
    except Exception as exc:  # jsonschema, Pulser and JSON errors all mean "not a sequence".
        raise InvalidSequence(
            f"{what} is not a valid Pulser sequence (abstract representation): {_first_line(exc)}"
        ) from None


def _as_for_qpu(sequence: Sequence, spec: DeviceSpec, what: str) -> Sequence:
    """The sequence on the QPU's own device, checked as the QPU itself would: every channel,
    limit and layout rule of the device (Pulser's strict switch and its QPU validation)."""
    try:
        with _quiet():
            on_device = sequence.switch_device(spec.pulser_device, strict=True)
            Backend.validate_sequence(on_device, mimic_qpu=True)
    except Exception as exc:  # Pulser signals each rule with its own exception type.
        raise InvalidSequence(
            f"{what} cannot run on {spec.device_type}: {_first_line(exc)}"
        ) from None
    return on_device


def _check_build(
    sequence: Sequence, variables: dict[str, Any], spec: DeviceSpec, what: str
) -> tuple[list[str], int]:
    """Builds the job's sequence as a worker will, and checks the result against the device.
    Returns warnings for the job (variables the sequence does not declare are ignored, as
    Pulser's own `build` does: qiskit-pasqal-provider sends the values of a sequence it built
    already; missing ones and values of the wrong shape are refused) and its duration (ns)."""
    declared = set(sequence.declared_variables)
    mappable = sequence.is_register_mappable()
    allowed = declared | ({"qubits"} if mappable else set())
    unknown = sorted(set(variables) - allowed)
    notes = []
    if unknown:
        notes.append(
            f"variable(s) {', '.join(unknown)} ignored: the sequence declares "
            f"{', '.join(sorted(allowed)) or 'none'}"
        )
        variables = {name: value for name, value in variables.items() if name in allowed}
    missing = sorted((declared | ({"qubits"} if mappable else set())) - set(variables))
    if missing:
        raise InvalidSequence(f"{what}.variables: missing value(s) for {', '.join(missing)}")
    try:
        with _quiet():
            on_device = built(sequence, variables)
    except Exception as exc:  # Pulser's own checks: shapes, channel limits, trap ids...
        raise InvalidSequence(
            f"{what}: the sequence cannot be built with these variables: {_first_line(exc)}"
        ) from None
    duration = on_device.get_duration(include_fall_time=True)
    if duration == 0:
        raise InvalidSequence(f"{what}: the sequence is empty (no pulse or delay on any channel)")
    if duration > spec.max_duration_ns:
        raise InvalidSequence(
            f"{what}: the sequence lasts {duration} ns; {spec.device_type} allows at most "
            f"{spec.max_duration_ns} ns"
        )
    return notes, duration


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


@contextmanager
def _quiet() -> Iterator[None]:
    """Pulser warns about things users cannot act on here; keep the API's logs clean."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
