"""The rest of the SDK's surface (contract §3-§6): filters of every kind, pagination past 100,
status routes, results links, tags, specs, projects, job-level sequences, configurations."""

from __future__ import annotations

import os
import warnings
from datetime import UTC, datetime, timedelta

import pytest
import requests
from pulser.backend import BitStrings, Occupation
from pulser.backend.config import EmulationConfig
from pulser.backend.results import Results
from pulser.json.abstract_repr.deserializer import deserialize_device

from tests import sequences
from tests.helpers import auth, create_body, hold_qpu, post_gzip, wait_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pasqal_cloud import (
        BatchFilters,
        JobFilters,
        JobStatus,
        PaginationParams,
    )
    from pasqal_cloud.device import DeviceTypeName, EmuFreeConfig

EMU_FREE = DeviceTypeName.EMU_FREE


@pytest.fixture(scope="module")
def seq() -> str:
    return sequences.parametrized()


def job(runs: int = 10, omega: float = 6) -> dict:
    return {"runs": runs, "variables": {"omega_max": omega}}


def test_more_than_a_page_of_jobs_and_batches(sdk, seq):
    with hold_qpu(sdk, seq) as holder:
        big = sdk.create_batch(seq, [job(runs=r) for r in range(1, 251)], device_type=EMU_FREE)
        small = [sdk.create_batch(seq, [job()], device_type=EMU_FREE) for _ in range(205)]

        # The SDK's ordered-jobs loop (no limit, then offset=end) over three pages.
        ordered = sdk.get_batch(big.id).ordered_jobs
        assert [j.id for j in ordered] == [j.id for j in big.ordered_jobs]
        assert [j.runs for j in ordered] == list(range(1, 251))

        pages = [
            sdk.get_jobs(
                filters=JobFilters(batch_id=big.id), pagination_params=PaginationParams(offset=o)
            )
            for o in (0, 100, 200)
        ]
        assert [len(p.results) for p in pages] == [100, 100, 50]
        assert {p.total for p in pages} == {250}
        newest_first = [j.id for p in pages for j in p.results]
        assert newest_first == [j.id for j in reversed(big.ordered_jobs)]

        batch_pages = [
            sdk.get_batches(pagination_params=PaginationParams(offset=o)) for o in (0, 100, 200)
        ]
        assert [len(p.results) for p in batch_pages] == [100, 100, 7]
        listed = [b.id for p in batch_pages for b in p.results]
        assert len(set(listed)) == 207
        assert listed[0] == small[-1].id and listed[-1] == holder.id

        unknown = "00000000-0000-4000-8000-000000000000"
        response = sdk.cancel_batches(batch_ids=[b.id for b in small] + [big.id, unknown])
        assert len(response.batches) == 206
        assert all(b.status == "CANCELED" for b in response.batches)
        assert {str(k) for k in response.errors} == {unknown}

        again = sdk.cancel_batches(batch_ids=[big.id])
        assert again.batches == []
        assert "CANCELED" in {str(k): v for k, v in again.errors.items()}[big.id]
    assert sdk.get_batch(big.id).jobs_count_per_status["CANCELED"] == 250


def test_raw_pagination_envelope_and_filters(cluster, account, sdk, seq):
    batch = sdk.create_batch(seq, [job(3), job(7), job(12)], device_type=EMU_FREE, wait=True)
    headers = auth(account)
    url = cluster.core_url + "/api/v2/jobs"
    # Un-hyphenated uppercase UUID, capitalised booleans, naive datetime: as the SDK may send.
    raw_id = batch.id.replace("-", "").upper()
    start = (datetime.now(UTC) - timedelta(minutes=5)).replace(tzinfo=None).isoformat()
    params = {
        "batch_id": raw_id,
        "errors": "False",
        "start_date": start,
        "min_runs": 5,
        "offset": 1,
        "limit": 1,
    }
    body = requests.get(url, params=params, headers=headers, timeout=10).json()
    assert body["pagination"] == {"total": 2, "offset": 1, "start": 1, "end": 2}
    assert [j["runs"] for j in body["data"]] == [7]  # newest first: 12, then 7

    past_end = requests.get(
        url, params={"batch_id": batch.id, "offset": 10}, headers=headers, timeout=10
    ).json()
    assert past_end["data"] == [] and past_end["pagination"]["end"] >= 3  # the SDK's loop ends

    runs = sdk.get_jobs(filters=JobFilters(batch_id=batch.id, min_runs=4, max_runs=12)).results
    assert sorted(j.runs for j in runs) == [7, 12]
    assert sdk.get_jobs(filters=JobFilters(batch_id=batch.id, errors=True)).results == []
    assert len(sdk.get_jobs(filters=JobFilters(batch_id=batch.id, errors=False)).results) == 3
    assert sdk.get_batches(filters=BatchFilters(open=True)).results == []
    assert [b.id for b in sdk.get_batches(filters=BatchFilters(open=False)).results] == [batch.id]
    assert [b.id for b in sdk.get_batches(filters=BatchFilters(device_type=EMU_FREE)).results] == [
        batch.id
    ]
    bad = requests.get(url, params={"status": "PAUSED"}, headers=headers, timeout=10)
    assert bad.status_code == 400 and "status" in bad.json()["data"]["description"]


