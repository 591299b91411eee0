"""`GET /metrics`: the cluster for Prometheus, with the official client library.

Two sources, one page:
- the cluster, read from Redis at scrape time, so every API process (and host) answers the same:
  gauges of what is (batches and jobs by device type and status, waiting batches by device type
  and priority, each QPU's state and live workers, the oldest waiting batch, live schedulers;
  core/overview.py) and the counters and histograms of what happened (jobs finished, job run
  time, batch wait by priority, batch turnaround), counted by the scripts that made it happen
  (core/counters.py);
- this API's own requests (by route template, method and status; latency; 4xx refusals by error
  code, 429s included), kept per process by prometheus_client and summed across gunicorn's
  workers in its multiprocess mode (cli/api_server.py points PROMETHEUS_MULTIPROC_DIR at a
  directory of the server's own).

Nothing secret is on it: no ids of users, projects or batches, only device types, QPU names,
statuses, priorities, route templates and error codes. Names follow Prometheus's conventions
(`tweezer_` prefix, base units, `_total` counters, `_seconds`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from api.context import services
from core import counters
from core.overview import QpuState, cluster_overview
from core.timefmt import now_us

bp = Blueprint("metrics", __name__)

PREFIX = "tweezer_"
#: A request that matched no route is counted under this template (unknown paths are not
#: labels: a scanner cannot grow the page).
UNMATCHED = "<unmatched>"
#: Methods counted under their own name. gunicorn accepts any 3-20 character upper-case token
#: as a method, so the raw method would let anyone, without a token, add a label value per
#: request; every other method is counted as OTHER_METHOD.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"

HTTP_REQUESTS = Counter(
    PREFIX + "http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    PREFIX + "http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HTTP_REFUSALS = Counter(
    PREFIX + "http_refusals",
    "Requests refused with a 4xx, by error code (rate_limited is a 429).",
    ["code"],
)


def instrument(app: Flask) -> None:
    """Counts and times every request the app answers."""

    @app.before_request
    def start_clock() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def count(response: Response) -> Response:
        started = g.get("metrics_started")
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        method = request.method if request.method in METHODS else OTHER_METHOD
        HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
        if started is not None:
            HTTP_LATENCY.labels(route, method).observe(time.perf_counter() - started)
        if 400 <= response.status_code < 500:
            HTTP_REFUSALS.labels(g.get("error_code", "unknown")).inc()
        return response


class ClusterCollector(Collector):
    """What Redis says of the cluster, at the moment of the scrape."""

    def collect(self) -> Iterator[Metric]:
        svc = services()
        settings = svc.settings
        client = svc.db.client
        view = cluster_overview(svc.db, settings, now_us())
        batches = GaugeMetricFamily(
            PREFIX + "batches",
            "Batches now, by device type and status.",
            labels=["device_type", "status"],
        )
        jobs = GaugeMetricFamily(
            PREFIX + "jobs",
            "Jobs now, by device type and status.",
            labels=["device_type", "status"],
        )
        for (kind, device_type, status), n in sorted(view.totals.items()):
            (batches if kind == "batch" else jobs).add_metric([device_type, status], n)
        yield batches
        yield jobs

        queue = GaugeMetricFamily(
            PREFIX + "queue_batches",
            "Batches waiting for a QPU, by device type and priority.",
            labels=["device_type", "priority"],
        )
        for level in view.queue:
            queue.add_metric([level.device_type, level.priority], level.batches)
        yield queue
        oldest = GaugeMetricFamily(
            PREFIX + "oldest_waiting_batch_seconds",
            "Age of the oldest batch waiting for a QPU of the device type (0: none waits).",
            labels=["device_type"],
        )
        for device_type in settings.qpus:
            oldest.add_metric([device_type], view.oldest_waiting_s(device_type) or 0.0)
        yield oldest

        state = GaugeMetricFamily(
            PREFIX + "qpu_state",
            "1 for the state each QPU is in: computing, held_idle (held by a batch with "
            "nothing in flight), free, down (its device is not UP).",
            labels=["qpu", "device_type", "state"],
        )
        workers = GaugeMetricFamily(
            PREFIX + "qpu_workers_alive",
            "Worker processes of the QPU that announced themselves in the last 30 s.",
            labels=["qpu", "device_type"],
        )
        for qpu in view.qpus:
            for s in QpuState:
                state.add_metric([qpu.name, qpu.device_type, s.value], float(qpu.state is s))
            workers.add_metric([qpu.name, qpu.device_type], qpu.workers_alive)
        yield state
        yield workers
        yield GaugeMetricFamily(
            PREFIX + "schedulers_alive",
            "Schedulers that passed in the last 30 s.",
            value=sum(1 for s in view.schedulers if s.alive),
        )
        yield from _happened(client.hgetall(svc.store.keys.counters()))


def _happened(raw: dict[str, str]) -> Iterator[Metric]:
    """The scripts' counters and histograms (core/counters.py) as Prometheus families."""
    counted, observed = counters.read_counters(raw)
    for spec in counters.COUNTERS:
        family = CounterMetricFamily(PREFIX + spec.name, spec.help, labels=list(spec.labels))
        for labels, value in sorted(counted[spec.name].items()):
            family.add_metric(list(labels), value)
        yield family
    for hspec in counters.HISTOGRAMS:
        histogram = HistogramMetricFamily(
            PREFIX + hspec.name, hspec.help, labels=list(hspec.labels)
        )
        for labels, h in sorted(observed[hspec.name].items()):
            bounds = [*(repr(b) for b in hspec.buckets), "+Inf"]
            histogram.add_metric(
                list(labels), list(zip(bounds, h.cumulative, strict=True)), sum_value=h.sum
            )
        yield histogram


def _registry() -> CollectorRegistry:
    """This process's requests, or every gunicorn worker's under the multiprocess mode, and
    the cluster."""
    registry = CollectorRegistry()
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Requests())
    registry.register(ClusterCollector())
    return registry


class _Requests(Collector):
    """This process's request metrics (outside gunicorn's multiprocess mode)."""

    def collect(self) -> Iterator[Metric]:
        for metric in (HTTP_REQUESTS, HTTP_LATENCY, HTTP_REFUSALS):
            yield from metric.collect()


@bp.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(_registry()), headers={"Content-Type": CONTENT_TYPE_LATEST})
