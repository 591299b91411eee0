"""Pasqal's emulators through the platform (issue #24): EMU_SV on emu-sv, EMU_MPS on emu-mps,
EMU_FRESNEL (FRESNEL's checks and noise), driven by the unmodified SDK and Pulser's remote
backends against a real cluster; the physics each against an independent reference; bad input
refused with nothing stored."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from pasqal_cloud import RemoteMPSBackend, RemoteSVBackend
from pasqal_cloud.device import DeviceTypeName
from pulser import Pulse, Register, Sequence
from pulser.backend import BitStrings, EmulationConfig, Energy, Occupation
from pulser.backend.results import Results
from pulser.devices import MockDevice
from pulser.waveforms import InterpolatedWaveform

from launch.redis_server import free_port
from tests import sequences
from tests.helpers import call_api, create_body, record_keys, run_shim, wait_for
from workers.engines import NO_GPU

QPUS = {"EMU_FREE": 1, "EMU_SV": 1, "EMU_MPS": 1, "EMU_FRESNEL": 1}
#: 1 GB a pool process: EMU_SV's largest register is then 18 atoms (core/engines.py).
MEMORY_MB = 1024


@pytest.fixture(scope="module")
def emus(start_cluster):
    # One torch thread per engine: the suite runs three modules' clusters on two cores, and
    # threads that spin waiting for a busy core would slow every other test.
    return start_cluster(qpus=QPUS, emulator_max_memory_mb=MEMORY_MB, emulator_threads=1)


@pytest.fixture
def account(emus):
    return emus.new_account()


def chain(atoms: int, duration: int = 1000, spacing: float = 7.0) -> Sequence:
    """An adiabatic sweep of a 1D chain into its antiferromagnetic order (the benchmarks' too)."""
    register = Register.rectangle(1, atoms, spacing=spacing, prefix="q")
    sequence = Sequence(register, MockDevice)
    sequence.declare_channel("rydberg", "rydberg_global")
    omega = InterpolatedWaveform(duration, [1e-9, 2 * math.pi, 1e-9])
    delta = InterpolatedWaveform(duration, [-4 * math.pi, 0, 4 * math.pi])
    sequence.add(Pulse(omega, delta, 0), "rydberg")
    return sequence


def pi_pulse(atoms: int, spacing: float) -> Sequence:
    """A resonant π pulse (Ω = 4π rad/µs for 250 ns) on every atom: 25 steps of the engines."""
    register = Register.rectangle(1, atoms, spacing=spacing, prefix="q")
    sequence = Sequence(register, MockDevice)
    sequence.declare_channel("rydberg", "rydberg_global")
    sequence.add(Pulse.ConstantPulse(250, 4 * math.pi, 0.0, 0.0), "rydberg")
    return sequence


def total_variation(a: dict[str, int], b: dict[str, int]) -> float:
    na, nb = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in set(a) | set(b))


def quick_config(device_type: str, *observables) -> str:
    """A config for tests that need not the SDK's defaults: on emu-mps without its qubit
    reordering, a bandwidth search that is ~3 s of any job, 90% of a small one's."""
    options = {"optimize_qubit_ordering": False} if device_type == "EMU_MPS" else {}
    return EmulationConfig(observables=[BitStrings(), *observables], **options).to_abstract_repr()


def run_on(emus, account, device_type: str, sequence: Sequence, runs: int, **body) -> dict:
    """One job of `sequence` on `device_type` through the SDK; its results document."""
    sdk = emus.sdk(account)
    batch = sdk.create_batch(
        sequence.to_abstract_repr(),
        jobs=[{"runs": runs}],
        device_type=DeviceTypeName(device_type),
        wait=True,
        **body,
    )
    job = batch.ordered_jobs[0]
    assert job.status == "DONE", (job.status, job.errors)
    return job.full_result


# -- through the SDK's remote backends -------------------------------------------------------


def test_remote_sv_and_mps_backends_run_with_the_sdks_default_configs(emus, account):
    connection = emus.pulser_connection(account)
    sequence = chain(4, duration=200)
    for backend_type, device_type in ((RemoteSVBackend, "EMU_SV"), (RemoteMPSBackend, "EMU_MPS")):
        remote = backend_type(sequence, connection=connection).run([{"runs": 120}], wait=True)
        [results] = remote.results
        assert sum(results.final_bitstrings.values()) == 120, device_type
        batch = emus.sdk(account).get_batch(remote.batch_id)
        assert batch.device_type == device_type
        [job] = batch.ordered_jobs
        # The SDK's EMU_MPS default asks for a GPU (num_gpus_to_use=1); this machine has none.
        assert (NO_GPU in job.warnings) is (device_type == "EMU_MPS")


