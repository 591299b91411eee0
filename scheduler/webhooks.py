"""Announces finished batches to their webhooks, from every scheduler process, never from the API.

When a batch ends (DONE, ERROR, CANCELED, TIMED_OUT) the script that ends it also puts it in the
`webhooks` set, due now: a delivery is owed from the same atomic write that finished the batch.
A sender claims due deliveries (pushing each a lease ahead, so two senders never make the same
one at once, and one lost with its process is due again when the lease runs out) and records
an attempt for each before sending anything (so a delivery that kills its sender still runs out
of attempts and of its window). It POSTs the batch's JSON (as `GET /api/v2/batches/{id}`
answers it) signed as core/webhooks.py says, and records how the attempt went. A 2xx answer
delivers it; anything else is tried again after 1, 2, 4 ... up to 300 s, until
`webhook_retry_for_s` after the batch ended or `webhook_max_attempts` attempts. Deliveries are
therefore at least once: receivers dedupe on the batch id (X-Tweezer-Batch).

A receiver is a stranger: each attempt has one wall-clock deadline for everything it does, only
the status line of the answer is read (never the body), and deliveries run side by side
(`webhook_concurrency`), so a slow or hostile receiver holds one of them, not the others.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from core import replies
from core.db import Db
from core.device_status import DeviceStatuses
from core.errors import WebhookRefused
from core.records import Batch
from core.render import batch_document
from core.script_args import ClaimWebhooksArgs, WebhookAttemptArgs
from core.settings import Settings
from core.status import WebhookOutcome, WebhookState
from core.store import Store
from core.timefmt import now_us, to_us
from core.webhooks import (
    BATCH_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Resolver,
    Target,
    bounded,
    sign,
    system_resolver,
    target,
)

log = logging.getLogger("tweezer.webhooks")

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 300.0
#: Deliveries one `run_once` claims at most (made side by side, `webhook_concurrency` at once).
CLAIM_MOST = 20
#: What is read of a receiver's answer: its status line, within this many bytes (interim 1xx
#: answers and their headers included). The body is never read: a receiver that answers with
#: gigabytes costs the sender nothing.
MAX_ANSWER_BYTES = 8192
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: [^\r\n]*)?\r?\n")


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt, as the batch shows it to administrators."""

    #: When it was claimed (µs).
    at: int
    outcome: WebhookOutcome
    #: The receiver's HTTP status, or None when there was no answer.
    status: int | None
    error: str | None
    #: How long it took; None while SENDING.
    seconds: float | None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


@dataclass(frozen=True)
class Claim:
    """A delivery this sender claimed: its batch and the index of the attempt recorded for it."""

    batch_id: str
    index: int
    at: int


def next_attempt_us(ended_us: int, attempts: int, now: int, retry_for_s: float) -> int | None:
    """When to try again after `attempts` failed ones (1, 2, 4 ... 300 s later), or None when
    that falls past `retry_for_s` after the batch ended (given up)."""
    delay_s = min(BACKOFF_FIRST_S * 2 ** (attempts - 1), BACKOFF_MAX_S)
    due = now + to_us(delay_s)
    return due if due <= ended_us + to_us(retry_for_s) else None


def lease_s(settings: Settings) -> float:
    """How long a claimed delivery is someone's: past one attempt's deadline."""
    return settings.webhook_timeout_s + 5.0


