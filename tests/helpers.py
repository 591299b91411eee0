"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import requests

T = TypeVar("T")


def wait_for(probe: Callable[[], T], timeout_s: float = 30.0, interval_s: float = 0.1) -> T:
    """Polls `probe` until it returns something truthy; fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s (last: {value!r})")
        time.sleep(interval_s)


def scheduler_passes(cluster: Any, qpu: str, passes: int = 2, timeout_s: float = 30.0) -> None:
    """Returns once the scheduler holding `qpu` has made `passes` more passes: each pass renews
    the QPU's lease first, so its TTL jumps back up. Whatever those passes would have done
    (dispatch a job, start a batch) they have had their chance to do."""
    key = cluster.store.keys.qpu_lease(qpu)
    last = cluster.client.pttl(key)
    assert last > 0, f"nobody holds {qpu}"

    def renewed() -> bool:
        nonlocal last, passes
        ttl = cluster.client.pttl(key)
        if ttl > last:
            passes -= 1
        last = ttl
        return passes <= 0

    wait_for(renewed, timeout_s=timeout_s, interval_s=0.01)


def run_admin(cluster: Any, *args: str, stdin: str = "") -> str:
    """A `tweezer` admin command against a test cluster, as an administrator runs it; returns
    its output (and fails the test if the command fails)."""
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        # The cluster's settings, as an administrator's environment holds them (the URL with
        # the Redis password: in the environment, not the process list).
        env={**os.environ, **cluster.settings.to_env()},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def create_body(account: Any, sequence: str, **changes: Any) -> dict[str, Any]:
    """A create-batch body as the SDK sends it (one guide job, EMU_FREE, closed), with
    `changes` applied."""
    body: dict[str, Any] = {
        "sequence_builder": sequence,
        "jobs": [{"runs": 5, "variables": {"omega_max": 6}}],
        "device_type": "EMU_FREE",
        "open": False,
        "project_id": account.project_id,
        "webhook": None,
    }
    body.update(changes)
    return body


def auth(who: Any) -> dict[str, str]:
    """The Authorization header of `who`: an account (its token) or a bare token."""
    token = who if isinstance(who, str) else who.token
    return {"Authorization": f"Bearer {token}"}


def call_api(cluster: Any, who: Any, method: str, path: str, **kwargs: Any) -> requests.Response:
    """The one way tests make an authenticated HTTP request: `path` under the cluster (the
    admin API for /admin paths, else the core API), as `who` (an account or a bare token);
    `kwargs` go to requests (extra `headers` are added to the Authorization)."""
    base = cluster.base_url if path.startswith("/admin") else cluster.core_url
    headers = {**auth(who), **kwargs.pop("headers", {})}
    kwargs.setdefault("timeout", 30)
    return requests.request(method, base + path, headers=headers, **kwargs)


def post_gzip(
    cluster: Any,
    account: Any,
    path: str,
    body: Any,
    headers: dict[str, str] | None = None,
    mtime: float | None = None,
) -> requests.Response:
    """A POST of `body` under the core API as the SDK sends it: gzip JSON, the account's token
    (and `headers`, e.g. an Idempotency-Key). gzip stamps `mtime` (default: now) into its
    header, so two retries of one body differ on the wire, as the SDK's do."""
    gzip_json = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    return call_api(
        cluster,
        account,
        "POST",
        path,
        data=gzip.compress(json.dumps(body).encode(), mtime=mtime),
        headers={**gzip_json, **(headers or {})},
        timeout=120,
    )


def record_keys(cluster: Any) -> set[str]:
    """Every record and index key of a cluster (Celery's, temporary, scheduling and wake-up
    keys aside): what "nothing stored" is checked against. Keys that other batches of the
    shared cluster change as they progress (status indexes, queues, usage, forecasts, results
    of jobs that exist) are left out: a refused request must add no record, whatever the
    scheduler does meanwhile."""
    ns = cluster.settings.namespace
    skip = (
        f"{ns}:celery:",
        f"{ns}:tmp:",
        f"{ns}:wakeup",
        f"{ns}:qpu:",
        f"{ns}:qpu-presence",  # workers announce themselves every few seconds
        f"{ns}:deliveries",
        f"{ns}:rate:",  # rate-limit state: every request counts, refused or not
        f"{ns}:counters",  # /metrics counts refusals too
        f"{ns}:queue:",
        f"{ns}:idx:batches:status:",
        f"{ns}:idx:jobs:status:",
        f"{ns}:device:",
        f"{ns}:forecast:",
        f"{ns}:forecast-order:",
        f"{ns}:snapshot-version:",
        f"{ns}:snapshot-changes:",
        f"{ns}:shares-version",
        f"{ns}:retention",
        f"{ns}:throughput:",  # jobs finished per 10 s: expiring, as other batches finish
        f"{ns}:webhooks",
        f"{ns}:worker-presence",
        f"{ns}:scheduler-",
    )
    keys = {k for k in cluster.client.scan_iter(f"{ns}:*") if not k.startswith(skip)}
    # A job's result appears when a worker finishes it: a job of another test may finish
    # meanwhile. A result without its job (a record this request made) would still show.
    return {k for k in keys if not (k.endswith(":result") and k.removesuffix(":result") in keys)}


