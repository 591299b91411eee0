"""`tweezer demo`: the guide's first example, through the real pasqal-cloud SDK, against a
running cluster (connection details from its cluster.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import ConfigurationError
from lab.sdk import sdk_client
from launch.data_dir import read_cluster_info

#: The guide's values of `omega_max` (rad/µs).
DEMO_OMEGAS = (6, 10.5)


def connect_sdk(info: dict[str, Any]) -> Any:
    """An SDK client for the cluster described by a cluster.json document."""
    return sdk_client(info["core_url"], info["account_url"], info["project_id"], info["token"])


def guide_sequence() -> str:
    """Two atoms under a 200 ns pulse whose amplitude is the variable `omega_max`."""
    from pulser import Pulse, Register, Sequence
    from pulser.devices import AnalogDevice
    from pulser.waveforms import ConstantWaveform

    register = Register.from_coordinates([(0, 0), (6, 0)], prefix="q")
    sequence = Sequence(register, AnalogDevice)
    sequence.declare_channel("rydberg", "rydberg_global")
    omega_max = sequence.declare_variable("omega_max")
    sequence.add(Pulse.ConstantDetuning(ConstantWaveform(200, omega_max), 0.0, 0.0), "rydberg")
    sequence.measure("ground-rydberg")
    return str(sequence.to_abstract_repr())


def run(data_dir: Path | None) -> None:
    import requests
    from pasqal_cloud.device import DeviceTypeName

    info = read_cluster_info(data_dir)
    try:
        requests.get(info["api_url"] + "/healthz", timeout=10)
    except requests.RequestException as exc:
        raise ConfigurationError(
            f"the cluster's API at {info['api_url']} does not answer ({type(exc).__name__}): "
            "is its `tweezer up` still running?"
        ) from exc
    sdk = connect_sdk(info)
    jobs = [
        {"runs": 20, "variables": {"omega_max": DEMO_OMEGAS[0]}},
        {"runs": 50, "variables": {"omega_max": DEMO_OMEGAS[1]}},
    ]
    print(f"Submitting a closed batch of {len(jobs)} jobs to EMU_FREE at {info['core_url']} ...")
    batch = sdk.create_batch(guide_sequence(), jobs, device_type=DeviceTypeName.EMU_FREE, wait=True)
    print(f"batch {batch.id}: {batch.status}")
    for job in batch.ordered_jobs:
        print(f"job-id: {job.id}, status: {job.status}, result: {job.result}")
