"""QPU semantics: one batch at a time per QPU, open batches keep it, priorities order the queue."""

from __future__ import annotations

import pytest
import requests

from tests import sequences
from tests.helpers import hold_qpu, scheduler_passes, wait_for

SEQ = sequences.parametrized()
JOB = {"runs": 5, "variables": {"omega_max": 6}}


@pytest.fixture(scope="module")
def cluster(start_cluster):
    """This module's own cluster, not the one other modules share: its tests wait on the QPU's
    order and timing, which another module's batches on the same QPU would disturb."""
    return start_cluster()


def test_open_batch_keeps_the_qpu_until_closed(cluster, sdk):
    with hold_qpu(sdk, SEQ) as holder:
        holder.add_jobs([JOB], wait=True)  # the holder's own jobs run
        waiting = sdk.create_batch(SEQ, [JOB, JOB], device_type="EMU_FREE")
        scheduler_passes(cluster, "EMU_FREE-0")
        assert sdk.get_batch(waiting.id).status == "PENDING"
        assert {j.status for j in sdk.get_batch(waiting.id).ordered_jobs} == {"PENDING"}
        assert sdk.get_batch(holder.id).status == "RUNNING"
    finished = wait_for(lambda: (b := sdk.get_batch(waiting.id)).status == "DONE" and b)
    assert finished.start_datetime >= sdk.get_batch(holder.id).end_datetime
    assert {j.status for j in finished.ordered_jobs} == {"DONE"}


def test_batches_wait_in_priority_order(cluster):
    low, medium, high = (cluster.new_account(p) for p in ("LOW", "MEDIUM", "HIGH"))
    sdks = {
        name: cluster.sdk(acc) for name, acc in (("low", low), ("medium", medium), ("high", high))
    }
    with hold_qpu(sdks["medium"], SEQ):
        order = [("low", 1), ("medium", 1), ("high", 1), ("low", 2), ("high", 2)]
        batches = {
            tag: sdks[tag[0]].create_batch(SEQ, [JOB], device_type="EMU_FREE") for tag in order
        }
        assert {b.queue_priority for b in batches.values()} == {"LOW", "MEDIUM", "HIGH"}
    done = {
        tag: wait_for(lambda b=b, s=sdks[tag[0]]: (f := s.get_batch(b.id)).status == "DONE" and f)
        for tag, b in batches.items()
    }
    started = sorted(done, key=lambda tag: done[tag].start_datetime)
    # HIGH before MEDIUM before LOW; first come, first served within a level.
    assert started == [("high", 1), ("high", 2), ("medium", 1), ("low", 1), ("low", 2)]


def test_the_cluster_says_when_it_is_ready(cluster):
    """GET /readyz: a scheduler passed and every configured QPU has a live worker."""

    def ready() -> requests.Response | None:
        answer = requests.get(cluster.base_url + "/readyz", timeout=30)
        return answer if answer.status_code == 200 else None

    data = wait_for(ready, timeout_s=30).json()["data"]
    assert data["schedulers"] >= 1
    assert data["qpus"] == {"EMU_FREE-0": True, "FRESNEL-0": True}
