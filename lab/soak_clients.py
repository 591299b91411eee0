"""The soak's users (`tweezer chaos`): client threads that submit closed and open batches, add
jobs in rounds, close and cancel, as a workload file plans them or as a built-in mix, each
waiting for its batch to end before the next (as a user with `wait=True`: the cluster's pace,
not an ever longer queue). Every POST carries an
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

from core.hints import QPU_SECONDS_VARIABLE
from core.settings import Settings
from core.status import TERMINAL_BATCH_STATUSES
from core.webhooks import BATCH_HEADER
from lab.checker import Ack
from lab.sequences import sequence_for
from lab.workload import PlannedBatch

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


@dataclass(frozen=True)
class Plan:
    """What one client session does with one batch."""

    account: Account
    device_type: str
    atoms: int
    pulse_ns: int
    #: Jobs of each round ({"runs", "variables"}); more than one round: an open batch.
    rounds: tuple[tuple[dict[str, Any], ...], ...]
    #: Seconds before each round after the first.
    think_s: tuple[float, ...]
    #: Seconds after submission its user cancels it; None: never.
    cancel_after_s: float | None
    webhook: bool


class Clients:
    """Every client's behaviour and what they were told. Batches come from a workload's plan
    (`tweezer load`'s files: its projects, users, jobs, open rounds, think times and cancels,
    in order, again and again until the soak ends) or, without one, from a built-in mix."""

    def __init__(
        self,
        core_url: str,
        settings: Settings,
        webhook_url: str,
        seed: int,
        planned: list[PlannedBatch] | None = None,
        speedup: float = 1.0,
    ) -> None:
        self.core_url, self.settings = core_url, settings
        self.webhook_url, self.seed = webhook_url, seed
        self.planned, self.speedup = planned or [], speedup
        self.acks: list[Ack] = []
        self.lock = threading.Lock()
        #: "<status> <method> <route>" -> how many: a 409 (cancelling a batch that ended) is
        #: expected, a 400 is a bug of this client or of the API.
        self.refusals: Counter[str] = Counter()
        #: Set when the faults stop: each client ends what it started, then stops.
        self.stop = threading.Event()
        #: (project, user) of the workload -> its account; the built-in mix's, by client.
        self.accounts: dict[tuple[str, str], Account] = {}
        self._taken = 0

    def told(self) -> list[Ack]:
        with self.lock:
            return list(self.acks)

    def _ack(self, ack: Ack) -> None:
        with self.lock:
            self.acks.append(ack)

    def _next(self, rng: random.Random, index: int) -> Plan:
        if not self.planned:
            return self._mixed(rng, self.accounts[("", str(index))])
        with self.lock:
            p = self.planned[self._taken % len(self.planned)]
            self._taken += 1
        speedup = self.speedup
        first = p.rounds[0][0]
        return Plan(
            account=self.accounts[(p.project, p.user)],
            device_type=p.device_type,
            atoms=first.atoms,
            pulse_ns=first.pulse_ns,
            rounds=tuple(
                tuple(
                    {"runs": j.runs, "variables": {QPU_SECONDS_VARIABLE: (j.qpu_s or 0) / speedup}}
                    for j in jobs
                )
                for jobs in p.rounds
            ),
            think_s=tuple(t / speedup for t in p.think_s),
            cancel_after_s=None if p.cancel_after_s is None else p.cancel_after_s / speedup,
            webhook=rng.random() < 0.3,
        )

    def _mixed(self, rng: random.Random, account: Account) -> Plan:
        """The built-in mix: a quarter open, three in ten with a webhook, 15% cancelled."""
        opened = rng.random() < 0.25
        rounds = 1 + (rng.randint(1, 3) if opened else 0)
        return Plan(
            account=account,
            device_type=rng.choice(("EMU_FREE", "EMU_FREE", "FRESNEL")),
            atoms=2,
            pulse_ns=100,
            rounds=tuple(_jobs(rng, rng.randint(1, 6 if r == 0 else 3)) for r in range(rounds)),
            think_s=tuple(rng.uniform(0.05, 1.0) for _ in range(rounds - 1)),
            cancel_after_s=rng.uniform(0, 1.5) if rng.random() < 0.15 else None,
            webhook=rng.random() < 0.3,
        )

    def run(self, index: int) -> None:
        """One client, until `stop`."""
        rng = random.Random(f"{self.seed}:client:{index}")
        sessions: dict[str, Http] = {}
        while not self.stop.is_set():
            plan = self._next(rng, index)
            token = plan.account.token
            http = sessions.setdefault(token, Http(self.core_url, token, self.refusals))
            self._session(rng, http, plan, index)

    def _session(self, rng: random.Random, http: Http, plan: Plan, index: int) -> None:
        """Creates the batch, adds its rounds and closes it (open), cancels it if the plan
        says so, then waits for it to end."""
        opened = len(plan.rounds) > 1
        sequence = sequence_for(plan.device_type, plan.atoms, plan.pulse_ns, self.settings)
        key = f"{index}-{secrets.token_hex(8)}"
        body = {
            "sequence_builder": sequence,
            "jobs": list(plan.rounds[0]),
            "device_type": plan.device_type,
            "open": opened,
            "project_id": plan.account.project_id,
            "webhook": self.webhook_url if plan.webhook else None,
        }
        reply = http.until_answered("POST", "/api/v1/batches", body, key)
        if reply is None:
            return  # refused (a 4xx): nothing was created
        batch_id, submitted = reply["id"], time.monotonic()
        runs = tuple(j["runs"] for j in plan.rounds[0])
        self._ack(Ack("create", batch_id, key, runs, opened, plan.webhook))
        if rng.random() < 0.1:  # the same request again, as a client whose reply was lost
            again = http.until_answered("POST", "/api/v1/batches", body, key)
            if again is not None:
                self._ack(Ack("create", again["id"], key, runs, opened, plan.webhook))
        if opened:
            self._rounds(http, batch_id, plan, index)
        if plan.cancel_after_s is not None:
            time.sleep(max(0.0, submitted + plan.cancel_after_s - time.monotonic()))
            if http.until_answered("PATCH", f"/api/v2/batches/{batch_id}/cancel") is not None:
                self._ack(Ack("cancel", batch_id))
        while not self.stop.is_set():  # the next batch once this one ended
            state = http.until_answered("GET", f"/api/v2/batches/{batch_id}")
            if state is None or state["status"] in TERMINAL:
                break
            time.sleep(0.3)

    def _rounds(self, http: Http, batch_id: str, plan: Plan, index: int) -> None:
        """An open batch's variational rounds after the first, then its close."""
        for jobs, think_s in zip(plan.rounds[1:], plan.think_s, strict=True):
            time.sleep(think_s)
            key = f"{index}-{secrets.token_hex(8)}"
            path = f"/api/v2/batches/{batch_id}/jobs"
            if http.until_answered("POST", path, list(jobs), key) is None:
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


def _jobs(rng: random.Random, count: int) -> tuple[dict[str, Any], ...]:
    """Jobs a synthetic device runs for 0.01-0.3 s each."""
    return tuple(
        {"runs": rng.randint(1, 50), "variables": {QPU_SECONDS_VARIABLE: rng.uniform(0.01, 0.3)}}
        for _ in range(count)
    )
