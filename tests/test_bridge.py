"""The FRESNEL QPU behind the hardware bridge: Pulser's QPUBackend, strict validation, device
statuses that pause and resume batches, and a second driver behind the same interface."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from pulser import QPUBackend
from pulser.backend.remote import JobParams

from core.devices import device_registry
from core.store import BatchQuery, Page
from tests import sequences
from tests.helpers import call_api, create_body, run_admin, scheduler_passes, wait_for

OMEGA = {"omega_max": 6}


@pytest.fixture
def fresnel(cluster, account):
    connection = cluster.pulser_connection(account)
    return connection, connection.fetch_available_devices()["FRESNEL"]


def test_qpu_backend_runs_on_fresnel_through_the_bridge(cluster, account, fresnel):
    connection, device = fresnel
    assert device.name == "Fresnel" and device.requires_layout
    backend = QPUBackend(sequences.fresnel(device), connection=connection)
    results = backend.run(
        [JobParams(runs=60, variables=OMEGA), JobParams(runs=20, variables=OMEGA)], wait=True
    )

    assert [sum(r.bitstring_counts.values()) for r in results] == [60, 20]
    batch = cluster.sdk(account).get_batch(results.batch_id)
    assert batch.device_type == "FRESNEL"  # inferred: Pulser sends device_type null
    assert batch.status == "DONE" and batch.device_status == "UP"
    document = batch.ordered_jobs[0].full_result
    assert len(document["raw"]) == 60 and document.get("serialised_results") is None


def test_qpu_backend_open_batch(cluster, account, fresnel):
    connection, device = fresnel
    backend = QPUBackend(sequences.fresnel(device), connection=connection)
    with backend.open_batch():
        first = backend.run([JobParams(runs=10, variables=OMEGA)], wait=True)
        second = backend.run([JobParams(runs=15, variables={"omega_max": 3})], wait=True)
    assert first.batch_id == second.batch_id
    assert [sum(r.bitstring_counts.values()) for r in second] == [15]
    sdk = cluster.sdk(account)
    batch = wait_for(lambda: (b := sdk.get_batch(first.batch_id)).status == "DONE" and b)
    assert [j.runs for j in batch.ordered_jobs] == [10, 15]


def refusal(cluster, account, sequence: str, jobs: list[dict], device_type="FRESNEL", **extra):
    """POSTs a batch that must be refused; returns the error's description."""
    body = create_body(account, sequence, jobs=jobs, device_type=device_type, **extra)
    response = call_api(cluster, account, "POST", "/api/v1/batches", json=body)
    assert 400 <= response.status_code < 500, response.text
    return response.json()["data"]["description"]


def test_what_the_qpu_would_reject_is_refused_at_submission(cluster, account, fresnel):
    _, device = fresnel
    good = sequences.fresnel(device).to_abstract_repr()
    job = {"runs": 10, "variables": OMEGA}
    # A free register (no layout) on a sequence that otherwise names the Fresnel device.
    free_register = sequences.parametrized().replace('"AnalogDevice"', '"Fresnel"')

    assert "from a `RegisterLayout`" in refusal(cluster, account, free_register, [job])
    too_long = sequences.fresnel(device, duration=7000).to_abstract_repr()
    assert "6000" in refusal(cluster, account, too_long, [job])
    assert "at most 2000" in refusal(cluster, account, good, [{"runs": 2001, "variables": OMEGA}])
    assert "runs is required on FRESNEL" in refusal(cluster, account, good, [{"variables": OMEGA}])
    too_strong = [{"runs": 10, "variables": {"omega_max": 50}}]
    assert "amplitude" in refusal(cluster, account, good, too_strong)
    emulator_config = refusal(cluster, account, good, [job], backend_configuration="{}")
    assert "backend_configuration is for emulators" in emulator_config
    total, _ = cluster.store.query_batches(BatchQuery(project_id=[account.project_id]), Page())
    assert total == 0  # nothing stored


def fresnel_device(cluster):
    return device_registry(cluster.settings)["FRESNEL"].pulser_device


@pytest.fixture(scope="module")
def paced(start_cluster):
    # 20x faster than the default virtual QPU: a register loads in 1 s, 100 shots take 1 s,
    # so a 300-shot job runs across several heartbeats.
    return start_cluster(qpus={"FRESNEL": 1}, bridge_speedup=20.0)


