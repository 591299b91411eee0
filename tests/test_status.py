"""`tweezer status` and what it reads (core/overview.py): QPUs with their batch, workers and
scheduler, queues, totals, jobs per second; a job's attempt history and full errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cli.status import render
from core.db import Db
from core.keys import Keys
from core.liveness import Liveness
from core.overview import QpuState, cluster_overview, overview_json, read_overview
from core.sessions import Sessions
from tests import sequences
from tests.conftest import make_settings
from tests.factories import NS, QPU, SECOND, T0, new_batch
from tests.helpers import call_api, redis_url, wait_for

SEQ = sequences.fixed()


def _view(client, now):
    return read_overview(Db.of(client, NS), [QPU], ["EMU_FREE"], now)


def test_a_computing_qpu_its_batch_workers_scheduler_queue_and_rate(parts, redis_only):
    store, control, execution = parts
    running, _ = new_batch(store, runs=(10, 20), project="optics")
    waiting, _ = new_batch(store, runs=(5,), project="atoms", now=T0 + SECOND)
    lease = control.acquire(QPU, ttl_s=10, now=T0 + 2 * SECOND)
    assert lease.batch_id == running.id
    [d] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0 + 2 * SECOND)
    execution.claim(d.job_ids[0], d.delivery_id, 5, T0 + 2 * SECOND, worker="host-a:17")
    execution.commit_done(d.job_ids[0], d.delivery_id, {"counter": {"0": 10}}, T0 + 3 * SECOND)
    control.dispatch(lease, capacity=1, timeout_s=5, now=T0 + 3 * SECOND)
    control.announce(QPU, T0 + 3 * SECOND, worker=f"{QPU}/host-a:16")
    control.announce(QPU, T0 - 60 * SECOND, worker=f"{QPU}/host-b:99")  # silent since: lost
    Liveness(redis_only, NS).scheduler_passed("sched:1", T0 + 3 * SECOND, [QPU])

    # 25 s later: the job that finished at T0+3 s sits in a whole 10 s slot of the last minute.
    view = _view(redis_only, T0 + 25 * SECOND)
    [qpu] = view.qpus
    assert qpu.state is QpuState.COMPUTING and qpu.inflight == 1 and qpu.holder == "sched:1"
    assert [(w.name, w.alive) for w in qpu.workers] == [
        (f"{QPU}/host-a:16", True),
        (f"{QPU}/host-b:99", False),
    ]
    assert view.finished_last_minute == 1 and view.jobs_per_s == pytest.approx(1 / 60)
    assert view.oldest_waiting_s() == pytest.approx(24.0)
    document = overview_json(view)
    assert document["qpus"][0]["batch"] == {
        "id": running.id,
        "project_id": "optics",
        "user_id": "u",
        "status": "RUNNING",
        "open": False,
        "since": "2027-01-15T08:00:02+00:00",
        "jobs_done": 1,
        "jobs_total": 2,
        "runs_done": 10,
        "runs_total": 30,
        "idle_held_s": None,
    }
    assert document["qpus"][0]["workers_alive"] == 1
    assert document["queue"][1] == {
        "device_type": "EMU_FREE",
        "priority": "MEDIUM",
        "batches": 1,
        "oldest_waiting_s": 24.0,
    }
    assert document["batches"] == {"EMU_FREE": {"PENDING": 1, "RUNNING": 1}}
    # The second job is dispatched, not claimed yet: still PENDING (in flight on the QPU).
    assert document["jobs"] == {"EMU_FREE": {"DONE": 1, "PENDING": 2}}
    # Someone outside the running batch's project sees the QPU held, not by whom.
    hidden = overview_json(view, visible=lambda project: project == "atoms", hosts=False)
    assert hidden["qpus"][0]["batch"] == {"id": None, "hidden": True}
    # ... and counts the workers and schedulers without learning their hosts.
    assert [w["name"] for w in hidden["qpus"][0]["workers"]] == [None, None]
    assert hidden["qpus"][0]["workers_alive"] == 1 and hidden["qpus"][0]["scheduler"] is None
    assert {s["name"] for s in hidden["schedulers"]} == {None}
    assert "host-a" not in json.dumps(hidden) and "sched:1" not in json.dumps(hidden)
    assert waiting.id  # the waiting batch is counted, not shown


def test_an_open_batch_idle_on_its_qpu_shows_how_long(parts, redis_only):
    store, control, execution = parts
    batch, _ = new_batch(store, runs=(10,), open_=True)
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    [d] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0)
    execution.claim(d.job_ids[0], d.delivery_id, 5, T0)
    execution.commit_done(d.job_ids[0], d.delivery_id, {"counter": {"0": 10}}, T0 + SECOND)
    [qpu] = _view(redis_only, T0 + 13 * SECOND).qpus
    assert qpu.state is QpuState.HELD_IDLE
    assert qpu.batch.id == batch.id and qpu.batch.idle_held_s(T0 + 13 * SECOND) == 12.0


def test_slurm_sessions_held_show_with_who_holds_them(redis_only):
    """qrmi pasqal-local sessions (core/sessions.py): held ones in the view, the text and the
    JSON (only those of projects the viewer sees); released ones gone."""
    sessions = Sessions(redis_only, NS)
    mine = sessions.open("ada", 1001, "optics", "EMU_FREE", "4242", T0)
    theirs = sessions.open("bob", 1002, "atoms", "EMU_FREE", "4243", T0 + SECOND)
    gone = sessions.open("eve", 1003, "atoms", "EMU_FREE", "4244", T0)
    sessions.close(gone.id, T0 + SECOND)
    settings = make_settings(redis_url(redis_only), namespace=NS, qpus={"EMU_FREE": 1})
    view = cluster_overview(Db.of(redis_only, NS), settings, T0 + 90 * SECOND)
    assert [s.id for s in view.sessions] == [theirs.id, mine.id]
    assert "Slurm sessions held: 4243 (bob, EMU_FREE, 1m29s); 4242 (ada, EMU_FREE" in render(
        view, settings
    ).replace("\n  ", " ")
    shown = overview_json(view, visible=lambda project: project == "optics", hosts=False)
    assert [(s["slurm_job_id"], s["user_id"]) for s in shown["sessions"]] == [("4242", "ada")]


def test_a_job_keeps_each_attempt_and_its_whole_error(parts, redis_only):
    store, control, execution = parts
    batch, [job] = new_batch(store, runs=(10,))
    lease = control.acquire(QPU, ttl_s=10, now=T0)
    [d] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0)
    execution.claim(d.job_ids[0], d.delivery_id, 2, T0, worker="host-a:17")
    control.reconcile(lease, max_attempts=3, now=T0 + 5 * SECOND)  # no heartbeat: lost
    [d] = control.dispatch(lease, capacity=1, timeout_s=5, now=T0 + 5 * SECOND)
    execution.claim(d.job_ids[0], d.delivery_id, 2, T0 + 6 * SECOND, worker="host-b:18")
    message = "Traceback (most recent call last):\n  File x\nValueError: " + "long " * 40
    execution.commit_error(d.job_ids[0], d.delivery_id, message, T0 + 7 * SECOND)
    stored = store.get_job(job.id)
    assert [(a.attempt, a.qpu, a.worker, a.outcome) for a in stored.history] == [
        (1, QPU, "host-a:17", "LOST"),
        (2, QPU, "host-b:18", "ERROR"),
    ]
    assert [(a.started_us, a.ended_us) for a in stored.history] == [
        (T0, T0 + 5 * SECOND),
        (T0 + 6 * SECOND, T0 + 7 * SECOND),
    ]
    # `tweezer status --batch ID` prints them, the error whole.
    env = {
        **os.environ,
        "TWEEZER_REDIS_URL": redis_url(redis_only),
        "TWEEZER_NAMESPACE": NS,
        "TWEEZER_QPUS": "EMU_FREE=1",
    }
    shown = subprocess.run(
        [sys.executable, "-m", "cli.main", "status", "--batch", batch.id],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"  attempt 1  {QPU}  host-a:17" in shown.stdout and "LOST" in shown.stdout
    assert "ValueError: " + "long " * 39 + "long" in shown.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "cli.main", "status", "--batch", batch.id, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    [job_json] = json.loads(as_json.stdout)["jobs"]
    assert job_json["errors"] == [message]
    assert [a["outcome"] for a in job_json["history"]] == ["LOST", "ERROR"]


def test_watch_redraws_in_place_until_ctrl_c(redis_only):
    env = {
        **os.environ,
        "TWEEZER_REDIS_URL": redis_url(redis_only),
        "TWEEZER_NAMESPACE": NS,
        "TWEEZER_QPUS": "EMU_FREE=1",
    }
    watching = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "status", "--watch", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(3)
    watching.send_signal(signal.SIGINT)
    out, err = watching.communicate(timeout=30)
    assert watching.returncode == 0, err
    assert out.count("\x1b[H\x1b[2J") >= 2 and "EMU_FREE-0" in out


# --- against a running cluster ---------------------------------------------------------------


@pytest.fixture(scope="module")
def busy(start_cluster):
    """A cluster whose QPU an open batch holds idle while another project's batch waits."""
    return start_cluster(qpus={"EMU_FREE": 1}, open_batch_contended_idle_s=600)


