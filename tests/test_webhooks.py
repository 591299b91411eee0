"""Webhooks: a finished batch is announced to its webhook, signed, retried with backoff, at least
once even when its sender dies mid-delivery, and never to an address inside the lab's network
unless the cluster's allowlist says so."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import socketserver
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from core.accounts import Accounts
from core.db import Db
from core.errors import WebhookRefused
from core.keys import Keys
from core.records import Batch
from core.status import BatchStatus, WebhookState
from core.store import Store
from core.timefmt import SECOND_US
from core.webhooks import (
    BATCH_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Allowlist,
    check_addresses,
    check_at_submission,
    sign,
    verify,
)
from scheduler.webhooks import WebhookSender, lease_s, next_attempt_us
from tests import sequences
from tests.conftest import Account, make_settings
from tests.helpers import call_api, certificates, wait_for

T0 = 1_800_000_000 * SECOND_US
SECRET = "s3cret"
SEQ = sequences.fixed()


@dataclass
class Receiver:
    """A webhook receiver on loopback: answers each POST with the next of `statuses` (then 200),
    and holds the first request until `release` when `hang` is set."""

    server: ThreadingHTTPServer
    statuses: list[int] = field(default_factory=list)
    calls: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    hang: threading.Event | None = None
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/batch?source=tweezer"


def _serve(context: ssl.SSLContext | None = None) -> Receiver:
    state: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if state.hang is not None and not state.hang.is_set():
                state.hang.set()
                state.release.wait(60)
                return  # the connection closes with no answer
            status = state.statuses.pop(0) if state.statuses else 200
            state.calls.append(({k: v for k, v in self.headers.items()}, body, status))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    state = Receiver(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return state


def _stop(state: Receiver) -> None:
    state.release.set()
    state.server.shutdown()
    state.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = _serve()
    yield state
    _stop(state)


@pytest.fixture
def tls_receiver(tmp_path) -> Iterator[tuple[Receiver, str]]:
    """An https:// receiver on loopback whose certificate, from a test CA, names hooks.test;
    and that CA's file."""
    paths = certificates(tmp_path, "127.0.0.1", dns_name="hooks.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(paths["redis.crt"], paths["redis.key"])
    state = _serve(context)
    yield state, str(paths["ca.crt"])
    _stop(state)


# --- what may be called ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "::ffff:127.0.0.1",
        "169.254.169.254",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.1",
        "100.64.0.1",
        "fc00::1",
        "fe80::1",
        "0.0.0.0",
        "224.0.0.1",
        # IPv6 forms that carry an inside IPv4 address: IPv4-compatible, IPv4-translated, NAT64
        # (169.254.169.254 where NAT64 runs), 6to4, Teredo; and site-local, NAT64 local-use.
        "::127.0.0.1",
        "::ffff:0:127.0.0.1",
        "64:ff9b::127.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::",
        "2002:a9fe:a9fe::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "fec0::1",
        "64:ff9b:1::a00:1",
    ],
)
def test_inside_addresses_are_refused(address):
    with pytest.raises(WebhookRefused, match="loopback, link-local or private"):
        check_addresses("hooks.example.org", [address], Allowlist())


def test_public_addresses_pass_and_the_allowlist_opens_inside_ones():
    assert check_addresses("h", ["93.184.216.34", "2606:2800:220:1::1"], Allowlist()) == (
        "93.184.216.34",
        "2606:2800:220:1::1",
    )
    # Transition forms of a public IPv4 address are public (connected to as given).
    public_forms = ["2002:5db8:d822::", "64:ff9b::5db8:d822", "::ffff:0:5db8:d822"]
    assert check_addresses("h", public_forms, Allowlist()) == tuple(public_forms)
    # Allowing an IPv4 network allows its IPv6 forms too.
    assert check_addresses("h", ["64:ff9b::a01:203"], Allowlist.parse("10.1.2.0/24"))
    allow = Allowlist.parse("10.1.2.0/24, 127.0.0.1, hooks.lab.internal")
    assert check_addresses("x", ["10.1.2.77", "127.0.0.1"], allow) == ("10.1.2.77", "127.0.0.1")
    assert check_addresses("hooks.lab.internal", ["192.168.5.5"], allow) == ("192.168.5.5",)
    with pytest.raises(WebhookRefused):
        check_addresses("x", ["10.1.3.1"], allow)  # outside the allowed network
    with pytest.raises(ValueError, match="not a network or a host name"):
        Allowlist.parse("10.0.0.0/8, http://evil/")


