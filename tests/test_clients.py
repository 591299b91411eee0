"""Real clients nobody here wrote, each installed from PyPI and driven against a cluster as its
users drive it: the SDK guide's first line, qrmi (the Slurm QPU plugins' resource interface),
qiskit-pasqal-provider, and the deprecated pulser-pasqal shim (in a virtualenv of its own)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pulser
import pytest
import requests
from pulser import Pulse, Register, Sequence
from pulser.abstract_repr import deserialize_device
from pulser.backend.remote import JobParams
from pulser.devices import AnalogDevice, DigitalAnalogDevice, MockDevice
from qiskit.circuit import Parameter, QuantumCircuit

from core.db import Db
from core.device_status import DeviceStatuses
from core.status import DeviceStatus
from core.timefmt import now_us
from tests import sequences
from tests.factories import tweezer_up
from tests.helpers import auth, create_body, post_gzip, run_shim

JOB = {"runs": 20, "variables": {"omega_max": 6}}
ROOT = Path(__file__).parent.parent


def sequence_on(device: object, atoms: int = 2, rows: int = 1) -> str:
    """The guide's sequence (a pulse of amplitude `omega_max` on a free register of `rows`
    rows) built on `device`."""
    register = Register.rectangle(rows, atoms // rows, spacing=6, prefix="q")
    sequence = Sequence(register, device)
    sequence.declare_channel("rydberg", "rydberg_global")
    omega_max = sequence.declare_variable("omega_max")
    sequence.add(Pulse.ConstantPulse(200, omega_max, 0, 0), "rydberg")
    return str(sequence.to_abstract_repr())


# -- 1. the guide's first example: no device type ------------------------------------------


@pytest.mark.parametrize("device", [AnalogDevice, DigitalAnalogDevice, MockDevice])
def test_the_guides_first_line_runs_without_a_device_type(cluster, sdk, device):
    """`sdk.create_batch(serialized_sequence, [job1, job2], wait=True)`: no device argument.
    None of these sequences can run on FRESNEL (a free register, or not its device), so the
    cluster's default device type, EMU_FREE, takes them."""
    batch = sdk.create_batch(sequence_on(device), [JOB, {**JOB, "runs": 10}], wait=True)
    assert batch.status == "DONE" and batch.device_type == "EMU_FREE"
    assert [sum(j.result.values()) for j in batch.ordered_jobs] == [20, 10]


def test_a_sequence_built_for_the_qpu_goes_to_the_qpu(cluster, sdk):
    """Pulser's own AnalogDevice is FRESNEL's twin (same specs, another name): a sequence on
    it, with a register from its layout, goes to FRESNEL."""
    device = AnalogDevice
    register = device.pre_calibrated_layouts[0].define_register(0, 1, qubit_ids=["q0", "q1"])
    sequence = Sequence(register, device)
    sequence.declare_channel("rydberg", "rydberg_global")
    omega_max = sequence.declare_variable("omega_max")
    sequence.add(Pulse.ConstantPulse(500, omega_max, 0, 0), "rydberg")
    sequence.measure("ground-rydberg")
    batch = sdk.create_batch(sequence.to_abstract_repr(), [JOB], wait=True)
    assert batch.status == "DONE" and batch.device_type == "FRESNEL"


def test_a_batch_nothing_served_can_run_says_what_was_considered(cluster, account):
    body = create_body(account, sequence_on(AnalogDevice, atoms=18, rows=3), device_type=None)
    response = post_gzip(cluster, account, "/api/v1/batches", body)
    assert response.status_code == 422
    message = response.json()["data"]["description"]
    assert "FRESNEL (the sequence's device AnalogDevice has its specs) refused it" in message
    assert "EMU_FREE (the cluster's default device type) refused it" in message
    assert "18 atoms" in message


