"""Emulation through the platform beside a hand-written loop (issue #14, goal 1).

Tweezer: one closed batch of 100 four-atom jobs (500 ns), submission to DONE, on a cluster with
`tweezer up`'s default settings (an emulator QPU's pool has a process per core). Anchor: the
same jobs in one plain Python process: parse the sequence, build it, QutipBackendV2, sample the
shots. Medians of 3, in the same run; the goal is a ratio of at most 0.60 on two cores (the
physical limit is 1 / cores).
"""

from __future__ import annotations

import gzip
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from cli.cluster import Cluster, bootstrap, secret
from cli.redis_server import RedisServer, free_port
from core.settings import Settings

JOBS = 100
RUNS = 100
REPEATS = 3
GOAL = 0.60


def four_atoms() -> str:
    from pulser import Pulse, Register, Sequence
    from pulser.devices import MockDevice

    register = Register.rectangle(1, 4, spacing=6, prefix="q")
    sequence = Sequence(register, MockDevice)
    sequence.declare_channel("rydberg", "rydberg_global")
    sequence.add(Pulse.ConstantPulse(500, 1.0, 0.0, 0.0), "rydberg")
    return str(sequence.to_abstract_repr())


def direct(text: str) -> float:
    """The anchor: what a user would write without Tweezer, one process."""
    import warnings

    from pulser import Sequence
    from pulser.backend import BitStrings
    from pulser.backend.config import EmulationConfig
    from pulser_simulation import QutipBackendV2

    start = time.perf_counter()
    for _ in range(JOBS):
        sequence = Sequence.from_abstract_repr(text)
        config = EmulationConfig(observables=[BitStrings(num_shots=RUNS)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            QutipBackendV2(sequence, config=config).run()
    return time.perf_counter() - start


def through_tweezer(info: dict[str, Any], text: str) -> float:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {info['token']}"
    payload = {
        "sequence_builder": text,
        "webhook": None,
        "open": False,
        "device_type": "EMU_FREE",
        "project_id": info["project_id"],
        "jobs": [{"runs": RUNS}] * JOBS,
    }
    start = time.perf_counter()
    created = session.post(
        info["core_url"] + "/api/v1/batches",
        data=gzip.compress(json.dumps(payload).encode()),
        headers={"Content-Encoding": "gzip"},
        timeout=60,
    )
    created.raise_for_status()
    batch_id = created.json()["data"]["id"]
    status_url = f"{info['core_url']}/api/v1/batches/{batch_id}/status"
    while session.get(status_url, timeout=30).json()["data"]["status"] != "DONE":
        time.sleep(0.02)
    return time.perf_counter() - start


def measure() -> dict[str, float]:
    text = four_atoms()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        redis_server = RedisServer(root / "redis", password=secret(root, "redis")).start()
        # `tweezer up`'s defaults but for the QPUs (only the emulator is measured).
        settings = Settings(
            redis_url=redis_server.url,
            results_secret=secret(root, "results"),
            auth_secret=secret(root, "auth"),
            qpus={"EMU_FREE": 1},
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        info = bootstrap(settings, root, base, base + "/core-fast", base + "/account")
        with Cluster(settings, root, "127.0.0.1", port, redis_server, log_dir=root / "logs"):
            platform = [through_tweezer(info, text) for _ in range(REPEATS)]
    anchor = [direct(text) for _ in range(REPEATS)]
    return {
        "emulation s, 100 four-atom jobs": statistics.median(platform),
        "emulation s, direct loop": statistics.median(anchor),
    }


def show(figures: dict[str, float]) -> None:
    ours, anchor = figures["emulation s, 100 four-atom jobs"], figures["emulation s, direct loop"]
    print(f"\n{'figure':<44}{'Tweezer':>10}{'anchor':>10}{'ratio':>8}{'goal':>8}")
    print(f"{'100 four-atom jobs, submit to DONE, s':<44}{ours:>10.2f}{anchor:>10.2f}"
          f"{ours / anchor:>8.2f}{'<= ' + str(GOAL):>8}")  # fmt: skip


if __name__ == "__main__":
    result = measure()
    show(result)
