"""Validation at the edge: turns a create-batch or add-jobs body into records, or refuses it.

Every sequence is deserialized with Pulser's own schema (`Sequence.from_abstract_repr`), so the
legacy JSON format and anything malformed are refused; every job is built with its variables
and checked against its device's limits. Nothing reaches Redis, let alone a worker, unless the
whole request passes: one bad job refuses the request and names the job.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

from pulser.backend import BitStrings
from pulser.backend.config import EmulationConfig

from api.schemas import CreateBatchIn, EmuFreeConfigurationIn, JobIn, parse_model
from api.sequence_checks import CheckedSequences, SequenceCache, first_line
from core.costs import CostModel, Costs
from core.device_types import TORCH_ENGINES, DeviceKind, DeviceType, retired_message
from core.devices import DeviceSpec
from core.engines import MIN_ATOMS, Engine, EngineSettings, engine_for
from core.errors import (
    Conflict,
    InvalidBackendConfiguration,
    InvalidRequest,
    InvalidSequence,
    UnknownDeviceType,
)
from core.hints import given_qpu_seconds
from core.quiet import quiet
from core.quotas import predicted_result_bytes
from core.records import Batch, Job, Principal
from core.sequences import FRESNEL_NOISE
from core.settings import Settings
from core.status import BatchStatus
from core.timefmt import to_iso
from core.webhooks import check_at_submission


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
    #: On Pasqal's emulators (EMU_SV, EMU_MPS, EMU_FRESNEL), what of the configuration prices
    #: each job in time and memory; None elsewhere.
    engine: EngineSettings | None = None


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

    def _cache(self) -> SequenceCache:
        return SequenceCache(self.settings.max_sequence_operations, self.checked)

    def cost_model(self, spec: DeviceSpec) -> CostModel:
        if self.costs is not None:
            return self.costs.model(spec.device_type, spec.kind)
        return CostModel(
            spec.kind, self.settings.pool_size(spec.device_type), device_type=spec.device_type
        )

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
            retired = retired_message(body.device_type)
            if spec is None and retired is not None:
                raise UnknownDeviceType(retired)
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
        cache: SequenceCache,
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
        self, body: CreateBatchIn, cache: SequenceCache
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
        # A QPU before its emulation (FRESNEL before EMU_FRESNEL, both named Fresnel), whatever
        # order `--qpus` named them in: Pulser's QPUBackend means the device.
        found.sort(key=lambda candidate: candidate[0].kind is not DeviceKind.QPU)
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
        plan = BatchPlan(
            spec,
            batch.sequence_builder,
            self.settings.default_runs,
            *self._read_config(spec, batch.backend_configuration),
        )
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
            copy.cost_scale = job.cost_scale
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

    def _shots(
        self, spec: DeviceSpec, body: CreateBatchIn
    ) -> tuple[int, int | None, EngineSettings | None]:
        """The plan's (default_runs, config_shots, engine) for a new batch on `spec`."""
        if body.backend_configuration is not None and spec.kind is not DeviceKind.EMULATOR:
            raise InvalidRequest(
                f"backend_configuration is for emulators; {spec.device_type} does not take one"
            )
        return self.settings.default_runs, *self._read_config(spec, body.backend_configuration)

    def _read_config(
        self, spec: DeviceSpec, backend_configuration: str | None
    ) -> tuple[int | None, EngineSettings | None]:
        """A backend configuration's BitStrings `num_shots` (if it sets one) and, on Pasqal's
        emulators, its engine settings, every option checked."""
        config: EmulationConfig
        if backend_configuration is None:
            config = EmulationConfig(observables=[BitStrings()])
        else:
            try:
                with quiet():
                    config = EmulationConfig.from_abstract_repr(backend_configuration)
            except Exception as exc:  # Pulser raises many types for a malformed config.
                raise InvalidBackendConfiguration(
                    f"backend_configuration is not a valid EmulationConfig: {first_line(exc)}"
                ) from None
        shots = next(
            (
                int(o.num_shots)
                for o in config.observables
                if isinstance(o, BitStrings) and o.num_shots
            ),
            None,
        )
        if spec.device_type not in TORCH_ENGINES:
            return shots, None
        noise = config.noise_model
        if spec.device_type == DeviceType.EMU_FRESNEL:
            if noise.noise_types:
                raise InvalidBackendConfiguration(
                    "backend_configuration: EMU_FRESNEL emulates FRESNEL's own noise; "
                    "send no noise_model (or use EMU_SV or EMU_MPS for a noise model of your own)"
                )
            noise = FRESNEL_NOISE
        try:
            engine = EngineSettings.read(
                spec.device_type,
                # What the sender set, as Pulser keeps it; of which Pulser's own options.
                config._backend_options,
                config._expected_kwargs() | {"default_num_shots"},
                noise,
                int(config.n_trajectories),
            )
        except ValueError as exc:
            raise InvalidBackendConfiguration(f"backend_configuration: {exc}") from None
        return shots, engine

    def _jobs(
        self,
        batch: Batch,
        plan: BatchPlan,
        jobs: list[JobIn],
        cache: SequenceCache,
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
            if plan.engine is not None:
                record.cost_scale = self._check_engine(
                    plan.spec, plan.engine, checked.sequence, what, atoms
                )
            seconds = costs.job_seconds(atoms, duration_ns, runs, record.cost_scale)
            given = given_qpu_seconds(job.variables)
            if self.settings.synthetic_devices and given is not None:
                # A synthetic device takes what the load test says (workers/synthetic.py): the
                # policies, forecasts and the dispatcher's chunks are told so.
                seconds = given
            self._check_predicted_time(plan.spec, what, atoms, duration_ns, seconds)
            record.qpu_s = costs.qpu_share_s(seconds)
            records.append(record)
        return records

    def _check_engine(
        self, spec: DeviceSpec, settings: EngineSettings, sequence: Any, what: str, atoms: int
    ) -> float:
        """Whether a job fits Pasqal's emulator that will run it: its register size and basis,
        and its memory within what a pool process may use. Returns its cost scale
        (core/engines.py)."""
        device_type = spec.device_type
        engine = engine_for(device_type, atoms)
        if atoms < MIN_ATOMS[engine]:
            raise InvalidSequence(
                f"{what} has {atoms} atom(s); {device_type} ({engine}) emulates at least "
                f"{MIN_ATOMS[engine]} (use EMU_SV)"
            )
        bases = set(sequence.get_addressed_bases())
        if bases - {"ground-rydberg"}:
            raise InvalidSequence(
                f"{what}: {device_type} ({engine}) emulates the ground-rydberg basis only; the "
                f"sequence addresses {', '.join(sorted(bases))} (use EMU_FREE)"
            )
        needed = settings.memory_bytes(engine, atoms)
        budget = self.settings.emulator_max_memory_mb * 2**20
        if needed > budget:
            raise InvalidSequence(
                f"{what} needs about {needed / 2**20:,.0f} MB on {device_type} ({engine}, "
                f"{atoms} atoms), over the {budget / 2**20:,.0f} MB a worker process may use: "
                "use fewer atoms" + (", or a lower max_bond_dim" if engine is Engine.MPS else ""),
                needed_mb=round(needed / 2**20),
                limit_mb=self.settings.emulator_max_memory_mb,
            )
        return settings.cost_scale(engine, atoms)

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