def test_names_are_refused_by_what_they_resolve_to():
    # Every address counts: one inside address among public ones is enough to refuse.
    def resolve(host, port):
        return ["93.184.216.34", "10.0.0.5"]

    with pytest.raises(WebhookRefused, match=r"10\.0\.0\.5"):
        check_at_submission("https://hooks.example.org/x", Allowlist(), resolve)
    with pytest.raises(WebhookRefused, match="not an http"):
        check_at_submission("ftp://hooks.example.org/x", Allowlist(), resolve)
    with pytest.raises(WebhookRefused, match="credentials"):
        check_at_submission("https://u:p@hooks.example.org/", Allowlist(), resolve)

    def unresolvable(host, port):
        raise OSError("Name or service not known")

    # Not resolvable now: accepted (each delivery checks again, and records why it failed).
    check_at_submission("https://hooks.example.org/x", Allowlist(), unresolvable)


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    body = b'{"id":"b"}'
    signature = sign(SECRET, 1700000000, body)
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b'1700000000.{"id":"b"}', hashlib.sha256).hexdigest()
    assert signature == "sha256=" + expected
    assert verify(SECRET, 1700000000, body, signature)
    assert not verify(SECRET, 1700000001, body, signature)
    assert not verify("other", 1700000000, body, signature)


def test_backoff_doubles_up_to_five_minutes_and_gives_up_after_the_retry_window():
    ended = T0
    assert next_attempt_us(ended, 1, T0, 3600) == T0 + 1 * SECOND_US
    assert next_attempt_us(ended, 2, T0, 3600) == T0 + 2 * SECOND_US
    assert next_attempt_us(ended, 5, T0, 3600) == T0 + 16 * SECOND_US
    assert next_attempt_us(ended, 20, T0, 3600) == T0 + 300 * SECOND_US
    late = T0 + 3500 * SECOND_US
    assert next_attempt_us(ended, 20, late, 3600) is None  # past an hour after the end


# --- delivery, driven with `now` --------------------------------------------------------------


def _finished_batch(client, settings, webhook: str | None) -> Batch:
    store = Store(Db.of(client, settings.namespace))
    batch = Batch(
        id=str(uuid.uuid4()),
        project_id="p",
        user_id="u",
        device_type="EMU_FREE",
        status=BatchStatus.PENDING,
        open=True,
        queue_priority="MEDIUM",
        created_us=0,
        updated_us=0,
        webhook=webhook,
    )
    store.create_batch(batch, [], T0)
    store.cancel_batch(batch.id, T0, "u")  # ends it: the delivery is due now
    return batch


def _sender(redis_only, **overrides) -> WebhookSender:
    # The sender is handed its client; the settings' URL is not used.
    settings = make_settings("redis://unused:1/0", **overrides)
    return WebhookSender(Db.of(redis_only, settings.namespace), settings)


def test_a_finished_batch_is_posted_signed_and_recorded(redis_only, receiver):
    sender = _sender(redis_only, webhook_secret=SECRET, webhook_allow="127.0.0.1/32")
    batch = _finished_batch(redis_only, sender.settings, receiver.url)
    nothing = _finished_batch(redis_only, sender.settings, None)
    keys = Keys(sender.settings.namespace)
    assert redis_only.zrange(keys.webhooks(), 0, -1) == [batch.id]  # not the one without

    assert sender.run_once(T0) == 1
    [(headers, body, status)] = receiver.calls
    assert status == 200
    assert verify(SECRET, int(headers[TIMESTAMP_HEADER]), body, headers[SIGNATURE_HEADER])
    assert headers[BATCH_HEADER] == batch.id
    document = json.loads(body)
    assert document["id"] == batch.id and document["status"] == "CANCELED"
    assert document["job_ids"] == [] and document["webhook"] == receiver.url
    assert redis_only.zcard(keys.webhooks()) == 0
    store = Store(Db.of(redis_only, sender.settings.namespace))
    assert store.get_batch(batch.id).webhook_state == WebhookState.DELIVERED
    [attempt] = store.webhook_deliveries(batch.id)
    assert attempt["outcome"] == "delivered" and attempt["status"] == 200
    assert attempt["at"] == T0 and attempt["error"] is None
    assert store.get_batch(nothing.id).webhook_state is None
    assert sender.run_once(T0 + 3600 * SECOND_US) == 0  # delivered once, not again