def test_status_json_of_a_held_qpu_and_a_queue(busy):
    holder, other = busy.new_account(), busy.new_account()
    held = busy.sdk(holder).create_batch(SEQ, [{"runs": 7}], open=True, device_type="EMU_FREE")
    wait_for(lambda: busy.sdk(holder).get_batch(held.id).jobs_count_per_status["DONE"] == 1)
    waiting = busy.sdk(other).create_batch(SEQ, [{"runs": 3}, {"runs": 4}], device_type="EMU_FREE")
    # Forecast beside the scheduler (at its start, then every forecast_interval_s).
    wait_for(lambda: busy.store.with_forecasts([busy.store.get_batch(waiting.id)])[0].forecast)
    env = {**os.environ, **busy.settings.to_env()}
    shown = subprocess.run(
        [sys.executable, "-m", "cli.main", "status", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert set(status) == {
        "at",
        "qpus",
        "schedulers",
        "queue",
        "oldest_waiting_s",
        "forecast_at",
        "jobs_per_s",
        "batches",
        "jobs",
        "sessions",
    }
    assert status["sessions"] == []  # no Slurm job holds a session here
    # The cluster's forecaster has forecast its one device type, with the time it did so.
    assert set(status["forecast_at"]) == {"EMU_FREE"}
    [qpu] = status["qpus"]
    [scheduler] = status["schedulers"]
    assert scheduler["alive"] and scheduler["leases"] == ["EMU_FREE-0"]
    [worker] = qpu["workers"]
    assert worker["alive"] and worker["name"].startswith("EMU_FREE-0/")
    batch = qpu.pop("batch")
    assert qpu == {
        "name": "EMU_FREE-0",
        "device_type": "EMU_FREE",
        "device_status": "UP",
        "state": "held_idle",
        "scheduler": scheduler["name"],
        "inflight": 0,
        "workers_alive": 1,
        "workers": [worker],
    }
    idle = batch.pop("idle_held_s")
    assert idle is not None and 0 <= idle < 60
    assert batch == {
        "id": held.id,
        "project_id": holder.project_id,
        "user_id": holder.user_id,
        "status": "RUNNING",
        "open": True,
        "since": call_api(busy, holder, "GET", f"/api/v2/batches/{held.id}").json()["data"][
            "start_datetime"
        ],
        "jobs_done": 1,
        "jobs_total": 1,
        "runs_done": 7,
        "runs_total": 7,
    }
    medium = next(q for q in status["queue"] if q["priority"] == "MEDIUM")
    assert medium["batches"] == 1 and 0 <= medium["oldest_waiting_s"] < 60
    assert status["oldest_waiting_s"] == medium["oldest_waiting_s"]
    assert status["batches"] == {"EMU_FREE": {"PENDING": 1, "RUNNING": 1}}
    assert status["jobs"] == {"EMU_FREE": {"DONE": 1, "PENDING": 2}}
    text = subprocess.run(
        [sys.executable, "-m", "cli.main", "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    ).stdout
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "EMU_FREE-0    held_idle  UP" in text and f"batch {held.id}" in text
    assert "open, idle" in text and "shots 7/7" in text
    # The owner sees each job's attempts in the API too.
    [job] = call_api(busy, holder, "GET", f"/api/v1/batches/{held.id}").json()["data"]["jobs"]
    [attempt] = job["history"]
    assert attempt["qpu"] == "EMU_FREE-0" and attempt["outcome"] == "DONE"
    assert attempt["worker"].split(":")[0] == worker["name"].split("/")[1].split(":")[0]
    busy.sdk(holder).close_batch(held.id)
    assert waiting.id


def test_a_worker_stopped_cleanly_is_gone_not_lost(busy):
    """Last in the module: it stops the cluster's worker."""
    keys = Keys(busy.settings.namespace)
    [name] = wait_for(lambda: list(busy.client.hgetall(keys.worker_presence())))
    worker = busy.cluster.child("worker EMU_FREE-0").process
    worker.terminate()  # a warm shutdown, as systemd or Ctrl-C asks
    worker.wait(60)
    assert name not in busy.client.hgetall(keys.worker_presence())
