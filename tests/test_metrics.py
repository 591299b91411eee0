"""`GET /metrics`: parsed with prometheus_client's own parser, it moves by exactly what happened
between two scrapes, summed over the API's two gunicorn workers, and shows nothing secret."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psutil
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from core.overview import QpuState
from tests import sequences
from tests.helpers import call_api, create_body

SEQ = sequences.fixed()
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def metered(start_cluster):
    """Each token may make 5 requests a second, 20 at once: a flood is refused quickly."""
    return start_cluster(qpus={"EMU_FREE": 1}, rate_limit_per_s=5.0, rate_limit_burst=20)


def scrape(cluster) -> tuple[Samples, str]:
    page = requests.get(cluster.base_url + "/metrics", timeout=30)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(page.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, page.text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_the_api_runs_two_gunicorn_workers(metered):
    api = psutil.Process(metered.cluster.child("api").process.pid)
    # `tweezer api` execs gunicorn's arbiter, which forks the workers that answer requests.
    assert len(api.children()) == 2


def test_counters_and_histograms_move_by_exactly_what_happened(metered):
    account = metered.new_account()
    before, _ = scrape(metered)

    batch = metered.sdk(account).create_batch(
        SEQ, [{"runs": 5}, {"runs": 6}], device_type="EMU_FREE", wait=True
    )
    assert batch.status == "DONE"
    bad = 7
    for _ in range(bad):  # spread over both workers by the kernel's accept queue
        refused = call_api(metered, account, "POST", "/api/v1/batches", json={"jobs": "nope"})
        assert refused.status_code == 400
    after, text = scrape(metered)

    emu = {"device_type": "EMU_FREE"}
    assert moved(before, after, "tweezer_jobs_finished_total", **emu, status="DONE") == 2
    assert moved(before, after, "tweezer_job_run_seconds_count", **emu, status="DONE") == 2
    assert moved(before, after, "tweezer_job_run_seconds_sum", **emu, status="DONE") > 0
    assert moved(before, after, "tweezer_batch_wait_seconds_count", priority="MEDIUM") == 1
    assert moved(before, after, "tweezer_batch_turnaround_seconds_count", **emu, status="DONE") == 1
    # Histogram buckets are cumulative, and +Inf is the count.
    inf = value(after, "tweezer_batch_wait_seconds_bucket", priority="MEDIUM", le="+Inf")
    assert inf == value(after, "tweezer_batch_wait_seconds_count", priority="MEDIUM") >= 1
    assert value(after, "tweezer_batch_wait_seconds_bucket", priority="MEDIUM", le="1.0") <= inf
    assert moved(before, after, "tweezer_batches", **emu, status="DONE") == 1
    assert moved(before, after, "tweezer_jobs", **emu, status="DONE") == 2

    route = {"route": "/core-fast/api/v1/batches", "method": "POST"}
    assert moved(before, after, "tweezer_http_requests_total", **route, status="400") == bad
    assert moved(before, after, "tweezer_http_request_duration_seconds_count", **route) >= bad
    assert moved(before, after, "tweezer_http_refusals_total", code="invalid_request") == bad

    # Gauges of now: the QPU in exactly one state, its worker and the scheduler alive.
    states = [
        value(after, "tweezer_qpu_state", qpu="EMU_FREE-0", device_type="EMU_FREE", state=s)
        for s in QpuState
    ]
    assert sorted(states) == [0, 0, 0, 1]
    assert value(after, "tweezer_qpu_workers_alive", qpu="EMU_FREE-0", device_type="EMU_FREE") == 1
    assert value(after, "tweezer_schedulers_alive") == 1
    assert value(after, "tweezer_oldest_waiting_batch_seconds", **emu) == 0
    # Nothing secret: no token, user, project or batch id.
    for secret in (account.token, account.user_id, account.project_id, batch.id):
        assert secret not in text


def test_rate_limited_requests_are_counted_as_429_refusals(metered):
    account = metered.new_account()
    before, _ = scrape(metered)
    limited = 0
    with requests.Session() as session:
        for _ in range(metered.settings.rate_limit_burst + 30):
            answer = session.get(
                metered.core_url + "/api/v1/batches",
                headers={"Authorization": f"Bearer {account.token}"},
                timeout=30,
            )
            limited += answer.status_code == 429
    after, _ = scrape(metered)
    assert limited > 0
    assert moved(before, after, "tweezer_http_refusals_total", code="rate_limited") == limited
    route = {"route": "/core-fast/api/v1/batches", "method": "GET"}
    assert moved(before, after, "tweezer_http_requests_total", **route, status="429") == limited


def test_unknown_paths_are_one_label(metered):
    before, _ = scrape(metered)
    for path in ("/nope", "/wp-admin/x.php", "/core-fast/zzz"):
        assert requests.get(metered.base_url + path, timeout=10).status_code == 404
    after, text = scrape(metered)
    unmatched = {"route": "<unmatched>", "method": "GET", "status": "404"}
    assert moved(before, after, "tweezer_http_requests_total", **unmatched) == 3
    assert "wp-admin" not in text


def test_a_created_batch_is_one_201(metered):
    account = metered.new_account()
    before, _ = scrape(metered)
    created = call_api(
        metered,
        account,
        "POST",
        "/api/v1/batches",
        json=create_body(account, SEQ, jobs=[{"runs": 1}]),
    )
    assert created.status_code == 201, created.text
    after, _ = scrape(metered)
    route = {"route": "/core-fast/api/v1/batches", "method": "POST"}
    assert moved(before, after, "tweezer_http_requests_total", **route, status="201") == 1
    assert (
        moved(before, after, "tweezer_batches", device_type="EMU_FREE", status="PENDING")
        + (moved(before, after, "tweezer_batches", device_type="EMU_FREE", status="RUNNING"))
        + moved(before, after, "tweezer_batches", device_type="EMU_FREE", status="DONE")
        == 1
    )


def test_shipped_prometheus_grafana_and_alerts_use_only_metrics_we_expose(metered):
    """deploy/prometheus.yml, deploy/tweezer-alerts.yml and deploy/grafana/tweezer.json name
    only series a real scrape has (a renamed metric breaks them here, not in a lab)."""
    # Request counters appear once a request was counted (prometheus_client's multiprocess
    # mode reports no empty family): one refusal, so this test needs no other's traffic.
    assert requests.get(metered.base_url + "/nope", timeout=10).status_code == 404
    samples, text = scrape(metered)
    # Every series of every family the page declares, whether this module's earlier tests
    # gave it samples yet or not (a counter nothing has counted is declared all the same).
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    exposed = {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in suffixes.get(family.type, ("",))
    }
    deploy = Path(__file__).resolve().parent.parent / "deploy"
    config = yaml.safe_load((deploy / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert [(deploy / f).exists() for f in config["rule_files"]] == [True]
    rules = yaml.safe_load((deploy / "tweezer-alerts.yml").read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {"TweezerQpuWithoutWorkers", "TweezerBatchWaitingTooLong"}
    dashboard = json.loads((deploy / "grafana" / "tweezer.json").read_text())
    assert dashboard["uid"] and dashboard["panels"]
    expressions = [r["expr"] for r in rules] + [
        t["expr"] for panel in dashboard["panels"] for t in panel["targets"]
    ]
    named = {name for expr in expressions for name in re.findall(r"\btweezer_[a-z_]+", expr)}
    assert named and named <= exposed, named - exposed
    # The alerts fire on what a real scrape says: one QPU with a live worker, nothing waiting.
    assert value(samples, "tweezer_qpu_workers_alive", qpu="EMU_FREE-0", device_type="EMU_FREE")