def test_a_failing_receiver_is_retried_with_backoff(redis_only, receiver):
    receiver.statuses = [500, 503]
    sender = _sender(redis_only, webhook_secret=SECRET, webhook_allow="127.0.0.1")
    batch = _finished_batch(redis_only, sender.settings, receiver.url)
    store = Store(Db.of(redis_only, sender.settings.namespace))

    assert sender.run_once(T0) == 1  # 500
    assert store.get_batch(batch.id).webhook_state == WebhookState.PENDING
    assert sender.run_once(T0 + SECOND_US - 1) == 0  # not due before a second
    assert sender.run_once(T0 + SECOND_US) == 1  # 503
    assert sender.run_once(T0 + 2 * SECOND_US) == 0  # then two seconds
    assert sender.run_once(T0 + 3 * SECOND_US) == 1  # 200
    assert [status for _, _, status in receiver.calls] == [500, 503, 200]
    assert [(a["outcome"], a["status"]) for a in store.webhook_deliveries(batch.id)] == [
        ("failed", 500),
        ("failed", 503),
        ("delivered", 200),
    ]
    assert store.get_batch(batch.id).webhook_state == WebhookState.DELIVERED


def test_a_receiver_that_never_answers_is_given_up_after_the_retry_window(redis_only, receiver):
    receiver.statuses = [500] * 10
    sender = _sender(
        redis_only, webhook_secret=SECRET, webhook_allow="127.0.0.1", webhook_retry_for_s=5
    )
    batch = _finished_batch(redis_only, sender.settings, receiver.url)
    store = Store(Db.of(redis_only, sender.settings.namespace))
    now = T0
    while sender.run_once(now) or store.get_batch(batch.id).webhook_state == WebhookState.PENDING:
        now += SECOND_US
    # Tried at 0, 1, 3 s; the next (7 s) is past the 5 s window.
    assert [a["at"] for a in store.webhook_deliveries(batch.id)] == [
        T0,
        T0 + SECOND_US,
        T0 + 3 * SECOND_US,
    ]
    assert store.get_batch(batch.id).webhook_state == WebhookState.FAILED


def test_an_inside_address_is_refused_at_delivery_too(redis_only, receiver):
    # Without the allowlist, the receiver on loopback is refused before any connection; so is
    # a name that resolved to a public address at submission and to an inside one now.
    sender = _sender(redis_only, webhook_secret=SECRET)
    sender.resolve = lambda host, port: ["10.20.30.40"]
    loopback = _finished_batch(redis_only, sender.settings, receiver.url)
    renamed = _finished_batch(redis_only, sender.settings, "https://hooks.example.org/x")
    assert sender.run_once(T0) == 2
    assert receiver.calls == []
    store = Store(Db.of(redis_only, sender.settings.namespace))
    [first] = store.webhook_deliveries(loopback.id)
    assert first["outcome"] == "failed" and "127.0.0.1" in first["error"]
    [second] = store.webhook_deliveries(renamed.id)
    assert "10.20.30.40" in second["error"] and "TWEEZER_WEBHOOK_ALLOW" in second["error"]


def test_https_is_verified_against_the_name_in_the_url_at_the_checked_address(
    redis_only, tls_receiver
):
    receiver, ca_file = tls_receiver
    port = receiver.server.server_address[1]
    sender = _sender(
        redis_only, webhook_secret=SECRET, webhook_allow="127.0.0.1", webhook_ca_file=ca_file
    )
    sender.resolve = lambda host, port: ["127.0.0.1"]  # hooks.test and other.test, here
    good = _finished_batch(redis_only, sender.settings, f"https://hooks.test:{port}/in")
    wrong = _finished_batch(redis_only, sender.settings, f"https://other.test:{port}/in")
    assert sender.run_once(T0) == 2
    [(headers, _, _)] = receiver.calls  # only the one whose certificate names its host
    assert headers["Host"] == f"hooks.test:{port}" and headers[BATCH_HEADER] == good.id
    store = Store(Db.of(redis_only, sender.settings.namespace))
    assert store.get_batch(good.id).webhook_state == WebhookState.DELIVERED
    [refused] = store.webhook_deliveries(wrong.id)
    assert refused["outcome"] == "failed" and "other.test" in refused["error"], refused
    assert "certificate" in refused["error"].lower() or "hostname" in refused["error"].lower()


