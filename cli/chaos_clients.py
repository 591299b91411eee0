"""The soak's users (`tweezer chaos`): client threads that submit closed and open batches, add
jobs in rounds, close and cancel, each waiting for its batch to end before the next (as a user
with `wait=True`: the cluster's pace, not an ever longer queue). Every POST carries an
Idempotency-Key and is retried with it until answered, and one in ten is sent twice on purpose.
What each client was told is recorded as `Ack`s for the checker; the webhook receiver counts
deliveries per batch.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from cli.load import sequence_for
from core.hints import QPU_SECONDS_VARIABLE
from core.settings import Settings
from core.status import TERMINAL_BATCH_STATUSES
from core.webhooks import BATCH_HEADER
from scheduler.checker import Ack

TERMINAL = {s.value for s in TERMINAL_BATCH_STATUSES}


@dataclass(frozen=True)
class Account:
    project_id: str
    token: str


@dataclass
class Receiver:
    """The webhook receiver: counts deliveries per batch."""

    server: ThreadingHTTPServer
    deliveries: Counter[str] = field(default_factory=Counter)

    @classmethod
    def start(cls) -> Receiver:
        counts: Counter[str] = Counter()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                counts[self.headers.get(BATCH_HEADER, "")] += 1
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return cls(server, counts)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


class Clients:
    """Every client's behaviour and what they were told."""

    def __init__(self, core_url: str, settings: Settings, webhook_url: str, seed: int) -> None:
        self.core_url, self.settings = core_url, settings
        self.webhook_url, self.seed = webhook_url, seed
        self.acks: list[Ack] = []
        self.lock = threading.Lock()
        #: "<status> <method> <route>" -> how many: a 409 (cancelling a batch that ended) is
        #: expected, a 400 is a bug of this client or of the API.
        self.refusals: Counter[str] = Counter()
        #: Set when the faults stop: each client ends what it started, then stops.
        self.stop = threading.Event()

    def told(self) -> list[Ack]:
        with self.lock:
            return list(self.acks)

    def _ack(self, ack: Ack) -> None:
        with self.lock:
            self.acks.append(ack)

    def run(self, index: int, account: Account) -> None:
        """One client, until `stop`."""
        rng = random.Random(f"{self.seed}:client:{index}")
        http = Http(self.core_url, account.token, self.refusals)
        sequences = {t: sequence_for(t, 2, 100, self.settings) for t in ("EMU_FREE", "FRESNEL")}
        while not self.stop.is_set():
            device_type = rng.choice(("EMU_FREE", "EMU_FREE", "FRESNEL"))
            opened = rng.random() < 0.25
            webhook = rng.random() < 0.3
            jobs = _jobs(rng, rng.randint(1, 6))
            key = f"{index}-{secrets.token_hex(8)}"
            body = {
                "sequence_builder": sequences[device_type], "jobs": jobs,
                "device_type": device_type, "open": opened, "project_id": account.project_id,
                "webhook": self.webhook_url if webhook else None,
            }  # fmt: skip
            reply = http.until_answered("POST", "/api/v1/batches", body, key)
            if reply is None:
                continue  # refused (a 4xx): nothing was created
            batch_id = reply["id"]
            runs = tuple(j["runs"] for j in jobs)
            self._ack(Ack("create", batch_id, key, runs, opened, webhook))
            if rng.random() < 0.1:  # the same request again, as a client whose reply was lost
                again = http.until_answered("POST", "/api/v1/batches", body, key)
                if again is not None:
                    self._ack(Ack("create", again["id"], key, runs, opened, webhook))
            if opened:
                self._rounds(rng, http, batch_id, index)
            if rng.random() < 0.15:
                time.sleep(rng.uniform(0, 1.5))
                if http.until_answered("PATCH", f"/api/v2/batches/{batch_id}/cancel") is not None:
                    self._ack(Ack("cancel", batch_id))
            while not self.stop.is_set():  # the next batch once this one ended
                state = http.until_answered("GET", f"/api/v2/batches/{batch_id}")
                if state is None or state["status"] in TERMINAL:
                    break
                time.sleep(0.3)

    def _rounds(self, rng: random.Random, http: Http, batch_id: str, index: int) -> None:
        """An open batch's variational rounds, then its close."""
        for _ in range(rng.randint(1, 3)):
            time.sleep(rng.uniform(0.05, 1.0))
            jobs = _jobs(rng, rng.randint(1, 3))
            key = f"{index}-{secrets.token_hex(8)}"
            path = f"/api/v2/batches/{batch_id}/jobs"
            if http.until_answered("POST", path, jobs, key) is None:
                return  # closed meanwhile (timed out): nothing was added
            self._ack(Ack("add", batch_id, key, tuple(j["runs"] for j in jobs)))
        if http.until_answered("PATCH", f"/api/v2/batches/{batch_id}/complete") is not None:
            self._ack(Ack("close", batch_id))


class Http:
    """A client of the core API that retries a request until it is answered: a connection
    error, a 5xx or a 429 is tried again (with the same Idempotency-Key), a 2xx is the answer,
    any other 4xx means the request was refused (None, and counted in `refusals`)."""

    def __init__(self, base: str, token: str, refusals: Counter[str]) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.refusals = refusals

    def until_answered(
        self, method: str, path: str, body: Any = None, key: str = "", give_up_s: float = 600.0
    ) -> dict[str, Any] | None:
        headers = {"Idempotency-Key": key} if key else {}
        deadline = time.monotonic() + give_up_s
        delay = 0.1
        while time.monotonic() < deadline:
            try:
                reply = self.session.request(
                    method, self.base + path, json=body, headers=headers, timeout=20
                )
            except requests.RequestException:
                reply = None
            if reply is not None and reply.status_code < 300:
                data: dict[str, Any] = reply.json()["data"]
                return data
            if reply is not None and reply.status_code < 500 and reply.status_code != 429:
                route = "/".join("{id}" if len(p) == 36 else p for p in path.split("/"))
                self.refusals[f"{reply.status_code} {method} {route}"] += 1
                return None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise TimeoutError(f"{method} {path}: no answer in {give_up_s:g} s")


def _jobs(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Jobs a synthetic device runs for 0.01-0.3 s each."""
    return [
        {"runs": rng.randint(1, 50), "variables": {QPU_SECONDS_VARIABLE: rng.uniform(0.01, 0.3)}}
        for _ in range(count)
    ]
