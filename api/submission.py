"""Validation at the edge: turns a create-batch or add-jobs body into records, or refuses it.

Every sequence is deserialized with Pulser's own schema (`Sequence.from_abstract_repr`), so the
legacy JSON format and anything malformed are refused; every job is built with its variables
and checked against its device's limits. Nothing reaches Redis, let alone a worker, unless the
whole request passes: one bad job refuses the request and names the job.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pulser import Sequence
from pulser.backend import BitStrings
from pulser.backend.abc import Backend
from pulser.backend.config import EmulationConfig

from api.schemas import CreateBatchIn, EmuFreeConfigurationIn, JobIn, parse_model
from core.devices import EMULATOR, QPU, DeviceSpec
from core.errors import Conflict, InvalidRequest, InvalidSequence, UnknownDeviceType
from core.quotas import predicted_result_bytes
from core.records import Batch, Job, Principal
from core.settings import Settings
from core.status import BatchStatus
from core.timefmt import to_iso


@dataclass(frozen=True)
class BatchPlan:
    """What a batch's jobs are checked against: its device, sequence and shot defaults."""

    spec: DeviceSpec
    sequence_builder: str | None
    #: Shots for jobs without `runs`: the backend configuration's, else the cluster default.
    default_runs: int


class Submission:
    """Checks submissions against the served devices and the cluster's settings."""

    def __init__(self, settings: Settings, registry: dict[str, DeviceSpec]) -> None:
        self.settings = settings
        self.registry = registry

    def new_batch(
        self, body: CreateBatchIn, principal: Principal, queue_priority: str
    ) -> tuple[Batch, list[Job]]:
        if not body.jobs and not body.open:
            raise InvalidRequest("A closed batch needs at least one job (or set open: true)")
        self._check_job_count(body.jobs)
        cache = _SequenceCache(self.settings.max_sequence_operations)
        spec = self._device(body, cache)
        configuration = self._configuration(spec, body.configuration)
        plan = BatchPlan(spec, body.sequence_builder, self._default_runs(spec, body))
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
        )
        return batch, self._jobs(batch, plan, body.jobs, cache)

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
        default_runs = self._shots_default(spec, batch.backend_configuration)
        plan = BatchPlan(spec, batch.sequence_builder, default_runs)
        return self._jobs(batch, plan, jobs, _SequenceCache(self.settings.max_sequence_operations))

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
        copies = [
            Job.pending(batch, job.runs, job.variables, job.sequence, job.id, job.reserved_bytes)
            for job in jobs
        ]
        return batch, copies

    # -- pieces -----------------------------------------------------------------------------

    def _check_job_count(self, jobs: list[JobIn]) -> None:
        if len(jobs) > self.settings.max_jobs_per_request:
            raise InvalidRequest(
                f"Too many jobs in one request: {len(jobs)} "
                f"(at most {self.settings.max_jobs_per_request})"
            )

    def _device(self, body: CreateBatchIn, cache: _SequenceCache) -> DeviceSpec:
        served = ", ".join(sorted(self.registry)) or "none"
        if body.device_type is not None:
            spec = self.registry.get(body.device_type)
            if spec is None:
                raise UnknownDeviceType(
                    f"Unknown device_type {body.device_type!r}; this cluster serves: {served}"
                )
            return spec
        # Pulser's QPUBackend sends no device type: the sequence's device names it.
        text = body.sequence_builder or next((j.sequence for j in body.jobs if j.sequence), None)
        if text is None:
            raise InvalidRequest("device_type is null and there is no sequence to infer it from")
        name = cache.device_name(text)
        for spec in self.registry.values():
            if spec.pulser_device.name == name:
                return spec
        raise UnknownDeviceType(
            f"device_type is null and the sequence's device {name!r} matches no served device "
            f"({', '.join(s.pulser_device.name for s in self.registry.values())})"
        )

    def _configuration(
        self, spec: DeviceSpec, configuration: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        if configuration is None or spec.device_type != "EMU_FREE":
            return configuration
        parsed = parse_model(EmuFreeConfigurationIn, configuration, "configuration")
        return parsed.model_dump()

    def _default_runs(self, spec: DeviceSpec, body: CreateBatchIn) -> int:
        if body.backend_configuration is not None and spec.kind != EMULATOR:
            raise InvalidRequest(
                f"backend_configuration is for emulators; {spec.device_type} does not take one"
            )
        return self._shots_default(spec, body.backend_configuration)

    def _shots_default(self, spec: DeviceSpec, backend_configuration: str | None) -> int:
        if backend_configuration is None:
            return self.settings.default_runs
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
        return self.settings.default_runs

    def _jobs(
        self, batch: Batch, plan: BatchPlan, jobs: list[JobIn], cache: _SequenceCache
    ) -> list[Job]:
        records = []
        for index, job in enumerate(jobs):
            what = f"jobs[{index}]"
            text = job.sequence or plan.sequence_builder
            if text is None:
                raise InvalidSequence(
                    f"{what} has no sequence and the batch has no sequence_builder"
                )
            sequence = cache.parse(
                text, plan.spec, f"{what}.sequence" if job.sequence else "sequence_builder"
            )
            _check_build(sequence, job.variables or {}, plan.spec, what)
            runs = self._runs(job, plan, what)
            atoms = len(sequence.get_register(include_mappable=True).qubit_ids)
            reserved = predicted_result_bytes(runs, atoms, batch.backend_configuration is not None)
            records.append(Job.pending(batch, runs, job.variables, job.sequence, None, reserved))
        return records

    def _runs(self, job: JobIn, plan: BatchPlan, what: str) -> int:
        if job.runs is None:
            if plan.spec.kind != EMULATOR:
                raise InvalidRequest(f"{what}.runs is required on {plan.spec.device_type}")
            return plan.default_runs
        if job.runs > plan.spec.max_runs:
            raise InvalidRequest(
                f"{what}.runs is {job.runs}; {plan.spec.device_type} allows at most "
                f"{plan.spec.max_runs}"
            )
        return job.runs


class _SequenceCache:
    """Deserializes each distinct sequence text once per request."""

    def __init__(self, max_operations: int) -> None:
        self.max_operations = max_operations
        #: As deserialized (the device is read from it when the request names none).
        self._raw: dict[str, Sequence] = {}
        #: Checked against its device (and, for a QPU, moved onto the served device).
        self._parsed: dict[str, Sequence] = {}

    def parse(self, text: str, spec: DeviceSpec, what: str) -> Sequence:
        sequence = self._parsed.get(text)
        if sequence is None:
            sequence = self._deserialize(text, what)
            if spec.kind == QPU:
                sequence = _as_for_qpu(sequence, spec, what)
            atoms = len(sequence.get_register(include_mappable=True).qubit_ids)
            if atoms > spec.max_atoms:
                raise InvalidSequence(
                    f"{what} has {atoms} atoms; {spec.device_type} allows at most {spec.max_atoms}"
                )
            self._parsed[text] = sequence
        return sequence

    def device_name(self, text: str) -> str:
        return str(self._deserialize(text, "sequence").device.name)

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
) -> None:
    """Builds the job's sequence as a worker will, and checks the result against the device."""
    declared = set(sequence.declared_variables)
    mappable = sequence.is_register_mappable()
    allowed = declared | ({"qubits"} if mappable else set())
    unknown = sorted(set(variables) - allowed)
    if unknown:
        raise InvalidSequence(
            f"{what}.variables: unknown variable(s) {', '.join(unknown)}; "
            f"the sequence declares: {', '.join(sorted(allowed)) or 'none'}"
        )
    missing = sorted((declared | ({"qubits"} if mappable else set())) - set(variables))
    if missing:
        raise InvalidSequence(f"{what}.variables: missing value(s) for {', '.join(missing)}")
    try:
        with _quiet():
            built = sequence.build(**variables) if (variables or mappable) else sequence
    except Exception as exc:  # Pulser's own checks: shapes, channel limits, trap ids...
        raise InvalidSequence(
            f"{what}: the sequence cannot be built with these variables: {_first_line(exc)}"
        ) from None
    duration = built.get_duration(include_fall_time=True)
    if duration == 0:
        raise InvalidSequence(f"{what}: the sequence is empty (no pulse or delay on any channel)")
    if duration > spec.max_duration_ns:
        raise InvalidSequence(
            f"{what}: the sequence lasts {duration} ns; {spec.device_type} allows at most "
            f"{spec.max_duration_ns} ns"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


@contextmanager
def _quiet() -> Iterator[None]:
    """Pulser warns about things users cannot act on here; keep the API's logs clean."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