def test_no_secret_no_call(redis_only, receiver):
    sender = _sender(redis_only, webhook_secret="", webhook_allow="127.0.0.1")
    batch = _finished_batch(redis_only, sender.settings, receiver.url)
    sender.run_once(T0)
    assert receiver.calls == []
    [attempt] = Store(Db.of(redis_only, sender.settings.namespace)).webhook_deliveries(batch.id)
    assert "TWEEZER_WEBHOOK_SECRET" in attempt["error"]


def test_two_senders_never_make_the_same_delivery_at_once(redis_only, receiver):
    receiver.hang = threading.Event()
    one = _sender(
        redis_only, webhook_secret=SECRET, webhook_allow="127.0.0.1", webhook_timeout_s=30
    )
    two = WebhookSender(one.store.db, one.settings)
    _finished_batch(redis_only, one.settings, receiver.url)
    first = threading.Thread(target=one.run_once, args=(T0,))
    first.start()
    receiver.hang.wait(10)  # the first sender's request is at the receiver
    assert two.run_once(T0) == 0  # claimed by the first
    # Its claim lasts past one attempt's time limit; then the delivery is due again.
    assert two.run_once(T0 + int(lease_s(one.settings) * SECOND_US)) == 1
    receiver.release.set()
    first.join(30)
    assert len(receiver.calls) == 1


def test_an_attempt_is_recorded_before_sending_and_a_dying_sender_runs_out_of_attempts(
    redis_only,
):
    """A delivery that kills its sender every time (claimed, never finished) still ends: each
    claim records an attempt first, the next claim marks it lost, the cap ends it."""
    sender = _sender(
        redis_only, webhook_secret=SECRET, webhook_allow="127.0.0.1", webhook_max_attempts=3
    )
    batch = _finished_batch(redis_only, sender.settings, "http://127.0.0.1:9/never")
    store = Store(Db.of(redis_only, sender.settings.namespace))
    lease_us = int(lease_s(sender.settings) * SECOND_US)
    now = T0
    for made in range(3):  # claimed, then the sender "dies": nothing more is written
        [claim] = sender.claim(now, 10)
        assert claim.index == made
        outcomes = [a["outcome"] for a in store.webhook_deliveries(batch.id)]
        assert outcomes == ["lost"] * made + ["sending"]
        assert store.get_batch(batch.id).webhook_state == WebhookState.PENDING
        now += lease_us  # the dead sender's claim runs out
    assert sender.claim(now, 10) == []  # three attempts made: given up, not claimed
    assert [a["outcome"] for a in store.webhook_deliveries(batch.id)] == ["lost"] * 3
    assert store.get_batch(batch.id).webhook_state == WebhookState.FAILED
    assert redis_only.zcard(Keys(sender.settings.namespace).webhooks()) == 0


def test_a_delivery_taken_over_past_its_window_is_given_up_when_claimed(redis_only):
    sender = _sender(redis_only, webhook_secret=SECRET, webhook_retry_for_s=5)
    batch = _finished_batch(redis_only, sender.settings, "http://127.0.0.1:9/never")
    store = Store(Db.of(redis_only, sender.settings.namespace))
    assert len(sender.claim(T0, 10)) == 1  # its sender dies; due again a lease later (15 s),
    later = T0 + int(lease_s(sender.settings) * SECOND_US)
    assert sender.claim(later, 10) == []  # past the 5 s window: not made again
    assert store.get_batch(batch.id).webhook_state == WebhookState.FAILED
    assert [a["outcome"] for a in store.webhook_deliveries(batch.id)] == ["lost"]