class WebhookSender:
    def __init__(self, db: Db, settings: Settings, resolve: Resolver = system_resolver) -> None:
        self.settings = settings
        self.redis = db.client
        self.keys = db.keys
        self.scripts = db.scripts
        self.store = Store(db)
        self.devices = DeviceStatuses(db)
        self.allow = settings.webhook_allowlist
        self.resolve = resolve
        self._pool = ThreadPoolExecutor(
            max_workers=settings.webhook_concurrency, thread_name_prefix="tweezer-webhook"
        )

    def claim(self, now: int, most: int) -> list[Claim]:
        """Claims at most `most` deliveries due at `now`, each with its attempt recorded."""
        pending = Attempt(now, WebhookOutcome.SENDING, None, None, None)
        rows = self.scripts.run(
            ClaimWebhooksArgs(
                now=now,
                lease_us=to_us(lease_s(self.settings)),
                most=most,
                retry_for_us=to_us(self.settings.webhook_retry_for_s),
                max_attempts=self.settings.webhook_max_attempts,
                attempt=pending.to_json(),
            ),
            keys=[self.keys.webhooks()],
        )
        return [Claim(str(batch_id), int(index), now) for batch_id, index in rows]

    def run_once(self, now: int) -> int:
        """Makes every delivery due at `now` (those another sender claimed excepted), side by
        side, and waits for them; returns how many it attempted."""
        claims = self.claim(now, CLAIM_MOST)
        wait([self._pool.submit(self.deliver, claim) for claim in claims])
        return len(claims)

    def deliver(self, claim: Claim) -> Attempt | None:
        batch = self.store.get_batch(claim.batch_id)
        if batch is None or batch.webhook is None or batch.end_us is None:
            return None  # purged meanwhile: the next claim drops it
        started = time.monotonic()
        status, error = self._post(batch)
        delivered = status is not None and 200 <= status < 300
        attempt = Attempt(
            at=claim.at,
            outcome=WebhookOutcome.DELIVERED if delivered else WebhookOutcome.FAILED,
            status=status,
            error=error,
            seconds=round(time.monotonic() - started, 3),
        )
        made = claim.index + 1
        due = None  # delivered, or out of attempts
        if not delivered and made < self.settings.webhook_max_attempts:
            # Counted from the claim, as `now` passed in: the backoff is a pure function of it.
            due = next_attempt_us(batch.end_us, made, claim.at, self.settings.webhook_retry_for_s)
        state = (
            WebhookState.DELIVERED
            if delivered
            else WebhookState.PENDING
            if due is not None
            else WebhookState.FAILED
        )
        replies.ok(
            self.scripts.run(
                WebhookAttemptArgs(
                    batch_id=claim.batch_id,
                    index=claim.index,
                    attempt=attempt.to_json(),
                    state=state,
                    next_us=due or 0,
                ),
                keys=[
                    self.keys.webhooks(),
                    self.keys.batch(claim.batch_id),
                    self.keys.batch_webhook(claim.batch_id),
                ],
            )
        )
        log.info("webhook of batch %s: %s %s", claim.batch_id, state, error or status)
        return attempt

    def _post(self, batch: Batch) -> tuple[int | None, str | None]:
        """(the receiver's status, why it failed) of one POST of the batch's JSON."""
        assert batch.webhook is not None
        if not self.settings.webhook_secret:
            return None, "the cluster has no webhook secret (TWEEZER_WEBHOOK_SECRET): not sent"
        body = json.dumps(self._document(batch), separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "tweezer-webhooks",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self.settings.webhook_secret, timestamp, body),
            BATCH_HEADER: batch.id,
        }
        deadline = time.monotonic() + self.settings.webhook_timeout_s
        try:
            left = max(deadline - time.monotonic(), 0.001)
            where = target(batch.webhook, self.allow, bounded(self.resolve, left))
            status = post(
                where,
                batch.webhook,
                headers,
                body,
                deadline,
                self.settings.webhook_ca_file or None,
            )
            return status, None
        except WebhookRefused as exc:
            return None, exc.message
        except TimeoutError:  # a socket's, DNS's (concurrent.futures'), or _left's
            return None, (
                f"TimeoutError: not answered within the delivery's deadline "
                f"({self.settings.webhook_timeout_s:g} s, TWEEZER_WEBHOOK_TIMEOUT_S)"
            )
        except Exception as exc:  # whatever failed, the attempt is recorded
            # (connection, TLS, the deadline, an answer that is not HTTP...), so retries and
            # giving up follow.
            return None, f"{type(exc).__name__}: {exc}"

    def _document(self, batch: Batch) -> dict[str, object]:
        status = self.devices.effective([batch.device_type], now_us())[batch.device_type]
        return batch_document(batch, self.store.batch_job_ids(batch.id), status)

    def run(self, stop: threading.Event, poll_s: float = 1.0) -> None:
        """Delivers until `stop`, `webhook_concurrency` deliveries at a time: a slot freed by
        one is taken by the next due delivery at once. Redis away or a bad record is logged,
        never fatal."""
        in_flight: set[Future[Attempt | None]] = set()
        while not stop.is_set():
            in_flight = {f for f in in_flight if not f.done()}
            free = self.settings.webhook_concurrency - len(in_flight)
            claims: list[Claim] = []
            if free > 0:
                try:
                    claims = self.claim(now_us(), free)
                except Exception:  # the scheduling thread goes on whatever happens here
                    log.exception("claiming webhook deliveries failed; trying again")
            for claim in claims:
                in_flight.add(self._pool.submit(self._deliver_logged, claim))
            if claims:
                continue
            if in_flight:  # until a slot frees, or the poll interval passes
                wait(in_flight, timeout=poll_s, return_when=FIRST_COMPLETED)
            else:
                stop.wait(poll_s)

    def _deliver_logged(self, claim: Claim) -> Attempt | None:
        try:
            return self.deliver(claim)
        except Exception:  # its claim runs out and it is made again
            log.exception("webhook delivery of batch %s failed", claim.batch_id)
            return None


