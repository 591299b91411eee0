"""core/engines.py: which engine runs a job, which options a configuration may carry and within
which bounds, and its price in time and memory; and the worker's check that the engines are
installed. Pure functions: the fast tier."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pulser import NoiseModel
from pulser.backend import BitStrings, EmulationConfig

from core.device_types import missing_engines
from core.engines import (
    FRESNEL_SV_MAX_ATOMS,
    MAX_REGISTER,
    PROCESS_BASE_BYTES,
    Engine,
    EngineSettings,
    engine_for,
    largest_register,
    mps_state_bytes,
    sv_default_seconds,
)
from core.sequences import FRESNEL_NOISE

GENERIC = EmulationConfig(observables=[BitStrings()])._expected_kwargs() | {"default_num_shots"}


def read(device_type: str, config: EmulationConfig) -> EngineSettings:
    return EngineSettings.read(
        device_type,
        config._backend_options,
        GENERIC,
        config.noise_model,
        int(config.n_trajectories),
    )


def test_each_device_type_runs_on_its_engine_and_emu_fresnel_by_register_size():
    assert engine_for("EMU_SV", 30) is Engine.SV
    assert engine_for("EMU_MPS", 3) is Engine.MPS
    assert engine_for("EMU_FREE", 8) is Engine.QUTIP
    assert engine_for("EMU_FRESNEL", FRESNEL_SV_MAX_ATOMS) is Engine.SV
    assert engine_for("EMU_FRESNEL", FRESNEL_SV_MAX_ATOMS + 1) is Engine.MPS


def test_the_sdks_default_configs_are_accepted_at_the_engines_defaults():
    # What RemoteMPSBackend and RemoteSVBackend send (pasqal-cloud 0.24 backends.py).
    mps = EmulationConfig(
        observables=[BitStrings()],
        num_gpus_to_use=1,
        autosave_dt=math.inf,
        optimize_qubit_ordering=True,
    )
    text = mps.to_abstract_repr()
    assert '"autosave_dt": Infinity' in text  # pulser-core 1.9 writes it so; Pulser reads it
    assert read("EMU_MPS", EmulationConfig.from_abstract_repr(text)) == EngineSettings()
    assert read("EMU_SV", EmulationConfig(observables=[BitStrings()])) == EngineSettings()


@pytest.mark.parametrize(
    ("device_type", "options", "message"),
    [
        ("EMU_MPS", {"max_bond_dim": 0}, "max_bond_dim must be from 1"),
        ("EMU_MPS", {"max_bond_dim": 2.5}, "max_bond_dim must be an integer"),
        ("EMU_MPS", {"precision": math.nan}, "precision must be a number"),
        ("EMU_MPS", {"autosave_dt": 5}, "autosave_dt must be from 10"),
        ("EMU_SV", {"dt": 0.001}, "dt must be from 1"),
        ("EMU_SV", {"dt": "fast"}, "dt must be a number"),
        ("EMU_SV", {"gpu": "yes"}, "gpu must be true, false or null"),
        ("EMU_SV", {"solver": "euler"}, "solver must be one of default, montecarlo, lindblad"),
        ("EMU_SV", {"max_bond_dim": 8}, "'max_bond_dim' is not an option of EMU_SV"),
        ("EMU_SV", {"log_file": "/etc/passwd"}, "log_file is not accepted"),
        ("EMU_MPS", {"autosave_prefix": "/root/x"}, "autosave_prefix is not accepted"),
        ("EMU_FRESNEL", {"whatever": 1}, "'whatever' is not an option of EMU_FRESNEL"),
    ],
)
def test_each_bad_option_is_named(device_type, options, message):
    config = EmulationConfig(observables=[BitStrings()], **options)
    with pytest.raises(ValueError, match=message):
        read(device_type, config)


def test_a_finer_step_and_noise_trajectories_scale_the_price():
    assert EngineSettings(dt=5.0).cost_scale(Engine.SV, 10) == pytest.approx(2.0)
    # Dephasing is Lindbladian: emu-sv evolves a density matrix, as if of twice the atoms.
    dephasing = read(
        "EMU_SV", EmulationConfig(observables=[BitStrings()], noise_model=FRESNEL_NOISE)
    )
    assert dephasing.lindblad and dephasing.trajectories == 1  # n_trajectories: one run
    assert dephasing.cost_scale(Engine.SV, 12) == pytest.approx(
        sv_default_seconds(24) / sv_default_seconds(12)
    )
    assert dephasing.cost_scale(Engine.SV, 12) > 100
    # Noise drawn per run: one emulation per trajectory.
    amplitude = NoiseModel(amp_sigma=0.1, laser_waist=100.0)
    config = EmulationConfig(observables=[BitStrings()], noise_model=amplitude, n_trajectories=7)
    settings = read("EMU_MPS", config)
    assert settings.trajectories == 7 and not settings.lindblad
    assert settings.cost_scale(Engine.MPS, 20) == pytest.approx(7.0)


def test_memory_is_the_largest_state_and_its_workspace():
    sv = EngineSettings(max_krylov_dim=10)
    assert sv.memory_bytes(Engine.SV, 10) == PROCESS_BASE_BYTES + 16 * 2**10 * 16
    # A bond of a matrix product state is bounded by the Hilbert space on its smaller side.
    assert mps_state_bytes(4, 1024) == 16 * (1 * 2 * 2 + 2 * 2 * 4 + 4 * 2 * 2 + 2 * 2 * 1)
    assert mps_state_bytes(40, 8) == mps_state_bytes(40, 8)
    assert mps_state_bytes(40, 8) < mps_state_bytes(40, 64) < mps_state_bytes(40, 1024)


@given(st.integers(min_value=256, max_value=2**36))
def test_the_largest_register_is_the_last_that_fits(budget):
    atoms = largest_register(Engine.SV, budget)
    defaults = EngineSettings()
    assert 1 <= atoms <= MAX_REGISTER
    assert atoms == 1 or defaults.memory_bytes(Engine.SV, atoms) <= budget
    assert atoms == MAX_REGISTER or defaults.memory_bytes(Engine.SV, atoms + 1) > budget
    assert largest_register(Engine.MPS, budget) == MAX_REGISTER  # priced per job's bond


def test_a_host_without_the_extra_is_told_the_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "emu_mps" else real(name)
    )
    message = missing_engines(["EMU_FREE", "EMU_MPS"])
    assert message is not None
    assert "EMU_MPS run on Pasqal's emulators" in message and "emu_mps missing" in message
    assert "pip install 'tweezer[emulators]'" in message
    assert missing_engines(["EMU_FREE", "FRESNEL"]) is None


def test_the_worker_decides_logs_checkpoints_gpus_and_fresnels_noise():
    """workers/engines.py engine_options_for, without torch: what the engine is given."""
    from workers.engines import NO_GPU, engine_options_for

    sdk_mps = {"observables": [], "num_gpus_to_use": 1, "autosave_dt": math.inf}
    options, notes = engine_options_for(sdk_mps, Engine.MPS, "EMU_MPS", False, "/tmp/job")
    assert options["gpu"] is False and notes == (NO_GPU,)  # asked for one; there is none
    assert "num_gpus_to_use" not in options  # deprecated in emu-mps for `gpu`
    assert options["autosave_prefix"] == "/tmp/job/emu_mps_save_"
    assert options["log_level"] == 30  # warnings only: no line per time step
    options, notes = engine_options_for(sdk_mps, Engine.MPS, "EMU_MPS", True, "/tmp/job")
    assert options["gpu"] is True and notes == ()
    options, notes = engine_options_for({"gpu": None}, Engine.SV, "EMU_SV", False, "/w")
    assert options["gpu"] is None and notes == ()  # the engine's own choice: a GPU if any
    assert "autosave_prefix" not in options  # emu-sv writes no checkpoints
    # EMU_FRESNEL on emu-sv: the MPS options its config may carry are dropped; FRESNEL's noise.
    fresnel = {"max_bond_dim": 64, "dt": 5.0}
    options, _ = engine_options_for(fresnel, Engine.SV, "EMU_FRESNEL", False, "/w")
    assert "max_bond_dim" not in options and options["dt"] == 5.0
    assert options["noise_model"] == FRESNEL_NOISE