def test_the_observables_a_config_asks_for_come_back(emus, account):
    connection = emus.pulser_connection(account)
    sequence = chain(4, duration=200)
    observables = [BitStrings(), Energy(evaluation_times=[0.5, 1.0]), Occupation()]
    for backend_type, options in (
        (RemoteSVBackend, {}),
        (RemoteMPSBackend, {"optimize_qubit_ordering": False, "max_bond_dim": 64}),
    ):
        config = EmulationConfig(observables=observables, **options)
        remote = backend_type(sequence, connection=connection, config=config)
        [results] = remote.run([{"runs": 50}], wait=True).results
        assert {"bitstrings", "energy", "occupation"} <= set(results.get_result_tags())
        assert sum(results.final_bitstrings.values()) == 50
        occupation = results.get_result("occupation", 1.0)
        assert len(occupation) == 4 and all(0 <= float(n) <= 1 for n in occupation)


def test_an_open_batch_on_emu_sv_takes_jobs_until_closed(emus, account):
    sdk = emus.sdk(account)
    text = sequences.parametrized()
    batch = sdk.create_batch(text, jobs=[], open=True, device_type=DeviceTypeName.EMU_SV)
    batch.add_jobs([{"runs": 30, "variables": {"omega_max": 6}}], wait=True)
    batch.add_jobs([{"runs": 40, "variables": {"omega_max": 10.5}}], wait=True)
    batch.close(wait=True)
    batch = sdk.get_batch(batch.id)
    assert batch.status == "DONE"
    assert sorted(sum(j.result.values()) for j in batch.ordered_jobs) == [30, 40]


def test_emu_fresnel_checks_as_fresnel_and_emulates_its_noise(emus, account):
    sdk = emus.sdk(account)
    device = sdk.get_device_specs_dict()["EMU_FRESNEL"]
    from pulser.devices import Device

    fresnel = Device.from_abstract_repr(device) if isinstance(device, str) else device
    sequence = sequences.fresnel(fresnel, duration=200, atoms=2)
    built = sequence.build(omega_max=0.0)  # no drive: only FRESNEL's noise changes the counts
    result = run_on(emus, account, "EMU_FRESNEL", built, runs=2000)
    counts = result["counter"]
    assert sum(counts.values()) == 2000
    # SPAM: false positives (1%) and state preparation errors show as 1s without any drive.
    assert 0 < 2000 - counts.get("00", 0) < 400
    # A register FRESNEL refuses (not from its layout) is refused on EMU_FRESNEL too.
    free = Sequence(Register.rectangle(1, 2, spacing=6, prefix="q"), fresnel)
    free.declare_channel("rydberg", "rydberg_global")
    free.add(Pulse.ConstantPulse(200, 1.0, 0.0, 0.0), "rydberg")
    body = create_body(
        account, free.to_abstract_repr(), device_type="EMU_FRESNEL", jobs=[{"runs": 10}]
    )
    before = record_keys(emus)
    refused = call_api(emus, account, "POST", "/api/v1/batches", json=body)
    assert refused.status_code == 422, refused.text
    assert "cannot run on EMU_FRESNEL" in refused.json()["message"]
    assert record_keys(emus) == before


# -- physics, each against an independent reference --------------------------------------------


def test_emu_sv_samples_the_distribution_emu_free_does(emus, account):
    sequence = chain(6, duration=1000)
    sv = run_on(emus, account, "EMU_SV", sequence, runs=2000)["counter"]
    free = run_on(emus, account, "EMU_FREE", sequence, runs=2000)["counter"]
    # Two samples of 2,000 shots of one distribution over a few dozen outcomes: their total
    # variation distance is ~0.05; a wrong emulation (another phase, a missed term) is > 0.2.
    assert total_variation(sv, free) < 0.1, (sv, free)


