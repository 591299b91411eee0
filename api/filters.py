"""Query strings of the list, rebatch and cancel-jobs routes, parsed into core/store.py queries.

The SDK repeats keys for lists (`status=DONE&status=PENDING`), spells booleans `True`/`False`,
sends naive or offset `isoformat()` datetimes and possibly un-hyphenated or uppercase UUIDs.
A value that cannot be read is a 400 naming the parameter; an unknown parameter too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import TypeVar

from werkzeug.datastructures import MultiDict

from core.accounts import QUEUE_PRIORITIES
from core.errors import InvalidRequest
from core.status import BatchStatus, JobStatus
from core.store import BatchQuery, JobQuery, Page
from core.timefmt import parse_iso

T = TypeVar("T")

#: Most values one list filter may carry.
MAX_VALUES = 100
#: Largest page; the SDK asks for at most 100.
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100

_PAGE = {"offset", "limit"}
_BATCH_PARAMS = {
    "id",
    "project_id",
    "user_id",
    "device_type",
    "status",
    "queue_priority",
    "open",
    "tag",
    "start_date",
    "end_date",
} | _PAGE
_JOB_PARAMS = {
    "id",
    "project_id",
    "user_id",
    "batch_id",
    "status",
    "min_runs",
    "max_runs",
    "errors",
    "start_date",
    "end_date",
    "order_by",
    "order_by_direction",
} | _PAGE
_REBATCH_PARAMS = {"id", "status", "min_runs", "max_runs", "start_date", "end_date"}
_CANCEL_JOBS_PARAMS = {"id", "min_runs", "max_runs", "start_date", "end_date"}


def batch_query(args: MultiDict[str, str]) -> tuple[BatchQuery, Page]:
    _only(args, _BATCH_PARAMS)
    query = BatchQuery(
        id=_values(args, "id", _uuid),
        project_id=_values(args, "project_id", _uuid),
        user_id=_values(args, "user_id", str),
        device_type=_values(args, "device_type", str),
        status=_values(args, "status", _member(BatchStatus)),
        queue_priority=_values(args, "queue_priority", _choice(QUEUE_PRIORITIES)),
        open=_one(args, "open", _bool),
        tag=_one(args, "tag", str),
        start_us=_one(args, "start_date", _date),
        end_us=_one(args, "end_date", _date),
    )
    return query, _page(args, desc=True)


def job_query(args: MultiDict[str, str]) -> tuple[JobQuery, Page]:
    _only(args, _JOB_PARAMS)
    order_by = _one(args, "order_by", _choice(("creation_order",)))
    direction = _one(args, "order_by_direction", _choice(("ASC", "DESC")))
    # Newest first by default; `order_by=creation_order&order_by_direction=ASC` is the SDK's
    # "all jobs of a batch in creation order" loop.
    desc = direction != "ASC" if order_by or direction else True
    return _job_filters(args), _page(args, desc=desc)


def rebatch_query(args: MultiDict[str, str]) -> JobQuery:
    _only(args, _REBATCH_PARAMS)
    return _job_filters(args)


def cancel_jobs_query(args: MultiDict[str, str]) -> JobQuery:
    _only(args, _CANCEL_JOBS_PARAMS)
    return _job_filters(args)


def device_types(args: MultiDict[str, str]) -> list[str]:
    """The `device_type` filter of GET /devices (repeatable; none: every device type)."""
    _only(args, {"device_type"})
    return _values(args, "device_type", str)


def _job_filters(args: MultiDict[str, str]) -> JobQuery:
    query = JobQuery(
        id=_values(args, "id", _uuid),
        project_id=_values(args, "project_id", _uuid),
        user_id=_values(args, "user_id", str),
        batch_id=_values(args, "batch_id", _uuid),
        status=_values(args, "status", _member(JobStatus)),
        min_runs=_one(args, "min_runs", _natural),
        max_runs=_one(args, "max_runs", _natural),
        errors=_one(args, "errors", _bool),
        start_us=_one(args, "start_date", _date),
        end_us=_one(args, "end_date", _date),
    )
    return query


def _page(args: MultiDict[str, str], desc: bool) -> Page:
    offset = _one(args, "offset", _natural)
    limit = _one(args, "limit", _natural)
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return Page(offset=offset or 0, limit=limit or DEFAULT_LIMIT, desc=desc)


def _only(args: MultiDict[str, str], allowed: set[str]) -> None:
    unknown = sorted(set(args.keys()) - allowed)
    if unknown:
        raise InvalidRequest(
            f"Unknown query parameter(s): {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _values(args: MultiDict[str, str], name: str, parse: Callable[[str], T]) -> list[T]:
    raw = args.getlist(name)
    if len(raw) > MAX_VALUES:
        raise InvalidRequest(f"{name}: at most {MAX_VALUES} values, got {len(raw)}")
    return [_parse(name, value, parse) for value in raw]


def _one(args: MultiDict[str, str], name: str, parse: Callable[[str], T]) -> T | None:
    raw = args.getlist(name)
    if not raw:
        return None
    if len(raw) > 1:
        raise InvalidRequest(f"{name} takes one value, got {len(raw)}")
    return _parse(name, raw[0], parse)


def _parse(name: str, value: str, parse: Callable[[str], T]) -> T:
    try:
        return parse(value)
    except ValueError as exc:
        raise InvalidRequest(f"Invalid {name} {value!r}: {exc}") from None


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("not a UUID") from None


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise ValueError("expected True or False")
    return lowered == "true"


def _natural(value: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise ValueError("expected a non-negative integer")
    return int(value)


def _date(value: str) -> int:
    try:
        return parse_iso(value)
    except ValueError:
        raise ValueError("expected an ISO-8601 datetime") from None


def _member(enum: Iterable[object]) -> Callable[[str], str]:
    return _choice(tuple(str(member) for member in enum))


def _choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return parse
