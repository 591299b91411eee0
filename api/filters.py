"""Query strings of the list, rebatch and cancel-jobs routes, parsed by pydantic models (as bodies
are, api/schemas.py) into core/store.py queries.

The SDK repeats keys for lists (`status=DONE&status=PENDING`), spells booleans `True`/`False`,
sends naive or offset `isoformat()` datetimes and possibly un-hyphenated or uppercase UUIDs.
A value that cannot be read is a 400 naming the parameter; an unknown parameter too.
"""

from __future__ import annotations

import typing
import uuid
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from werkzeug.datastructures import MultiDict

from api.schemas import describe
from core.errors import InvalidRequest
from core.priorities import Priority
from core.status import BatchStatus, JobStatus
from core.store import BatchQuery, JobQuery, Page
from core.timefmt import parse_iso

Q = TypeVar("Q", bound="_Query")

#: Most values one list filter may carry.
MAX_VALUES = 100
#: Largest page; the SDK asks for at most 100.
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


def _canonical_uuid(value: object) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError("not a UUID") from None


def _timestamp(value: object) -> int:
    try:
        return parse_iso(str(value))
    except ValueError:
        raise ValueError("expected an ISO-8601 datetime") from None


T = TypeVar("T")
Values = Annotated[list[T], Field(max_length=MAX_VALUES)]
Uuid = Annotated[str, BeforeValidator(_canonical_uuid)]
Timestamp = Annotated[int, BeforeValidator(_timestamp)]
Natural = Annotated[int, Field(ge=0, lt=10**18)]


class _Query(BaseModel):
    """Query strings are text: values are converted (lax mode); unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class _Window(_Query):
    #: Creation time bounds (inclusive).
    start_date: Timestamp | None = None
    end_date: Timestamp | None = None


class _Paged(_Query):
    offset: Natural = 0
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT

    def page(self, desc: bool) -> Page:
        return Page(offset=self.offset, limit=self.limit, desc=desc)


class CancelJobsFilters(_Window):
    """PATCH /batches/{id}/cancel/jobs."""

    id: Values[Uuid] = []
    min_runs: Natural | None = None
    max_runs: Natural | None = None


class RebatchFilters(CancelJobsFilters):
    """POST /batches/{id}/rebatch."""

    status: Values[JobStatus] = []


class JobFilters(RebatchFilters):
    project_id: Values[Uuid] = []
    user_id: Values[str] = []
    batch_id: Values[Uuid] = []
    errors: bool | None = None


class JobList(JobFilters, _Paged):
    """GET /jobs."""

    order_by: Literal["creation_order"] | None = None
    order_by_direction: Literal["ASC", "DESC"] | None = None


class BatchList(_Window, _Paged):
    """GET /batches."""

    id: Values[Uuid] = []
    project_id: Values[Uuid] = []
    user_id: Values[str] = []
    device_type: Values[str] = []
    status: Values[BatchStatus] = []
    queue_priority: Values[Priority] = []
    open: bool | None = None
    tag: str | None = None


class DeviceList(_Query):
    """GET /devices: repeatable; none means every device type."""

    device_type: Values[str] = []


class QueueList(DeviceList, _Paged):
    """GET /admin/api/v1/queue."""


def queue_query(args: MultiDict[str, str]) -> tuple[list[str], Page]:
    q = parse_query(QueueList, args)
    return q.device_type, q.page(desc=False)


def batch_query(args: MultiDict[str, str]) -> tuple[BatchQuery, Page]:
    q = parse_query(BatchList, args)
    query = BatchQuery(
        id=q.id,
        project_id=q.project_id,
        user_id=q.user_id,
        device_type=q.device_type,
        status=list(q.status),
        queue_priority=list(q.queue_priority),
        open=q.open,
        tag=q.tag,
        start_us=q.start_date,
        end_us=q.end_date,
    )
    return query, q.page(desc=True)


def job_query(args: MultiDict[str, str]) -> tuple[JobQuery, Page]:
    q = parse_query(JobList, args)
    # Newest first by default; `order_by=creation_order&order_by_direction=ASC` is the SDK's
    # "all jobs of a batch in creation order" loop.
    desc = q.order_by_direction != "ASC" if q.order_by or q.order_by_direction else True
    return _job_query(q), q.page(desc=desc)


def rebatch_query(args: MultiDict[str, str]) -> JobQuery:
    return _job_query(parse_query(RebatchFilters, args))


def cancel_jobs_query(args: MultiDict[str, str]) -> JobQuery:
    return _job_query(parse_query(CancelJobsFilters, args))


def device_types(args: MultiDict[str, str]) -> list[str]:
    return parse_query(DeviceList, args).device_type


def parse_query(model: type[Q], args: MultiDict[str, str]) -> Q:
    """`args` checked by `model`: a key repeated is a list, which only list fields take."""
    data: dict[str, Any] = {}
    for name in args:
        values = args.getlist(name)
        field = model.model_fields.get(name)
        if field is not None and _is_list(field.annotation):
            data[name] = values
        elif len(values) > 1:
            raise InvalidRequest(f"{name} takes one value, got {len(values)}")
        else:
            data[name] = values[0]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message = f"Invalid query: {describe(exc)}"
        if any(error["type"] == "extra_forbidden" for error in exc.errors()):
            message += f" (allowed: {', '.join(sorted(model.model_fields))})"
        raise InvalidRequest(message) from None


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


def _job_query(q: CancelJobsFilters) -> JobQuery:
    """The store's job query from any of the job filter models (absent filters: none)."""
    return JobQuery(
        id=q.id,
        project_id=getattr(q, "project_id", []),
        user_id=getattr(q, "user_id", []),
        batch_id=getattr(q, "batch_id", []),
        status=list(getattr(q, "status", [])),
        min_runs=q.min_runs,
        max_runs=q.max_runs,
        errors=getattr(q, "errors", None),
        start_us=q.start_date,
        end_us=q.end_date,
    )
