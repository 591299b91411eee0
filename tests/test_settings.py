"""Settings: read from the environment, validated with messages naming what is allowed."""

from __future__ import annotations

import os

import pytest

from core.errors import ConfigurationError
from core.settings import Settings


def test_round_trip_through_the_environment():
    settings = Settings(qpus={"EMU_FREE": 3}, lease_ttl_s=4.5, results_secret="s")
    assert Settings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"TWEEZER_QPUS": "EMU_XX=1"}, "allowed: EMU_FREE"),
        ({"TWEEZER_QPUS": "EMU_FREE"}, "DEVICE_TYPE=COUNT"),
        ({"TWEEZER_LEASE_TTL_S": "soon"}, "TWEEZER_LEASE_TTL_S"),
        ({"TWEEZER_MAX_ATTEMPTS": "0"}, "max_attempts must be > 0"),
        ({"TWEEZER_REDIS_URL": "http://x"}, "redis://"),
        ({"TWEEZER_JOB_HARD_TIME_LIMIT_S": "1"}, "above job_soft_time_limit_s"),
        ({"TWEEZER_SCHEDULER_TICK_S": "9"}, "lease_ttl_s / 3"),
        ({"TWEEZER_WEBHOOK_ALLOW": "10.0.0.0/8,http://x/"}, "not a network or a host name"),
        ({"TWEEZER_WEBHOOK_CA_FILE": "/nowhere.pem"}, "webhook_ca_file: no such file"),
        ({"TWEEZER_WEBHOOK_TIMEOUT_S": "0"}, "webhook_timeout_s must be > 0"),
    ],
)
def test_refuses_bad_values(env, words):
    with pytest.raises(ConfigurationError, match=words):
        Settings.from_env(env)


def test_pool_size_is_every_core_for_qutip_and_one_process_of_every_thread_for_torch():
    cores = len(os.sched_getaffinity(0))
    automatic = Settings.from_env({})
    assert automatic.worker_concurrency == 0
    assert automatic.pool_size("EMU_FREE") == cores
    assert automatic.pool_size("FRESNEL") == 1
    # Pasqal's emulators: one process per QPU, torch spreading each job over the cores.
    for device_type in ("EMU_SV", "EMU_MPS", "EMU_FRESNEL"):
        assert automatic.pool_size(device_type) == 1
        assert automatic.emulator_thread_count(device_type) == cores
    # A synthetic device stands for one serial device, whatever its type.
    assert Settings.from_env({}, synthetic_devices=True).pool_size("EMU_FREE") == 1
    fixed = Settings.from_env({"TWEEZER_WORKER_CONCURRENCY": "3"})
    assert fixed.pool_size("EMU_FREE") == fixed.pool_size("FRESNEL") == 3
    # A pool of N processes shares the cores: N x cores threads would thrash.
    assert fixed.emulator_thread_count("EMU_SV") == max(1, cores // 3)
    assert Settings.from_env({"TWEEZER_EMULATOR_THREADS": "5"}).emulator_thread_count("EMU_SV") == 5
    with pytest.raises(ConfigurationError, match="worker_concurrency must be >= 0"):
        Settings.from_env({"TWEEZER_WORKER_CONCURRENCY": "-1"})


def test_a_retired_device_type_names_its_successor():
    with pytest.raises(ConfigurationError, match=r"EMU_TN is deprecated by Pasqal.*use EMU_MPS"):
        Settings.from_env({"TWEEZER_QPUS": "EMU_TN=1"})


def test_tweezer_ups_setting_flags_set_their_fields_and_show_the_models_defaults():
    import argparse

    from cli.setting_flags import SETTING_FLAGS, add_setting_flags, setting_overrides

    parser = argparse.ArgumentParser()
    add_setting_flags(parser)
    help_text = " ".join(parser.format_help().split())
    defaults = Settings()
    assert "(default 300)" in help_text and "(default EMU_FREE=1,FRESNEL=1)" in help_text
    assert defaults.open_batch_timeout_s == 300 and defaults.qpus == {"EMU_FREE": 1, "FRESNEL": 1}
    assert setting_overrides(parser.parse_args([])) == {}
    given = parser.parse_args(
        ["--open-batch-timeout", "12", "--qpus", "EMU_FREE=2", "--synthetic-devices"]
    )
    settings = Settings.from_env({}, **setting_overrides(given))
    assert settings.open_batch_timeout_s == 12 and settings.qpus == {"EMU_FREE": 2}
    assert settings.synthetic_devices is True
    assert {f.field for f in SETTING_FLAGS} <= set(Settings.model_fields)
    with pytest.raises(ConfigurationError, match="bridge_speedup must be > 0"):
        Settings.from_env({}, **setting_overrides(parser.parse_args(["--bridge-speedup", "0"])))