def test_status_routes_results_links_and_tags(cluster, account, sdk, seq):
    with hold_qpu(sdk, seq):
        batch = sdk.create_batch(seq, [job(5)], device_type=EMU_FREE, tags=["calibration"])
        pending = batch.ordered_jobs[0]
        assert sdk.get_batch_status(batch.id).value == "PENDING"
        assert sdk.get_job_status(pending.id).value == "PENDING"
        assert pending.result is None  # results_link is null until DONE
    finished = sdk.get_job(pending.id, wait=True)
    assert finished.status == "DONE"
    assert sdk.get_batch_status(batch.id).value == "DONE"

    headers = auth(account)
    link_url = f"{cluster.core_url}/api/v1/jobs/{pending.id}/results_link"
    link = requests.get(link_url, headers=headers, timeout=10).json()["data"]["results_link"]
    document = requests.get(link, timeout=10).json()  # no token: the signature is the key
    assert sum(document["counter"].values()) == 5 and len(document["raw"]) == 5
    assert requests.get(link.replace("signature=", "signature=0"), timeout=10).status_code == 403
    expired = link.split("expires=")[0] + "expires=1&" + link.split("&", 1)[1]
    assert requests.get(expired, timeout=10).status_code == 403

    assert [b.id for b in sdk.get_batches(filters=BatchFilters(tag="calibration")).results] == [
        batch.id
    ]
    sdk.set_batch_tags(batch.id, ["a", "b"])
    assert sdk.get_batch(batch.id).tags == ["a", "b"]
    assert sdk.get_batches(filters=BatchFilters(tag="calibration")).results == []
    assert [b.id for b in sdk.get_batches(filters=BatchFilters(tag="b")).results] == [batch.id]
    sdk.set_batch_tags(batch.id, [])
    assert sdk.get_batch(batch.id).tags == []


def test_failed_job_reports_errors_and_batch_still_done(sdk, seq):
    # QutipBackendV2 cannot use a custom interaction matrix: the job fails in the worker.
    config = EmulationConfig(
        observables=[BitStrings(num_shots=5)], interaction_matrix=[[0, 1], [1, 0]]
    ).to_abstract_repr()
    broken = sdk.create_batch(
        seq, [job(5)], device_type=EMU_FREE, backend_configuration=config, wait=True
    )
    failed = broken.ordered_jobs[0]
    assert broken.status == "DONE"  # as on Pasqal Cloud: DONE, with the failure on the job
    assert failed.status == "ERROR"
    assert "interaction" in failed.errors[0]
    assert failed.result is None
    assert [j.id for j in sdk.get_jobs(filters=JobFilters(errors=True)).results] == [failed.id]
    assert [j.id for j in sdk.get_jobs(filters=JobFilters(status=JobStatus.ERROR)).results] == [
        failed.id
    ]


def test_backend_configuration_gives_pulser_results_and_its_shot_count(sdk, seq):
    """On an emulator the BitStrings observable's num_shots decides every job's shots, `runs`
    or not (Pulser's EmuFreeBackendV2 sends `runs: 1` beside it); without num_shots, `runs`
    does, and a job with neither gets the default."""
    config = EmulationConfig(
        observables=[BitStrings(num_shots=40), Occupation(evaluation_times=[1.0])]
    ).to_abstract_repr()
    batch = sdk.create_batch(
        seq,
        [job(1), {"variables": {"omega_max": 6}}],
        device_type=EMU_FREE,
        backend_configuration=config,
        wait=True,
    )
    assert [j.runs for j in batch.ordered_jobs] == [40, 40]  # the resolved count, reported
    for one in batch.ordered_jobs:
        results = Results.from_abstract_repr(one.full_result["serialised_results"])
        assert sum(results.final_bitstrings.values()) == 40
        assert "occupation" in results.get_result_tags()
        assert sum(one.result.values()) == 40
    assert sdk.get_batch(batch.id).backend_configuration == config

    no_shots = EmulationConfig(observables=[Occupation(evaluation_times=[1.0])])
    batch = sdk.create_batch(
        seq,
        [job(25), {"variables": {"omega_max": 6}}],
        device_type=EMU_FREE,
        backend_configuration=no_shots.to_abstract_repr(),
        wait=True,
    )
    assert [j.runs for j in batch.ordered_jobs] == [25, 100]