def test_emu_mps_agrees_with_emu_sv_on_a_ten_atom_chain(emus, account):
    # Each atom's final Rydberg occupation: an expectation value, free of shot noise, so the two
    # engines (a state vector; a matrix product state at its default precision) must agree to
    # their numerical accuracy, not the statistics of a sample.
    # A resonant pulse on a chain inside each other's blockade radius (~8.7 µm at Ω = 4π):
    # entangled, with each site's occupation its own.
    sequence = pi_pulse(10, 7.0)
    occupations = {}
    for device_type in ("EMU_MPS", "EMU_SV"):
        config = quick_config(device_type, Occupation())
        result = run_on(emus, account, device_type, sequence, 500, backend_configuration=config)
        results = Results.from_abstract_repr(result["serialised_results"])
        occupations[device_type] = [float(n) for n in results.get_result("occupation", 1.0)]
    mps, sv = occupations["EMU_MPS"], occupations["EMU_SV"]
    assert max(abs(a - b) for a, b in zip(mps, sv, strict=True)) < 0.01, (mps, sv)
    assert max(sv) > 0.3  # the sweep excites the chain: the comparison is not of zeros


@pytest.mark.parametrize(("device_type", "atoms"), [("EMU_SV", 1), ("EMU_MPS", 3)])
def test_a_pi_pulse_excites_lone_atoms_and_the_blockade_stops_a_neighbour(
    emus, account, device_type, atoms
):
    # 20 µm apart the atoms barely interact (C6/r^6 ≈ 0.08 rad/µs): each is flipped alone.
    config = quick_config(device_type)
    lone = run_on(
        emus, account, device_type, pi_pulse(atoms, 20.0), 200, backend_configuration=config
    )["counter"]
    assert lone.get("1" * atoms, 0) >= 190, lone  # within the emulation's numerical error
    # 5 µm apart, the van der Waals shift (C6/r^6 ≈ 350 rad/µs) dwarfs Ω = 4π: neighbours share
    # one excitation and never hold two. (emu-mps runs 3 atoms or more, emu-sv any.)
    chain_of = max(2, atoms)
    near = run_on(
        emus, account, device_type, pi_pulse(chain_of, 5.0), 500, backend_configuration=config
    )["counter"]
    doubled = sum(n for bits, n in near.items() if "11" in bits)
    assert doubled <= 5, near
    assert sum(near.values()) == 500


# -- bad input: a clear 422, nothing stored ---------------------------------------------------


def _refused(emus, account, **changes) -> str:
    body = create_body(account, sequences.parametrized(), **{"device_type": "EMU_SV", **changes})
    before = record_keys(emus)
    reply = call_api(emus, account, "POST", "/api/v1/batches", json=body)
    assert reply.status_code == 422, reply.text
    assert record_keys(emus) == before
    return str(reply.json()["message"])


def test_bad_configs_and_registers_are_refused_with_nothing_stored(emus, account):
    assert "not a valid EmulationConfig" in _refused(
        emus, account, backend_configuration=json.dumps({"observables": "all"})
    )
    no_bonds = EmulationConfig(observables=[BitStrings()], max_bond_dim=0).to_abstract_repr()
    message = _refused(emus, account, device_type="EMU_MPS", backend_configuration=no_bonds)
    assert "max_bond_dim must be from 1" in message
    log_file = EmulationConfig(observables=[BitStrings()], log_file="/etc/x").to_abstract_repr()
    assert "log_file is not accepted" in _refused(emus, account, backend_configuration=log_file)
    unknown = EmulationConfig(observables=[BitStrings()], precision=1e-5).to_abstract_repr()
    assert "'precision' is not an option of EMU_SV" in _refused(
        emus, account, backend_configuration=unknown
    )
    # Over the largest register the specs state (memory), and over the job time limit.
    big = chain(19, duration=100).to_abstract_repr()
    message = _refused(emus, account, sequence_builder=big, jobs=[{"runs": 10}])
    assert "19 atoms; EMU_SV allows at most 18" in message
    long = chain(18, duration=10_000).to_abstract_repr()
    message = _refused(emus, account, sequence_builder=long, jobs=[{"runs": 10}])
    assert "predicted to run" in message and "job time limit of 60 s" in message
    # Memory: a bond dimension no pool process could hold at 60 atoms.
    wide = EmulationConfig(observables=[BitStrings()], max_bond_dim=4096).to_abstract_repr()
    message = _refused(
        emus,
        account,
        device_type="EMU_MPS",
        sequence_builder=chain(60, duration=100).to_abstract_repr(),
        jobs=[{"runs": 10}],
        backend_configuration=wide,
    )
    assert f"over the {MEMORY_MB:,} MB a worker process may use" in message
    assert "EMU_MPS" in _refused(emus, account, device_type="EMU_TN")
    assert "emulates at least 3" in _refused(
        emus,
        account,
        device_type="EMU_MPS",
        sequence_builder=chain(2, 100).to_abstract_repr(),
        jobs=[{"runs": 10}],
    )


