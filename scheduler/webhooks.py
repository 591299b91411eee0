"""Announces finished batches to their webhooks, from every scheduler process, never from the API.

When a batch ends (DONE, ERROR, CANCELED, TIMED_OUT) the script that ends it also puts it in the
`webhooks` set, due now: a delivery is owed from the same atomic write that finished the batch.
A sender claims due deliveries (pushing each a lease ahead, so two senders never make the same
one at once, and one lost with its process is due again when the lease runs out), POSTs the
batch's JSON (as `GET /api/v2/batches/{id}` answers it) signed as core/webhooks.py says, and
records the attempt on the batch. A 2xx answer delivers it; anything else is tried again after
1, 2, 4 ... up to 300 s, until `webhook_retry_for_s` after the batch ended. Deliveries are
therefore at least once: receivers dedupe on the batch id (X-Tweezer-Batch).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import redis
import urllib3

from core import replies
from core.device_status import DeviceStatuses
from core.errors import WebhookRefused
from core.keys import Keys
from core.records import Batch
from core.render import batch_document
from core.scripts import Scripts
from core.settings import Settings
from core.status import WebhookState
from core.store import Store
from core.timefmt import now_us
from core.webhooks import (
    BATCH_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Resolver,
    Target,
    sign,
    system_resolver,
    target,
)

log = logging.getLogger("tweezer.webhooks")

SECOND_US = 1_000_000
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 300.0
#: Deliveries one sender claims at once (made one after the other).
CLAIM_MOST = 20


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt, as the batch shows it to administrators."""

    #: When it was made (µs).
    at: int
    #: "delivered" or "failed".
    outcome: str
    #: The receiver's HTTP status, or None when there was no answer.
    status: int | None
    error: str | None
    seconds: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def next_attempt_us(ended_us: int, attempts: int, now: int, retry_for_s: float) -> int | None:
    """When to try again after `attempts` failed ones (1, 2, 4 ... 300 s later), or None when
    that falls past `retry_for_s` after the batch ended (given up)."""
    delay_s = min(BACKOFF_FIRST_S * 2 ** (attempts - 1), BACKOFF_MAX_S)
    due = now + int(delay_s * SECOND_US)
    return due if due <= ended_us + int(retry_for_s * SECOND_US) else None


def lease_s(settings: Settings) -> float:
    """How long a claimed delivery is someone's: past one attempt's time limit."""
    return settings.webhook_timeout_s + 5.0


class WebhookSender:
    def __init__(
        self, client: redis.Redis, settings: Settings, resolve: Resolver = system_resolver
    ) -> None:
        self.settings = settings
        self.redis = client
        self.keys = Keys(settings.namespace)
        self.scripts = Scripts(client, settings.namespace)
        self.store = Store(client, settings.namespace)
        self.devices = DeviceStatuses(client, settings.namespace)
        self.allow = settings.webhook_allowlist
        self.resolve = resolve

    def run_once(self, now: int) -> int:
        """Makes every delivery due at `now` (those another sender claimed excepted); returns
        how many it attempted."""
        claimed = self.scripts.call(
            "claim_webhooks",
            now,
            int(lease_s(self.settings) * SECOND_US),
            CLAIM_MOST,
            keys=[self.keys.webhooks()],
        )
        for batch_id in claimed:
            self.deliver(batch_id, now)
        return len(claimed)

    def deliver(self, batch_id: str, now: int) -> Attempt | None:
        batch = self.store.get_batch(batch_id)
        if batch is None or batch.webhook is None or batch.end_us is None:
            self.redis.zrem(self.keys.webhooks(), batch_id)  # nothing to announce any more
            return None
        started = time.monotonic()
        status, error = self._post(batch)
        delivered = status is not None and 200 <= status < 300
        attempt = Attempt(
            at=now,
            outcome="delivered" if delivered else "failed",
            status=status,
            error=error,
            seconds=round(time.monotonic() - started, 3),
        )
        made = self.redis.llen(self.keys.batch_webhook(batch_id)) + 1
        due = None if delivered else next_attempt_us(
            batch.end_us, made, now, self.settings.webhook_retry_for_s
        )  # fmt: skip
        state = (
            WebhookState.DELIVERED if delivered
            else WebhookState.PENDING if due is not None
            else WebhookState.FAILED
        )  # fmt: skip
        replies.ok(
            self.scripts.call(
                "webhook_attempt",
                batch_id,
                attempt.to_json(),
                state,
                due or 0,
                keys=[
                    self.keys.webhooks(),
                    self.keys.batch(batch_id),
                    self.keys.batch_webhook(batch_id),
                ],
            )
        )
        log.info("webhook of batch %s: %s %s", batch_id, state, error or status)
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
        try:
            where = target(batch.webhook, self.allow, self.resolve)
            status = post(
                where,
                batch.webhook,
                headers,
                body,
                self.settings.webhook_timeout_s,
                self.settings.webhook_ca_file or None,
            )
            return status, None
        except WebhookRefused as exc:
            return None, exc.message
        except Exception as exc:  # whatever failed, the attempt is recorded
            # (connection, TLS, a URL urllib3 cannot use...), so retries and giving up follow.
            return None, f"{type(exc).__name__}: {exc}"

    def _document(self, batch: Batch) -> dict[str, object]:
        status = self.devices.effective([batch.device_type], now_us())[batch.device_type]
        return batch_document(batch, self.store.batch_job_ids(batch.id), status)

    def run(self, stop: threading.Event, poll_s: float = 1.0) -> None:
        """Delivers until `stop`; Redis away or a bad record is logged, never fatal."""
        while not stop.is_set():
            try:
                busy = self.run_once(now_us())
            except Exception:  # the scheduling thread goes on whatever happens here
                log.exception("webhook deliveries failed; trying again")
                busy = 0
            if not busy:
                stop.wait(poll_s)


def post(
    where: Target,
    url: str,
    headers: dict[str, str],
    body: bytes,
    timeout_s: float,
    ca_file: str | None = None,
) -> int:
    """POSTs to one of `where`'s checked addresses (never resolving the name again: what was
    checked is what is called), with the URL's host in Host, in TLS's SNI and as the name the
    certificate must carry (chained to `ca_file`, else the system's CAs); no redirects."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if where.scheme == "https" else 80
    host_header = where.host if where.port == default_port else f"{where.host}:{where.port}"
    last: Exception | None = None
    for address in where.addresses:
        pool: urllib3.HTTPConnectionPool
        if where.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                address,
                where.port,
                server_hostname=where.host,
                assert_hostname=where.host,
                cert_reqs="CERT_REQUIRED",
                ca_certs=ca_file,
            )
        else:
            pool = urllib3.HTTPConnectionPool(address, where.port)
        try:
            response = pool.urlopen(
                "POST",
                path,
                body=body,
                headers={**headers, "Host": host_header},
                redirect=False,
                retries=False,
                timeout=urllib3.Timeout(total=timeout_s),
            )
            return int(response.status)
        except urllib3.exceptions.NewConnectionError as exc:
            last = exc  # the next address may answer
        finally:
            pool.close()
    raise last or OSError("no address to connect to")