def test_job_sequences_configuration_and_mappable_registers(sdk):
    own = sdk.create_batch(
        None,
        [
            {"runs": 10, "serialized_sequence": sequences.fixed()},
            {"runs": 20, "serialized_sequence": sequences.fixed(atoms=2)},
        ],
        device_type=EMU_FREE,
        configuration=EmuFreeConfig(with_noise=True),
        wait=True,
    )
    one_atom, two_atoms = own.ordered_jobs
    assert {len(bits) for bits in one_atom.result} == {1}
    assert {len(bits) for bits in two_atoms.result} == {2}
    assert sdk.get_job(one_atom.id).sequence == sequences.fixed()
    fetched = sdk.get_batch(own.id)
    assert fetched.configuration.with_noise is True and fetched.sequence_builder is None

    mapped = sdk.create_batch(
        sequences.mappable(),
        [{"runs": 8, "variables": {"qubits": {"q0": 0, "q1": 3}}}],
        device_type=EMU_FREE,
        wait=True,
    )
    assert sum(mapped.ordered_jobs[0].result.values()) == 8


def test_uncompressed_bodies(sdk, seq, monkeypatch):
    monkeypatch.setenv("PASQAL_SKIP_GZIP_REQUEST_BODY", "1")
    batch = sdk.create_batch(seq, [job(4)], device_type=EMU_FREE, open=True)
    batch.add_jobs([job(6)], wait=True)
    batch.close(wait=True)
    assert [j.status for j in batch.ordered_jobs] == ["DONE", "DONE"]


def test_device_specs_and_projects(cluster, account, sdk, seq):
    specs = sdk.get_device_specs_dict()
    assert set(specs) == {"EMU_FREE", "FRESNEL"}
    assert all(deserialize_device(spec).max_atom_num for spec in specs.values())
    # What EMU_FREE admits, priced by predicted time within it (tests/test_bad_input.py):
    # 16 atoms for 500 ns are predicted at ~5 s, and accepted (cancelled before they run).
    assert deserialize_device(specs["EMU_FREE"]).max_atom_num == 16
    with hold_qpu(sdk, seq):
        big = sdk.create_batch(
            sequences.fixed(duration=500, atoms=16), [job(3)], device_type=EMU_FREE
        )
        assert big.status == "PENDING"
        big.cancel()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from pasqal_cloud import SDK
        from pasqal_cloud.endpoints import Endpoints

        anonymous = SDK(
            project_id=account.project_id,
            endpoints=Endpoints(core=cluster.core_url, account=cluster.account_url),
        )
    assert anonymous.get_device_specs_dict() == specs  # public-specs, no token

    projects = sdk.get_all_projects()
    assert [p.id for p in projects] == [account.project_id]
    sdk.switch_to_project(account.project_id)


def test_pulser_remote_emu_free_backend(cluster, account):
    from pasqal_cloud import RemoteEmuFreeBackend
    from pulser import Sequence
    from pulser.backend.remote import RemoteResults

    connection = cluster.pulser_connection(account)
    sequence = Sequence.from_abstract_repr(sequences.parametrized())
    backend = RemoteEmuFreeBackend(sequence, connection=connection)
    results = backend.run(
        [{"runs": 37, "variables": {"omega_max": 6}}, {"runs": 11, "variables": {"omega_max": 3}}],
        wait=True,
    )
    assert [sum(r.final_bitstrings.values()) for r in results] == [37, 11]
    again = RemoteResults(results.batch_id, connection)
    assert [sum(r.final_bitstrings.values()) for r in again.results] == [37, 11]


def test_gzip_body_with_raw_http(cluster, account, seq):
    response = post_gzip(
        cluster, account, "/api/v1/batches", create_body(account, seq, jobs=[job(3)])
    )
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["complete"] is True and len(data["jobs"]) == 1 and data["jobs"][0]["runs"] == 3
    store = cluster.store
    wait_for(lambda: store.get_batch(data["id"]).status == "DONE")
    assert os.environ.get("PASQAL_SKIP_GZIP_REQUEST_BODY") is None
