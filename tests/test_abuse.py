"""A hostile caller against the API, round 2: nobody grows /metrics, no query string gets a 500
with a traceback, and no path is redirected to a Host the client sent."""

from __future__ import annotations

import secrets
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from core.accounts import Accounts
from tests.conftest import Account
from tests.helpers import call_api

#: Requests with a method of their own each: what once added a label value per request.
ODD_METHODS = 20_000


def _series(page: str) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    """The API's own request series (those a request can add; the cluster's gauges may gain
    a status as other modules' batches end)."""
    return {
        (sample.name, frozenset(sample.labels.items()))
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name.startswith("tweezer_http_")
    }


def _send_odd_methods(base_url: str, first: int, count: int) -> None:
    """`count` requests `ZQ<n> /x HTTP/1.1` on one kept-alive connection, each answered
    before the next is sent."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as connection:
        reader = connection.makefile("rb")
        for n in range(first, first + count):
            connection.sendall(f"ZQ{n:07d} /x HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            status = reader.readline()
            assert status.startswith(b"HTTP/1.1 4"), status
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            reader.read(length)


def test_odd_http_methods_do_not_grow_the_metrics_page(cluster):
    metrics = cluster.base_url + "/metrics"
    _send_odd_methods(cluster.base_url, 0, 10)  # the `other` series exist from here on
    requests.get(metrics, timeout=30)  # and the scrape's own (counted once it is answered)
    before = requests.get(metrics, timeout=30).text
    threads = [
        threading.Thread(target=_send_odd_methods, args=(cluster.base_url, start, 5_000))
        for start in range(10, 10 + ODD_METHODS, 5_000)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = requests.get(metrics, timeout=30).text
    # The same series (a counter's value may have grown a digit or two), none per method.
    assert _series(after) - _series(before) == set()
    # Every series at most a digit or two longer, a few hundred series: not 20,000 new ones.
    assert len(after) < len(before) + 10_000, (len(before), len(after))
    assert "ZQ" not in after
    others = [labels for name, labels in _series(after) if ("method", "other") in labels]
    assert others, "odd methods are counted, as `other`"


@pytest.fixture(scope="module")
def admin(cluster) -> Account:
    accounts = Accounts(cluster.client, cluster.settings.namespace)
    name = f"root-{secrets.token_hex(4)}"
    accounts.create_user(name, admin=True)
    return Account(name, "", accounts.issue_token(name).token)


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("?expires=%C2%B2&signature=x", "expiry"),  # '²'.isdigit() is True; int('²') fails
        ("?expires=%E2%91%A0&signature=x", "expiry"),  # '①'
        ("?expires=99999999999&signature=%C3%A9", "signature"),  # compare_digest on 'é'
        ("?expires=999999999999999999999999999999&signature=x", "expiry"),
        ("", "expiry"),
    ],
)
def test_hostile_results_links_are_refused_with_a_4xx(cluster, query, names):
    response = requests.get(
        f"{cluster.core_url}/api/v1/results/{secrets.token_hex(8)}{query}", timeout=30
    )
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["status"] == "fail" and names in body["message"]


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("limit=%C2%B2", "limit"),
        ("limit=0", "limit"),
        ("limit=99999999999999999999999", "limit"),
        ("before=99999999999999999999999999-0", "before"),
        ("before=18446744073709551616-0", "before"),  # 2**64: past a stream id
        ("before=%E2%91%A0-1", "before"),
        ("before=1-%C2%B2", "before"),
    ],
)
def test_hostile_audit_queries_are_refused_with_a_400_naming_the_parameter(
    cluster, admin, query, names
):
    response = call_api(cluster, admin, "GET", f"/admin/api/v1/audit?{query}")
    assert response.status_code == 400, response.text
    assert names in response.json()["message"]


def test_the_largest_stream_id_is_a_valid_page_boundary(cluster, admin):
    response = call_api(cluster, admin, "GET", "/admin/api/v1/audit?before=18446744073709551615-0")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/admin//api/v1/usage", 404),
        ("/core-fast//api/v1/batches", 404),
        ("/healthz/", 200),  # a trailing slash is the same route, not a redirect
    ],
)
def test_no_path_is_redirected_to_the_host_a_client_sent(cluster, admin, path, status):
    headers: dict[str, Any] = {"Host": "evil.example", "Authorization": f"Bearer {admin.token}"}
    response = requests.get(
        cluster.base_url + path, headers=headers, allow_redirects=False, timeout=30
    )
    assert response.status_code == status, (response.status_code, response.headers)
    assert "Location" not in response.headers and "evil.example" not in response.text
    assert response.json()["status"] == ("fail" if status == 404 else "success")