@dataclass
class RawReceiver:
    """A TCP server on loopback that answers every connection with `answer(connection)`, and
    notes when each connection came (time.monotonic)."""

    answer: Callable[[socket.socket], None]
    server: socketserver.ThreadingTCPServer | None = None
    arrivals: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> RawReceiver:
        receiver = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                receiver.arrivals.append(time.monotonic())
                self.request.recv(65536)  # the request (small: one batch's JSON)
                with contextlib.suppress(OSError):  # the sender hung up: as intended
                    receiver.answer(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def _drip_status_line(stop: threading.Event) -> Callable[[socket.socket], None]:
    """Answers a byte of its status line every 0.5 s, for as long as the sender listens."""

    def answer(connection: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\n" * 1000:
            connection.sendall(bytes([byte]))
            if stop.wait(0.5):
                return

    return answer


def _drip_headers(stop: threading.Event) -> Callable[[socket.socket], None]:
    """The issue's receiver: a 200 status line, then a header dripped a byte every 0.5 s."""

    def answer(connection: socket.socket) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while not stop.wait(0.5):
            connection.sendall(b"x")

    return answer


def _huge_body(megabytes: int) -> Callable[[socket.socket], None]:
    def answer(connection: socket.socket) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (megabytes << 20))
        chunk = b"\0" * (1 << 20)
        for _ in range(megabytes):
            connection.sendall(chunk)

    return answer


def _not_http(connection: socket.socket) -> None:
    connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n" + b"x" * 9000)


def test_slow_and_huge_answers_hold_nobody_else_and_only_the_status_line_is_read(
    redis_only, receiver
):
    sender = _sender(
        redis_only, webhook_secret=SECRET, webhook_allow="127.0.0.1", webhook_timeout_s=1.5
    )
    store = Store(Db.of(redis_only, sender.settings.namespace))
    stop = threading.Event()
    with (
        RawReceiver(_drip_status_line(stop)) as dripping,
        RawReceiver(_drip_headers(stop)) as slow_headers,
        RawReceiver(_huge_body(200)) as huge,
        RawReceiver(_not_http) as stranger,
    ):
        batches = {
            name: _finished_batch(redis_only, sender.settings, url)
            for name, url in [
                ("dripping", dripping.url),
                ("slow_headers", slow_headers.url),
                ("huge", huge.url),
                ("stranger", stranger.url),
                ("good", receiver.url),
            ]
        }
        started = time.monotonic()
        assert sender.run_once(T0) == 5
        took = time.monotonic() - started
        stop.set()
    [(headers, _, _)] = receiver.calls
    assert headers[BATCH_HEADER] == batches["good"].id
    # Every receiver was called at once, side by side: none waited for the dripping one's
    # deadline (1.5 s).
    for raw in (dripping, slow_headers, huge, stranger):
        [arrived] = raw.arrivals
        assert arrived - started < 1.4, (raw.url, arrived - started)
    # The whole attempt ended at its deadline (1.5 s), though the receiver kept dripping.
    assert 1.4 <= took < 5.0, took

    def attempt(name: str) -> dict:
        [only] = store.webhook_deliveries(batches[name].id)
        return only

    assert attempt("dripping")["outcome"] == "failed"
    assert "deadline" in attempt("dripping")["error"]
    assert 1.4 <= attempt("dripping")["seconds"] < 4.0
    # A status line is an answer: the dripped header and the 200 MB body are never read.
    for name in ("slow_headers", "huge", "good"):
        assert attempt(name)["outcome"] == "delivered" and attempt(name)["status"] == 200
        assert attempt(name)["seconds"] < 1.4, (name, attempt(name))  # not cut by the deadline
    assert attempt("stranger")["outcome"] == "failed"
    assert "not HTTP" in attempt("stranger")["error"]


# --- through the API and a real cluster ------------------------------------------------------


def test_the_api_refuses_inside_webhooks_and_stores_nothing(cluster):
    account = cluster.new_account()
    before = cluster.client.zcard(Keys(cluster.settings.namespace).all_batches())
    for url, why in [
        ("http://127.0.0.1:9/hook", "127.0.0.1, a loopback, link-local or private address"),
        ("http://localhost/hook", "a loopback, link-local or private address"),
        ("http://[::1]/", "::1"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("http://[::127.0.0.1]/", "reaches 127.0.0.1"),
        ("http://[::ffff:0:127.0.0.1]/", "reaches 127.0.0.1"),
        ("http://[64:ff9b::127.0.0.1]/", "reaches 127.0.0.1"),
        ("http://[2002:7f00:1::]/", "reaches 127.0.0.1"),
        ("http://[fec0::1]/", "fec0::1, a loopback, link-local or private address"),
        ("gopher://example.org/", "not an http:// or https:// URL"),
    ]:
        body = {
            "sequence_builder": SEQ,
            "jobs": [{"runs": 1}],
            "device_type": "EMU_FREE",
            "project_id": account.project_id,
            "webhook": url,
        }
        reply = call_api(cluster, account, "POST", "/api/v1/batches", json=body)
        assert reply.status_code == 400, (url, reply.text)
        assert reply.json()["data"]["error_code"] == "webhook_refused"
        assert why in reply.json()["message"]
    assert cluster.client.zcard(Keys(cluster.settings.namespace).all_batches()) == before


def _admin_in(cluster, account: Account) -> Account:
    """A cluster administrator who is also a member of `account`'s project."""
    accounts = Accounts(cluster.client, cluster.settings.namespace)
    user = accounts.create_user(f"admin-{uuid.uuid4().hex[:8]}", admin=True)
    accounts.add_member(account.project_id, user)
    return Account(user, account.project_id, accounts.issue_token(user).token)


@pytest.mark.slow
def test_delivered_through_a_cluster_even_when_the_sender_is_killed_mid_delivery(
    start_cluster, receiver
):
    hooks = start_cluster(qpus={"EMU_FREE": 1}, webhook_allow="127.0.0.1", webhook_timeout_s=5)
    member = hooks.new_account()
    receiver.hang = threading.Event()
    sdk = hooks.sdk(member, webhook=receiver.url)
    batch = sdk.create_batch(SEQ, [{"runs": 5}], device_type="EMU_FREE")
    # The batch ends; the scheduler's sender is in the middle of its POST (whose time limit,
    # 5 s, is far off): kill it now.
    assert receiver.hang.wait(60)
    scheduler = hooks.cluster.child("scheduler")
    os.kill(scheduler.process.pid, signal.SIGKILL)
    scheduler.process.wait()
    receiver.release.set()
    hooks.cluster.supervise()  # notices the death ...
    time.sleep(1)
    hooks.cluster.supervise()  # ... and starts a new scheduler (after a second of backoff)
    # Once the dead sender's claim runs out (5 s limit + 5 s), the new one delivers.
    [(headers, body, _)] = wait_for(lambda: receiver.calls, timeout_s=60)
    secret = hooks.settings.webhook_secret
    assert verify(secret, int(headers[TIMESTAMP_HEADER]), body, headers[SIGNATURE_HEADER])
    document = json.loads(body)
    assert document["id"] == batch.id and document["status"] == "DONE"
    assert document["jobs_count_per_status"]["DONE"] == 1
    # It is what GET answers; a cluster administrator also sees how the delivery went, the
    # batch's owner does not.
    admin = _admin_in(hooks, member)
    deliveries = wait_for(
        lambda: (
            (
                d := call_api(hooks, admin, "GET", f"/api/v2/batches/{batch.id}").json()["data"][
                    "webhook_deliveries"
                ]
            )
            and d[-1]["outcome"] == "delivered"
            and d
        )
    )
    # The attempt cut short was recorded before its request was sent, and is shown as lost.
    assert [d["outcome"] for d in deliveries] == ["lost", "delivered"]
    got = call_api(hooks, admin, "GET", f"/api/v2/batches/{batch.id}").json()["data"]
    assert got.pop("webhook_state") == "DELIVERED"
    got.pop("webhook_deliveries")
    assert got == document
    owner = call_api(hooks, member, "GET", f"/api/v2/batches/{batch.id}").json()["data"]
    assert "webhook_deliveries" not in owner and owner == document


@pytest.mark.slow
def test_a_dripping_receiver_and_a_huge_answer_delay_no_other_projects_webhook(
    start_cluster, receiver
):
    """Against a real scheduler: two hostile receivers of one project are being answered
    when another project's batch ends; its webhook arrives within the deadline and a pass,
    and the scheduler does not read the 300 MB answer."""
    hooks = start_cluster(qpus={"EMU_FREE": 1}, webhook_allow="127.0.0.1", webhook_timeout_s=3)
    scheduler = psutil.Process(hooks.cluster.child("scheduler").process.pid)
    hostile, other = hooks.new_account(), hooks.new_account()
    stop = threading.Event()
    with RawReceiver(_drip_status_line(stop)) as dripping, RawReceiver(_huge_body(300)) as huge:
        memory_before = scheduler.memory_info().rss
        for url in (dripping.url, huge.url):
            hooks.sdk(hostile, webhook=url).create_batch(SEQ, [{"runs": 1}], device_type="EMU_FREE")
        wait_for(lambda: dripping.arrivals and huge.arrivals)  # both being answered now
        batch = hooks.sdk(other, webhook=receiver.url).create_batch(
            SEQ, [{"runs": 1}], device_type="EMU_FREE", wait=True
        )
        ended = time.time()
        wait_for(lambda: receiver.calls, timeout_s=30)
        arrived = time.time()
        stop.set()
    [(headers, _, _)] = receiver.calls
    assert headers[BATCH_HEADER] == batch.id
    # Deadline 3 s, plus the sender's 1 s poll, plus slack for a loaded machine: not the
    # dripping receiver's 1,000 s.
    assert arrived - ended < 3 + 1 + 3, arrived - ended
    assert scheduler.memory_info().rss - memory_before < 50 * 1024 * 1024