@pytest.mark.slow
def test_qrmi_and_the_guides_first_line_against_tweezer_up(tmp_path, monkeypatch):
    """The README's way: `tweezer up`, then the guide's first line and a qrmi task, both with
    what cluster.json says and nothing else."""
    from qrmi import Payload, QRMIService, TaskStatus

    from cli.demo import connect_sdk
    from launch.redis_server import free_port
    from tests.helpers import wait_for

    data_dir, port = tmp_path / "data", free_port()
    with (tmp_path / "up.log").open("w") as out:
        up = tweezer_up(port, data_dir, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Tweezer is up" in (tmp_path / "up.log").read_text(), timeout_s=90)
        info = json.loads((data_dir / "cluster.json").read_text())
        batch = connect_sdk(info).create_batch(SEQ_TEXT, [JOB], wait=True)
        assert batch.status == "DONE" and batch.device_type == "EMU_FREE"
        base = info["core_url"].removesuffix("/core-fast")
        monkeypatch.setenv("EMU_FREE_QRMI_PASQAL_CLOUD_BASE_URL", base)
        monkeypatch.setenv("EMU_FREE_QRMI_PASQAL_CLOUD_AUTH_TOKEN", info["token"])
        monkeypatch.setenv("EMU_FREE_QRMI_PASQAL_CLOUD_PROJECT_ID", info["project_id"])
        monkeypatch.setenv("QRMI_JOB_QPU_RESOURCES", "EMU_FREE")
        monkeypatch.setenv("QRMI_JOB_QPU_TYPES", "pasqal-cloud")
        emu = QRMIService().resource("EMU_FREE")
        task = emu.task_start(Payload.PasqalCloud(sequence=built(SEQ_TEXT), job_runs=30))
        assert wait_task(emu, task) == TaskStatus.Completed
        assert sum(json.loads(emu.task_result(task).value)["counter"].values()) == 30
    finally:
        up.terminate()
        up.wait(60)


# -- 2. qrmi --------------------------------------------------------------------------------


@pytest.fixture
def qrmi_env(cluster, account, monkeypatch):
    """The environment the Slurm SPANK plugin sets for a job given both device types."""
    for resource in ("FRESNEL", "EMU_FREE"):
        monkeypatch.setenv(f"{resource}_QRMI_PASQAL_CLOUD_BASE_URL", cluster.base_url)
        monkeypatch.setenv(f"{resource}_QRMI_PASQAL_CLOUD_AUTH_TOKEN", account.token)
        monkeypatch.setenv(f"{resource}_QRMI_PASQAL_CLOUD_PROJECT_ID", account.project_id)
    monkeypatch.setenv("QRMI_JOB_QPU_RESOURCES", "FRESNEL,EMU_FREE")
    monkeypatch.setenv("QRMI_JOB_QPU_TYPES", "pasqal-cloud,pasqal-cloud")


def wait_task(resource, task_id: str):
    from qrmi import TaskStatus

    final = (TaskStatus.Completed, TaskStatus.Failed, TaskStatus.Cancelled)
    deadline = time.monotonic() + 60
    while (status := resource.task_status(task_id)) not in final:
        assert time.monotonic() < deadline, f"task {task_id} still {status}"
        time.sleep(0.1)
    return status


def built(text: str) -> str:
    return str(Sequence.from_abstract_repr(text).build(omega_max=6).to_abstract_repr())


def test_qrmi_discovers_runs_stops_and_reads_results(cluster, qrmi_env):
    from qrmi import Payload, QRMIService, TaskStatus

    service = QRMIService()
    assert sorted(r.resource_id() for r in service.resources()) == ["EMU_FREE", "FRESNEL"]
    emu = service.resource("EMU_FREE")
    assert emu.status().to_dict()["status"] == "online"
    acquired = emu.acquire()  # Pasqal Cloud has no sessions: qrmi makes no call for these
    emu.release(acquired)
    [target] = [t for t in json.loads(emu.target().value) if t["device_type"] == "EMU_FREE"]
    assert deserialize_device(target["specs"]).name == "EmuFree"  # a Pulser device

    task = emu.task_start(Payload.PasqalCloud(sequence=built(SEQ_TEXT), job_runs=50))
    assert wait_task(emu, task) == TaskStatus.Completed
    counter = json.loads(emu.task_result(task).value)["counter"]
    assert sum(counter.values()) == 50

    # Accessibility follows the device's status: a DOWN QPU is not offered to Slurm jobs.
    fresnel = service.resource("FRESNEL")
    statuses = DeviceStatuses(Db.of(cluster.client, cluster.settings.namespace))
    statuses.set("FRESNEL", DeviceStatus.DOWN, "laser swap", now_us())
    try:
        assert fresnel.status().to_dict()["status"] != "online"
        with pytest.warns(DeprecationWarning):  # qrmi 0.26 prefers status()
            assert fresnel.is_accessible() is False
        assert [r.resource_id() for r in QRMIService().resources()] == ["EMU_FREE"]
    finally:
        statuses.set("FRESNEL", DeviceStatus.UP, "", now_us())
    assert fresnel.status().to_dict()["status"] == "online"


def test_qrmi_start_stop_start_frees_the_qpu_within_two_ticks_twenty_times(cluster, qrmi_env):
    """qrmi's own example: start a task, stop it, start another. The stopped batch's job may be
    dispatched and not yet claimed; the next batch must still start within two scheduler
    ticks, not after the dispatch timeout."""
    from qrmi import Payload, QRMIService, TaskStatus

    emu = QRMIService().resource("EMU_FREE")
    payload = Payload.PasqalCloud(sequence=built(SEQ_TEXT), job_runs=20)
    tick_us = int(cluster.settings.scheduler_tick_s * 1_000_000)
    for _ in range(20):
        stopped = emu.task_start(payload)
        emu.task_stop(stopped)
        following = emu.task_start(payload)
        assert wait_task(emu, following) == TaskStatus.Completed
        assert emu.task_status(stopped) == TaskStatus.Cancelled
        first, second = cluster.store.get_batches([stopped, following])
        free_from = max(first.end_us, second.created_us)
        assert second.start_us - free_from <= 2 * tick_us, (second.start_us - free_from) / 1e6


def test_pulser_qpu_backend_and_the_sampler_through_qrmi(cluster, qrmi_env):
    from qrmi import QRMIService
    from qrmi.primitives.pasqal.sampler import QPPSamplerV2
    from qrmi.pulser import PulserQRMIConnection

    fresnel = QRMIService().resource("FRESNEL")
    connection = PulserQRMIConnection(fresnel)
    device = connection.fetch_available_devices()["FRESNEL"]
    sequence = sequences.fresnel(device)
    results = pulser.QPUBackend(sequence, connection).run(
        [JobParams(runs=30, variables={"omega_max": 6})], wait=True
    )
    [result] = results.get_available_results().values()
    assert sum(result.final_bitstrings.values()) == 30

    sampler = QPPSamplerV2(fresnel, options={"run_options": {"poll_interval_seconds": 0.2}})
    counts = sampler.run([analog_circuit(0.0)], shots=40).result()[0].data.counts
    assert sum(counts.values()) == 40


# -- 3. qiskit-pasqal-provider --------------------------------------------------------------


def analog_circuit(phase: float | Parameter) -> QuantumCircuit:
    """The provider's quickstart circuit: one analog gate over two atoms."""
    from qiskit_pasqal_provider.providers.gate import HamiltonianGate, InterpolatePoints

    times = [0, 0.2, 0.8, 1]
    gate = HamiltonianGate(
        InterpolatePoints(values=[0, 4, 4, 0], times=times),
        InterpolatePoints(values=[-10, -10, 5, 5], times=times),
        phase,
        [[0, 0], [5, 0]],
    )
    circuit = QuantumCircuit(2)
    circuit.append(gate, circuit.qubits)
    return circuit


def test_qiskit_pasqal_provider_qpu_backend_and_sampler(cluster, account):
    """Its QPUBackend submits without a device type, and sends `variables` for a sequence it
    has built already: accepted, the ignored variable noted on the job."""
    from pasqal_cloud.authentication import TokenProvider
    from pasqal_cloud.endpoints import Endpoints
    from qiskit_pasqal_provider.providers import SamplerV2
    from qiskit_pasqal_provider.providers.backends.qpu import QPUBackend
    from qiskit_pasqal_provider.utils import RemoteConfig

    class Token(TokenProvider):
        def get_token(self) -> str:
            return account.token

    config = RemoteConfig(
        project_id=account.project_id,
        token_provider=Token(),
        endpoints=Endpoints(core=cluster.core_url, account=cluster.account_url),
    )
    backend = QPUBackend(config)
    plain = SamplerV2(backend).run([analog_circuit(0.0)], shots=40).result()
    assert sum(plain[0].data.counts.values()) == 40

    phase = Parameter("phase")
    parameterized = SamplerV2(backend).run([(analog_circuit(phase), {phase: 0.2})], shots=30)
    assert sum(parameterized.result()[0].data.counts.values()) == 30
    batches = cluster.sdk(account).get_batches().results
    assert {b.device_type for b in batches} == {"FRESNEL"}
    newest = max(batches, key=lambda b: b.created_at)
    [job] = requests.get(
        f"{cluster.core_url}/api/v2/jobs",
        params={"batch_id": newest.id},
        headers=auth(account),
        timeout=30,
    ).json()["data"]
    assert job["variables"] == {"phase": 0.2}
    assert job["warnings"] == ["variable(s) phase ignored: the sequence declares none"]


# -- 4. the pulser-pasqal shim --------------------------------------------------------------

_SHIM = """
from pulser.backend import BitStrings, EmulationConfig
from pulser_pasqal import EmuFreeBackendV2

config = EmulationConfig(observables=[BitStrings(num_shots=40)])
backend = EmuFreeBackendV2(sequence, connection=connection, config=config)
def shots(remote):
    # In an open batch the shim does not wait: poll, as a variational loop does.
    for _ in range(600):
        done = remote.get_available_results()
        if len(done) == len(remote.job_ids):
            return [sum(done[j].final_bitstrings.values()) for j in remote.job_ids]
        time.sleep(0.1)
    raise TimeoutError(remote.job_ids)

closed = shots(backend.run([{"variables": {"omega_max": 6}}], wait=True))
with backend.open_batch() as batch:
    first = backend.run([{"variables": {"omega_max": 6}}], wait=True)
    opened = shots(first)
    second = backend.run([{"variables": {"omega_max": 10.5}}], wait=True)
    opened += shots(second)
same = first.batch_id == second.batch_id
print(json.dumps({"closed": closed, "open": opened, "open_batch": same}))
"""


def test_the_pulser_pasqal_shim_gets_the_shots_its_config_asks_for(cluster, account):
    """pulser-pasqal 0.24 (pins pasqal-cloud 0.22, so its own virtualenv): PasqalCloud,
    EmuFreeBackendV2 sending `runs: 1` beside BitStrings(num_shots=40), and open_batch()."""
    assert run_shim(_SHIM, cluster, account, SEQ_TEXT) == {
        "closed": [40],
        "open": [40, 40],
        "open_batch": True,
    }


SEQ_TEXT = sequences.parametrized()
