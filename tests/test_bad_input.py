"""Bad input: a 4xx JSend error that names the problem, and nothing stored. Never a 500."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator

import pytest
import requests

from tests import sequences
from tests.helpers import call_api, create_body, record_keys

SEQ = sequences.parametrized()


@pytest.fixture
def post(cluster, account):
    def send(
        body: bytes | str | Iterator[bytes],
        path: str = "/api/v1/batches",
        headers: dict | None = None,
        method: str = "POST",
    ) -> requests.Response:
        data = body.encode() if isinstance(body, str) else body
        json_type = {"Content-Type": "application/json"}
        return call_api(
            cluster, account, method, path, data=data, headers={**json_type, **(headers or {})}
        )

    return send


def batch_body(account, **changes) -> dict:
    return create_body(account, SEQ, **changes)


def job_with(**job) -> list[dict]:
    return [job]


CASES = [
    # (id, body builder, expected status, words the message must contain)
    ("malformed JSON", lambda a: '{"jobs": [', 400, "not valid JSON"),
    ("empty body", lambda a: "", 400, "empty"),
    ("not an object", lambda a: "[1, 2]", 400, "Invalid request body"),
    ("duplicate key", lambda a: '{"jobs": [], "jobs": []}', 400, "repeats the key 'jobs'"),
    ("deep nesting", lambda a: "[" * 100_000 + "]" * 100_000, 400, "nested too deeply"),
    (
        "NaN runs",
        lambda a: json.dumps(batch_body(a)).replace('"runs": 5', '"runs": NaN'),
        400,
        "NaN",
    ),
    (
        "Infinity runs",
        lambda a: json.dumps(batch_body(a)).replace('"runs": 5', '"runs": Infinity'),
        400,
        "Infinity",
    ),
    (
        "huge runs",
        lambda a: json.dumps(batch_body(a)).replace('"runs": 5', '"runs": ' + "1" * 5000),
        400,
        "number",
    ),
    ("negative runs", lambda a: batch_body(a, jobs=job_with(runs=-1)), 400, "jobs[0].runs"),
    ("zero runs", lambda a: batch_body(a, jobs=job_with(runs=0)), 400, "jobs[0].runs"),
    ("fractional runs", lambda a: batch_body(a, jobs=job_with(runs=1.5)), 400, "jobs[0].runs"),
    ("string runs", lambda a: batch_body(a, jobs=job_with(runs="10")), 400, "jobs[0].runs"),
    ("boolean runs", lambda a: batch_body(a, jobs=job_with(runs=True)), 400, "jobs[0].runs"),
    (
        "runs over the device limit",
        lambda a: batch_body(a, jobs=job_with(runs=10**6, variables={"omega_max": 6})),
        400,
        "at most 100000",
    ),
    ("unknown job key", lambda a: batch_body(a, jobs=job_with(run=5)), 400, "jobs[0].run"),
    (
        "missing jobs",
        lambda a: {k: v for k, v in batch_body(a).items() if k != "jobs"},
        400,
        "jobs",
    ),
    ("closed batch without jobs", lambda a: batch_body(a, jobs=[]), 400, "at least one job"),
    ("unknown device type", lambda a: batch_body(a, device_type="EMU_NOPE"), 422, "EMU_NOPE"),
    (
        "device type not served",
        lambda a: batch_body(a, device_type="EMU_MPS"),
        422,
        "serves: EMU_FREE",
    ),
    (
        "no served device can run a batch without a device type",
        lambda a: batch_body(
            a, device_type=None, sequence_builder=sequences.fixed(atoms=17), jobs=job_with(runs=5)
        ),
        422,
        "EMU_FREE (the cluster's default device type) refused it: sequence_builder has 17 atoms",
    ),
    (
        "sequence not a sequence",
        lambda a: batch_body(a, sequence_builder='{"hello": 1}'),
        422,
        "not a valid Pulser sequence",
    ),
    (
        "sequence not JSON",
        lambda a: batch_body(a, sequence_builder="pulser!"),
        422,
        "not a valid Pulser sequence",
    ),
    (
        "legacy Pulser JSON",
        lambda a: batch_body(
            a,
            sequence_builder=json.dumps(
                {"_build": True, "__module__": "pulser.sequence", "__name__": "Sequence"}
            ),
        ),
        422,
        "not a valid Pulser sequence",
    ),
    (
        "a misspelt variable leaves the declared one missing",
        lambda a: batch_body(a, jobs=job_with(runs=5, variables={"omega": 6})),
        422,
        "missing value(s) for omega_max",
    ),
    (
        "missing variable",
        lambda a: batch_body(a, jobs=job_with(runs=5, variables={})),
        422,
        "missing value(s) for omega_max",
    ),
    (
        "variable of the wrong shape",
        lambda a: batch_body(a, jobs=job_with(runs=5, variables={"omega_max": [1, 2, 3]})),
        422,
        "cannot be built",
    ),
    (
        "variable beyond the channel",
        lambda a: batch_body(a, jobs=job_with(runs=5, variables={"omega_max": 100})),
        422,
        "amplitude",
    ),
    (
        "a job predicted to outrun the job time limit (16 atoms for 20 µs: ~70 s, limit 60 s)",
        lambda a: batch_body(
            a, sequence_builder=sequences.fixed(duration=20_000, atoms=16), jobs=job_with(runs=5)
        ),
        422,
        "jobs[0] is predicted to run 70 s on EMU_FREE (16 atoms, 20000 ns), over the job time "
        "limit of 60 s",
    ),
    (
        "too many atoms",
        lambda a: batch_body(a, sequence_builder=sequences.fixed(atoms=17), jobs=job_with(runs=5)),
        422,
        "17 atoms",
    ),
    (
        "too many pulses",
        lambda a: batch_body(
            a, sequence_builder=sequences.many_pulses(2001), jobs=job_with(runs=5)
        ),
        422,
        "2001 operations",
    ),
    (
        "too long",
        lambda a: batch_body(
            a, sequence_builder=sequences.fixed(duration=25_000), jobs=job_with(runs=5)
        ),
        422,
        "25000 ns",
    ),
    (
        "bad backend configuration",
        lambda a: batch_body(a, backend_configuration="{}"),
        422,
        "backend_configuration",
    ),
    (
        "bad configuration",
        lambda a: batch_body(a, configuration={"with_noise": "yes"}),
        400,
        "configuration.with_noise",
    ),
    ("project id not a UUID", lambda a: batch_body(a, project_id="p1"), 400, "project_id"),
    (
        "project of someone else",
        lambda a: batch_body(a, project_id="00000000-0000-4000-8000-000000000000"),
        403,
        "not a member",
    ),
]


@pytest.mark.parametrize(
    ("build", "status", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_create_batch_refuses(cluster, account, post, build, status, words):
    body = build(account)
    before = record_keys(cluster)
    response = post(body if isinstance(body, str) else json.dumps(body))
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["status"] == "fail"
    assert words in payload["data"]["description"]
    assert record_keys(cluster) == before


def test_gzip_refusals(cluster, account, post):
    before = record_keys(cluster)
    bomb = gzip.compress(b"[" + b" " * (80 * 1024 * 1024) + b"]")  # inflates past the 64 MiB cap
    response = post(bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413 and "Decompressed body is larger" in response.text
    corrupt = gzip.compress(json.dumps(batch_body(account)).encode())[:-12]
    response = post(corrupt, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400 and "not valid gzip" in response.text
    response = post(zlib.compress(b"{}"), headers={"Content-Encoding": "br"})
    assert response.status_code == 415 and "'br'" in response.text
    response = post(b"x" * (17 * 1024 * 1024))  # over the 16 MiB wire cap
    assert response.status_code == 413
    chunks = (b"x" * (1024 * 1024) for _ in range(17))  # the same, without Content-Length
    response = post(chunks)
    assert response.status_code == 413 and "larger than" in response.text
    assert record_keys(cluster) == before


def test_state_conflicts_and_unknown_ids(cluster, account, post, sdk):
    batch = sdk.create_batch(
        SEQ, [{"runs": 5, "variables": {"omega_max": 6}}], device_type="EMU_FREE", wait=True
    )
    before = record_keys(cluster)
    closed = post(
        json.dumps([{"runs": 5, "variables": {"omega_max": 6}}]),
        path=f"/api/v2/batches/{batch.id}/jobs",
    )
    assert closed.status_code == 409 and "closed" in closed.json()["data"]["description"]
    job_id = batch.ordered_jobs[0].id
    cancel = post(b"", path=f"/api/v2/jobs/{job_id}/cancel", method="PATCH")
    assert cancel.status_code == 409 and "DONE" in cancel.json()["data"]["description"]
    unknown = "12345678-1234-4234-8234-123456789012"
    for method, path in [
        ("GET", f"/api/v2/batches/{unknown}"),
        ("GET", f"/api/v2/jobs/{unknown}"),
        ("GET", "/api/v2/batches/not-a-uuid"),
        ("PATCH", f"/api/v2/batches/{unknown}/cancel"),
        ("GET", f"/api/v1/jobs/{unknown}/results_link"),
    ]:
        response = post(b"", path=path, method=method)
        assert response.status_code == 404 and "not found" in response.json()["data"]["description"]
    assert post(b"", path="/api/v1/nowhere", method="GET").status_code == 404
    assert post(b"", path="/api/v1/batches", method="DELETE").status_code == 405
    bad_tags = post(json.dumps(["ok", 3]), path=f"/api/v1/batches/{batch.id}/tags", method="PATCH")
    assert bad_tags.status_code == 400 and "tags[1]" in bad_tags.text
    bad_filter = post(b"", path="/api/v1/batches?bogus=1", method="GET")
    assert bad_filter.status_code == 400 and "bogus" in bad_filter.text
    assert record_keys(cluster) == before


def test_authentication_required(cluster):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        response = requests.get(cluster.core_url + "/api/v1/batches", headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.json()["status"] == "fail"
    public = requests.get(cluster.core_url + "/api/v1/devices/public-specs", timeout=10)
    assert public.status_code == 200
