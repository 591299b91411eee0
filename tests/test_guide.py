"""Every example of the Pasqal "Batches & Jobs" guide, through the unmodified pasqal-cloud SDK.

Only the endpoints, the project id and the token provider differ from the guide (see
conftest.make_sdk). `sdk.get_batches(limit=20, ...)` was never valid SDK code (a TypeError in
every release); its intent is `pagination_params=PaginationParams(limit=20)`.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import pytest

from tests import sequences
from tests.helpers import hold_qpu

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pasqal_cloud import (
        BatchFilters,
        BatchStatus,
        CancelJobFilters,
        JobFilters,
        JobStatus,
        PaginationParams,
        QueuePriority,
        RebatchFilters,
    )
    from pasqal_cloud.device import EmulatorType
    from pasqal_cloud.errors import RebatchError

JOB1 = {"runs": 20, "variables": {"omega_max": 6}}
JOB2 = {"runs": 50, "variables": {"omega_max": 10.5}}
JOB3 = {"runs": 50, "variables": {"omega_max": 10.5}}


@pytest.fixture(scope="module")
def serialized_sequence() -> str:
    return sequences.parametrized()


def test_closed_batch_waits_for_results(sdk, serialized_sequence):
    batch = sdk.create_batch(
        serialized_sequence, [JOB1, JOB2], emulator=EmulatorType.EMU_FREE, wait=True
    )

    assert batch.status == "DONE"
    jobs = batch.ordered_jobs
    assert [job.runs for job in jobs] == [20, 50]
    for job, expected in zip(jobs, (JOB1, JOB2), strict=True):
        assert job.status == "DONE"
        assert job.variables == expected["variables"]
        assert sum(job.result.values()) == expected["runs"]
        assert all(len(bits) == 2 and set(bits) <= {"0", "1"} for bits in job.result)
        assert len(job.full_result["raw"]) == expected["runs"]


def test_open_batch_add_jobs_then_close(sdk, serialized_sequence):
    batch = sdk.create_batch(serialized_sequence, [JOB1], open=True, emulator=EmulatorType.EMU_FREE)
    assert batch.open is True

    batch.add_jobs([JOB2, JOB3], wait=True)
    assert [job.runs for job in batch.ordered_jobs] == [20, 50, 50]
    assert all(job.status == "DONE" for job in batch.ordered_jobs)
    assert batch.status == "RUNNING"  # open: it keeps the QPU until closed

    batch.close(wait=True)
    assert batch.status == "DONE"
    assert batch.open is False
    assert sdk.get_batch(batch.id).status == "DONE"


def test_ordered_jobs_print_id_status_result(sdk, serialized_sequence):
    batch = sdk.create_batch(
        serialized_sequence, [JOB1, JOB2], emulator=EmulatorType.EMU_FREE, wait=True
    )
    lines = [
        f"job-id: {job.id}, status: {job.status}, result: {job.result}"
        for job in batch.ordered_jobs
    ]
    assert len(lines) == 2
    assert all("status: DONE" in line and "result: {" in line for line in lines)


def test_get_batches_examples(sdk, cluster, account, serialized_sequence):
    done = sdk.create_batch(serialized_sequence, [JOB1], emulator=EmulatorType.EMU_FREE, wait=True)
    other = sdk.create_batch(serialized_sequence, [JOB2], emulator=EmulatorType.EMU_FREE, wait=True)

    assert {b.id for b in sdk.get_batches().results} == {done.id, other.id}
    assert len(sdk.get_batches(pagination_params=PaginationParams(limit=40)).results) == 2
    assert sdk.get_batches(filters=BatchFilters(device_type=EmulatorType.EMU_TN)).results == []
    by_project = sdk.get_batches(
        filters=BatchFilters(status=BatchStatus.DONE, project_id=account.project_id)
    ).results
    assert {b.id for b in by_project} == {done.id, other.id}
    two = sdk.get_batches(filters=BatchFilters(id=[done.id, other.id])).results
    assert [b.id for b in two] == [other.id, done.id]  # newest first
    # The test project's priority is MEDIUM: HIGH finds none of its batches, MEDIUM all.
    assert sdk.get_batches(filters=BatchFilters(queue_priority=QueuePriority.HIGH)).results == []
    assert (
        len(sdk.get_batches(filters=BatchFilters(queue_priority=QueuePriority.MEDIUM)).results) == 2
    )
    now = datetime.now(UTC)
    in_period = sdk.get_batches(
        pagination_params=PaginationParams(limit=20),
        filters=BatchFilters(
            status=BatchStatus.DONE,
            start_date=now - timedelta(minutes=5),
            end_date=now + timedelta(minutes=5),
            user_id=[account.user_id, "someone-else"],
        ),
    ).results
    assert {b.id for b in in_period} == {done.id, other.id}
    assert sdk.get_batches(filters=BatchFilters(end_date=now - timedelta(minutes=5))).results == []
    assert sdk.get_batches(pagination_params=PaginationParams(offset=0)).total == 2


def test_get_jobs_examples(sdk, account, serialized_sequence):
    batch = sdk.create_batch(
        serialized_sequence, [JOB1, JOB2], emulator=EmulatorType.EMU_FREE, wait=True
    )
    with hold_qpu(sdk, serialized_sequence) as holder:
        queued = sdk.create_batch(serialized_sequence, [JOB3], emulator=EmulatorType.EMU_FREE)
        canceled = queued.ordered_jobs[0]
        sdk.cancel_job(canceled.id)
    ids = [job.id for job in batch.ordered_jobs]
    assert sdk.get_batch(queued.id).status == "DONE"  # closed, and its only job is terminal

    assert len(sdk.get_jobs().results) == 3
    assert holder.ordered_jobs == []
    assert len(sdk.get_jobs(pagination_params=PaginationParams(limit=40)).results) == 3
    assert {j.id for j in sdk.get_jobs(filters=JobFilters(batch_id=batch.id)).results} == set(ids)
    assert (
        sdk.get_jobs(
            filters=JobFilters(status=JobStatus.ERROR, project_id=account.project_id)
        ).results
        == []
    )
    assert {j.id for j in sdk.get_jobs(filters=JobFilters(id=ids)).results} == set(ids)
    now = datetime.now(UTC)
    cancelled = sdk.get_jobs(
        pagination_params=PaginationParams(limit=20),
        filters=JobFilters(
            status=JobStatus.CANCELED,
            start_date=now - timedelta(minutes=5),
            end_date=now + timedelta(minutes=5),
            user_id=[account.user_id],
        ),
    ).results
    assert [j.id for j in cancelled] == [canceled.id]
    assert sdk.get_jobs(pagination_params=PaginationParams(offset=0)).total == 3


def test_rebatch_examples(sdk, serialized_sequence):
    batch = sdk.create_batch(
        serialized_sequence,
        [
            {"runs": 5, "variables": {"omega_max": 1.0}},
            {"runs": 8, "variables": {"omega_max": 1.1}},
            {"runs": 12, "variables": {"omega_max": 1.2}},
        ],
        emulator=EmulatorType.EMU_FREE,
        wait=True,
    )
    first = batch.ordered_jobs[0]

    with hold_qpu(sdk, serialized_sequence):  # the copies wait, so they can be inspected
        everything = sdk.rebatch(batch.id)
        assert everything.parent_id == batch.id
        assert [j.runs for j in everything.ordered_jobs] == [5, 8, 12]
        assert [j.parent_id for j in everything.ordered_jobs] == [j.id for j in batch.ordered_jobs]

        only_first = sdk.rebatch(batch.id, RebatchFilters(id=first.id))
        assert [j.variables for j in only_first.ordered_jobs] == [first.variables]

        # No job ended ERROR or CANCELED: nothing to rebatch is refused, not an empty batch.
        with pytest.raises(RebatchError, match="matches the rebatch filters"):
            sdk.rebatch(batch.id, RebatchFilters(status=JobStatus.ERROR))
        now = datetime.now(UTC)
        with pytest.raises(RebatchError, match="matches the rebatch filters"):
            sdk.rebatch(
                batch.id,
                RebatchFilters(
                    status=JobStatus.CANCELED, start_date=now - timedelta(hours=1), end_date=now
                ),
            )

        between = sdk.rebatch(batch.id, RebatchFilters(min_runs=5, max_runs=10))
        assert sorted(j.runs for j in between.ordered_jobs) == [5, 8]
        assert sdk.get_batch(between.id).parent_id == batch.id
        for rebatched in (between, everything, only_first):
            rebatched.cancel()
            assert rebatched.status == "CANCELED"


def test_retry_in_open_batch(sdk, serialized_sequence):
    batch = sdk.create_batch(
        serialized_sequence, [JOB1], open=True, emulator=EmulatorType.EMU_FREE, wait=True
    )
    batch.retry(batch.ordered_jobs[0])
    batch.retry(batch.ordered_jobs[0], wait=True)

    jobs = batch.ordered_jobs
    assert len(jobs) == 3
    assert all(job.variables == JOB1["variables"] and job.runs == 20 for job in jobs)
    assert all(job.status == "DONE" for job in jobs)
    batch.close(wait=True)
    assert batch.status == "DONE"


def test_cancel_batches(sdk, serialized_sequence):
    first = sdk.create_batch(serialized_sequence, [JOB1], open=True, emulator=EmulatorType.EMU_FREE)
    second = sdk.create_batch(
        serialized_sequence, [JOB2], open=True, emulator=EmulatorType.EMU_FREE
    )

    response = sdk.cancel_batches(batch_ids=[first.id, second.id])

    assert {b.id for b in response.batches} == {first.id, second.id}
    assert all(b.status == "CANCELED" for b in response.batches)
    assert response.errors == {}


def test_cancel_jobs_with_filters(sdk, serialized_sequence):
    with hold_qpu(sdk, serialized_sequence):
        batch = sdk.create_batch(
            serialized_sequence, [JOB1, JOB2, JOB3], emulator=EmulatorType.EMU_FREE
        )
        ids = [job.id for job in batch.ordered_jobs]

        two = sdk.cancel_jobs(batch_id=batch.id, filters=CancelJobFilters(id=ids[:2]))
        assert sorted(j.id for j in two.jobs) == sorted(ids[:2])
        assert all(j.status == "CANCELED" for j in two.jobs)
        assert two.errors == {}

        now = datetime.now(UTC)
        rest = sdk.cancel_jobs(
            batch_id=batch.id,
            filters=CancelJobFilters(
                start_date=now - timedelta(minutes=5), end_date=now + timedelta(minutes=5)
            ),
        )
    # The period matches all three: the third is cancelled, the first two are reported.
    assert [j.id for j in rest.jobs] == [ids[2]]
    assert {str(k) for k in rest.errors} == set(ids[:2])
    assert all("cannot be cancelled" in reason for reason in rest.errors.values())
    assert sdk.get_batch(batch.id).status == "DONE"  # closed batch, every job terminal