def _left(deadline: float) -> float:
    """Seconds left before `deadline` (time.monotonic); TimeoutError once none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("no answer within the delivery's deadline")
    return left


def post(
    where: Target,
    url: str,
    headers: dict[str, str],
    body: bytes,
    deadline: float,
    ca_file: str | None = None,
) -> int:
    """POSTs to one of `where`'s checked addresses (never resolving the name again: what was
    checked is what is called), with the URL's host in Host, in TLS's SNI and as the name the
    certificate must carry (chained to `ca_file`, else the system's CAs); no redirects. Returns
    the answer's status. Everything (connecting, TLS, sending, the status line) ends by
    `deadline` (time.monotonic): each blocking call waits only for what is left of it."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if where.scheme == "https" else 80
    host_header = where.host if where.port == default_port else f"{where.host}:{where.port}"
    head = "".join(
        f"{name}: {value}\r\n"
        for name, value in {
            **headers,
            "Host": host_header,
            "Content-Length": str(len(body)),
            "Connection": "close",
        }.items()
    )
    request = f"POST {path} HTTP/1.1\r\n{head}\r\n".encode("latin-1") + body
    last: Exception | None = None
    for address in where.addresses:
        try:
            connection = socket.create_connection((address, where.port), timeout=_left(deadline))
        except TimeoutError:
            raise
        except OSError as exc:
            last = exc  # the next address may answer
            continue
        try:
            if where.scheme == "https":
                context = ssl.create_default_context(cafile=ca_file)
                connection.settimeout(_left(deadline))
                connection = context.wrap_socket(connection, server_hostname=where.host)
            connection.settimeout(_left(deadline))
            connection.sendall(request)
            return _read_status(connection, deadline)
        finally:
            connection.close()
    raise last or OSError("no address to connect to")


def _read_status(connection: socket.socket, deadline: float) -> int:
    """The status of the answer's final status line (after any interim 1xx answers), read
    within MAX_ANSWER_BYTES and the deadline."""
    seen = b""
    while True:
        match = _STATUS_LINE.match(seen)
        if match is not None:
            status = int(match.group(1))
            if status >= 200:
                return status
            end = seen.find(b"\r\n\r\n")  # an interim answer: skip its headers
            if end >= 0:
                seen = seen[end + 4 :]
                continue
        elif len(seen) >= 16 and not seen.startswith(b"HTTP/"):
            raise ValueError("the receiver's answer is not HTTP/1.x")
        if len(seen) >= MAX_ANSWER_BYTES:
            raise ValueError(f"no status line in the answer's first {MAX_ANSWER_BYTES} bytes")
        connection.settimeout(_left(deadline))
        chunk = connection.recv(MAX_ANSWER_BYTES - len(seen))
        if not chunk:
            raise ConnectionError("the receiver closed the connection without an answer")
        seen += chunk