def test_specs_state_the_largest_register_each_type_accepts(emus, account):
    specs = call_api(emus, account, "GET", "/api/v1/devices/specs").json()["data"]
    atoms = {t: json.loads(s)["max_atom_num"] for t, s in specs.items()}
    assert atoms["EMU_SV"] == 18  # 16 B x 2**18 x 106 Krylov vectors + the process, in 1 GB
    assert atoms["EMU_MPS"] == 100
    assert atoms["EMU_FRESNEL"] == 80  # FRESNEL's own


def test_checkpoints_and_temp_files_do_not_outlive_their_job(emus, account):
    config = EmulationConfig(
        observables=[BitStrings()], autosave_dt=11.0, optimize_qubit_ordering=False
    ).to_abstract_repr()
    before = set(Path(tempfile.gettempdir()).glob("tweezer-emu-*"))
    result = run_on(emus, account, "EMU_MPS", chain(4, 200), runs=10, backend_configuration=config)
    assert sum(result["counter"].values()) == 10
    wait_for(lambda: set(Path(tempfile.gettempdir()).glob("tweezer-emu-*")) <= before)


def test_emu_fresnel_refuses_a_noise_model_of_its_own(emus, account):
    from pulser import NoiseModel

    noisy = EmulationConfig(
        observables=[BitStrings()], noise_model=NoiseModel(dephasing_rate=0.1)
    ).to_abstract_repr()
    message = _refused(emus, account, device_type="EMU_FRESNEL", backend_configuration=noisy)
    assert "EMU_FRESNEL emulates FRESNEL's own noise" in message


def test_serialised_results_hold_the_configs_shots(emus, account):
    config = EmulationConfig(observables=[BitStrings(num_shots=77)]).to_abstract_repr()
    result = run_on(emus, account, "EMU_SV", chain(3, 300), 5, backend_configuration=config)
    results = Results.from_abstract_repr(result["serialised_results"])
    # The config's num_shots is every job's shot count (EMU_FREE's rule).
    assert sum(results.final_bitstrings.values()) == 77 == len(result["raw"])
    assert Counter(result["raw"]) == Counter(result["counter"])


# -- the pulser-pasqal shim (pasqal-cloud 0.22, its own virtualenv) ----------------------------

_SHIM = """
from pulser_pasqal import EmuMPSBackend, EmuSVBackend

shots = {}
for backend_type in (EmuSVBackend, EmuMPSBackend):
    remote = backend_type(sequence, connection=connection).run([{"runs": 60}], wait=True)
    shots[backend_type.__name__] = [sum(r.final_bitstrings.values()) for r in remote.results]
print(json.dumps(shots))
"""


def test_the_pulser_pasqal_shims_emu_sv_and_emu_mps_backends(emus, account):
    shots = run_shim(_SHIM, emus, account, chain(4, duration=200).to_abstract_repr(), 300)
    assert shots == {"EmuSVBackend": [60], "EmuMPSBackend": [60]}


# -- a host without the extra ------------------------------------------------------------------

_WITHOUT_EMU_MPS = """
import importlib.util, sys
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name == "emu_mps" else real(name, *a)
from cli.main import main
sys.exit(main())
"""


def test_tweezer_up_without_the_extra_stops_at_once_naming_the_command(tmp_path):
    """What a host without emu-mps sees (find_spec answers as it would there): `tweezer up`
    exits before any process starts, saying what to install."""
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _WITHOUT_EMU_MPS,
            "up",
            "--qpus",
            "EMU_MPS=1",
            "--data-dir",
            str(tmp_path),
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode != 0
    assert "EMU_MPS run on Pasqal's emulators" in done.stderr, done.stderr
    assert "pip install 'tweezer[emulators]'" in done.stderr
    assert not list(tmp_path.glob("logs/worker-*"))  # no worker was started
    assert time.monotonic() - started < 60