def test_maintenance_pauses_a_running_batch_and_up_resumes_it(paced):
    sdk = paced.sdk(paced.new_account())
    sequence = sequences.fresnel(fresnel_device(paced)).to_abstract_repr()
    # The first job runs across several heartbeats, long enough (9 s) for `tweezer device
    # status` to start and act while it runs, even on a loaded machine (300 shots once were
    # done first in CI); the others are short (their pause is what matters, and the
    # scheduler's rule is now-driven in tests/test_scheduler.py).
    runs = [900, 30, 30, 30]
    batch = sdk.create_batch(
        sequence, [{"runs": r, "variables": OMEGA} for r in runs], device_type="FRESNEL"
    )
    jobs = batch.ordered_jobs
    wait_for(lambda: sdk.get_job_status(jobs[0].id).value == "RUNNING", timeout_s=30)
    # The bridge reports shots as they come (heartbeats carry them to the job).
    wait_for(lambda: 0 < sdk.get_job(jobs[0].id).progress < 900, timeout_s=30, interval_s=0.05)

    try:
        assert "MAINTENANCE" in run_admin(
            paced, "device", "status", "FRESNEL", "MAINTENANCE", "--reason", "laser"
        )
        assert sdk.get_job_status(jobs[0].id).value == "RUNNING"  # set while it ran
        waiting = sdk.create_batch(
            sequence, [{"runs": 10, "variables": OMEGA}], device_type="FRESNEL"
        )
        wait_for(lambda: sdk.get_job_status(jobs[0].id).value == "DONE", timeout_s=60)
        scheduler_passes(paced, "FRESNEL-0", 3)  # nothing more may be dispatched
        paused = sdk.get_batch(batch.id)
        assert paused.status == "RUNNING" and paused.device_status == "MAINTENANCE"
        assert [sdk.get_job_status(j.id).value for j in jobs[1:]] == ["PENDING"] * 3
        assert sdk.get_batch(waiting.id).status == "PENDING"
    finally:
        # UP again whatever happened: the module's other tests share the device.
        run_admin(paced, "device", "status", "FRESNEL", "UP")
    done = wait_for(lambda: (b := sdk.get_batch(batch.id)).status == "DONE" and b, timeout_s=60)
    assert [j.status for j in done.ordered_jobs] == ["DONE"] * 4  # nothing lost
    assert [sum(j.result.values()) for j in done.ordered_jobs] == runs
    wait_for(lambda: sdk.get_batch(waiting.id).status == "DONE", timeout_s=30)


def test_no_batch_starts_in_a_calibration_window(paced):
    sdk = paced.sdk(paced.new_account())
    sequence = sequences.fresnel(fresnel_device(paced)).to_abstract_repr()
    listed = run_admin(paced, "device", "calibrate", "FRESNEL", "--duration", "3")
    assert "CALIBRATING" in listed
    window_end = datetime.fromisoformat(re.findall(r" to (\S+)", listed)[-1])
    batch = sdk.create_batch(sequence, [{"runs": 10, "variables": OMEGA}], device_type="FRESNEL")
    held = sdk.get_batch(batch.id)
    assert held.status == "PENDING" and held.device_status == "CALIBRATING"
    finished = wait_for(lambda: (b := sdk.get_batch(batch.id)).status == "DONE" and b, timeout_s=30)
    # It started only once the window was over (the scheduler's rule, now-driven in
    # tests/test_scheduler.py; here the whole cluster obeys it).
    assert datetime.fromisoformat(finished.start_datetime) >= window_end
    assert finished.device_status == "UP"


def test_a_second_driver_behind_the_same_interface(scripted):
    cluster, log = scripted
    sdk = cluster.sdk(cluster.new_account())
    sequence = sequences.fresnel(fresnel_device(cluster)).to_abstract_repr()
    batch = sdk.create_batch(
        sequence,
        [{"runs": 7, "variables": OMEGA}, {"runs": 5, "variables": OMEGA}],
        device_type="FRESNEL",
        wait=True,
    )
    assert [j.result for j in batch.ordered_jobs] == [{"11": 7}, {"11": 5}]
    assert log.read_text().splitlines()[-4:] == ["load 2", "run 7", "load 2", "run 5"]

    blocking = sdk.create_batch(
        sequence,
        [{"runs": 1500, "variables": OMEGA}, {"runs": 3, "variables": OMEGA}],
        device_type="FRESNEL",
    )
    stuck, after = blocking.ordered_jobs
    wait_for(lambda: sdk.get_job_status(stuck.id).value == "RUNNING", timeout_s=30)
    sdk.cancel_job(stuck.id)
    wait_for(lambda: "aborted" in log.read_text(), timeout_s=30)  # the driver was told to stop
    finished = wait_for(
        lambda: (b := sdk.get_batch(blocking.id)).status == "DONE" and b, timeout_s=30
    )
    assert [j.status for j in finished.ordered_jobs] == ["CANCELED", "DONE"]
    assert sdk.get_job(after.id).result == {"11": 3}