@contextmanager
def hold_qpu(sdk: Any, sequence: str) -> Iterator[Any]:
    """Holds the cluster's only EMU_FREE QPU with an open, empty batch: batches submitted
    meanwhile stay PENDING with PENDING jobs. Closing it (on exit) frees the QPU."""
    holder = sdk.create_batch(sequence, [], open=True, device_type="EMU_FREE")
    wait_for(lambda: sdk.get_batch(holder.id).status == "RUNNING")
    try:
        yield holder
    finally:
        holder.close()


def certificates(directory: Any, address: str, dns_name: str = "") -> dict[str, Any]:
    """A test CA, a server certificate (`redis.*`) for `address` (an IP) and `dns_name` if
    given, and a client certificate, both signed by it."""
    names = ("ca.key", "ca.crt", "redis.key", "redis.crt", "client.key", "client.crt")
    paths = {n: directory / n for n in names}

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ca_key, ca_crt = str(paths["ca.key"]), str(paths["ca.crt"])
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=tweezer test CA",
        "-keyout",
        ca_key,
        "-out",
        ca_crt,
    )
    request = directory / "redis.csr"
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=redis",
        "-keyout",
        str(paths["redis.key"]),
        "-out",
        str(request),
    )
    extensions = directory / "san.cnf"
    extensions.write_text(f"subjectAltName=IP:{address}{f',DNS:{dns_name}' if dns_name else ''}\n")
    openssl(
        "x509",
        "-req",
        "-in",
        str(request),
        "-CA",
        ca_crt,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        str(extensions),
        "-out",
        str(paths["redis.crt"]),
    )
    client_request = directory / "client.csr"
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=tweezer worker",
        "-keyout",
        str(paths["client.key"]),
        "-out",
        str(client_request),
    )
    openssl(
        "x509",
        "-req",
        "-in",
        str(client_request),
        "-CA",
        ca_crt,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        str(paths["client.crt"]),
    )
    return paths


def redis_url(client: Any) -> str:
    """The URL (with its password) of the redis-server `client` talks to: what a `tweezer`
    command run against a store-level test's Redis is given."""
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://:{kwargs['password']}@{kwargs['host']}:{kwargs['port']}/0"


#: The deprecated pulser-pasqal shim's virtualenv (it pins pasqal-cloud 0.22: `make test`).
SHIM_PYTHON = Path(__file__).resolve().parent.parent / ".venv-shim" / "bin" / "python"

#: What every shim script starts with: its arguments, and `connection` (pulser-pasqal's
#: PasqalCloud to the cluster with the account's token) and `sequence` made from them.
_SHIM_PROLOGUE = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
from pasqal_cloud.authentication import TokenProvider
from pasqal_cloud.endpoints import Endpoints
from pulser import Sequence
from pulser_pasqal import PasqalCloud

core, account, token, project, text = sys.argv[1:]

class Token(TokenProvider):
    def get_token(self):
        return token

connection = PasqalCloud(
    project_id=project, token_provider=Token(), endpoints=Endpoints(core=core, account=account)
)
sequence = Sequence.from_abstract_repr(text)
"""


def run_shim(script: str, cluster: Any, account: Any, sequence: str, timeout_s: float = 180) -> Any:
    """`script` run by pulser-pasqal in its own virtualenv against `cluster` as `account`, on
    `sequence`; what its last line printed, as JSON."""
    assert SHIM_PYTHON.exists(), "the pulser-pasqal virtualenv is missing: run `make test`"
    done = subprocess.run(
        [
            str(SHIM_PYTHON),
            "-c",
            _SHIM_PROLOGUE + script,
            cluster.core_url,
            cluster.account_url,
            account.token,
            account.project_id,
            sequence,
        ],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
