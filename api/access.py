"""Finding records on behalf of the caller: a batch or job outside the caller's projects answers
404 exactly like one that does not exist, so ids leak nothing."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Protocol, TypeVar

import redis

from api.context import principal, services
from core.errors import Forbidden, NotFound
from core.records import Batch, Job

log = logging.getLogger(__name__)
T = TypeVar("T")


def canonical_id(raw: str) -> str | None:
    """Ids may arrive un-hyphenated or uppercase; None if it is not a UUID at all."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return None


class _Owned(Protocol):
    project_id: str


R = TypeVar("R", bound=_Owned)
B = TypeVar("B", Batch, Job)


def _visible(kind: str, raw_id: str, read: Callable[[str], R | None]) -> R:
    """The one visibility rule: a record exists for the caller only inside their projects."""
    record_id = canonical_id(raw_id)
    record = read(record_id) if record_id else None
    if record is None or record.project_id not in principal().project_ids:
        raise NotFound(f"{kind} {raw_id} not found")
    return record


def visible_batch(raw_id: str) -> Batch:
    return _visible("Batch", raw_id, services().store.get_batch)


def visible_job(raw_id: str) -> Job:
    return _visible("Job", raw_id, services().store.get_job)


def changeable_batch(raw_id: str, verb: str) -> Batch:
    """A batch the caller may `verb`: visible to them, and theirs or in a project they are an
    ADMIN of. Others' batches are seen, so refusing them with 403 reveals nothing."""
    return _changeable(visible_batch(raw_id), "batch", verb)


def changeable_job(raw_id: str, verb: str) -> Job:
    return _changeable(visible_job(raw_id), "job", verb)


def _changeable(record: B, kind: str, verb: str) -> B:
    if not principal().may_act_on(record):
        raise Forbidden(
            f"Only the owner of {kind} {record.id} or an ADMIN of its project may {verb} it"
        )
    return record


def scoped_projects(requested: list[str]) -> list[str]:
    """Restricts a list's project filter to the caller's projects (all of them if none is
    asked for). "-" matches no project: a caller in no project, or asking only for others'
    projects, sees an empty list rather than an error that would confirm they exist."""
    mine = principal().project_ids
    if not requested:
        return sorted(mine) or ["-"]
    return [p for p in requested if p in mine] or ["-"]


def after_commit(read: Callable[[], T], fallback: T) -> T:
    """Runs a read that follows a commit; if Redis fails now, answers with `fallback` instead of
    an error, because the SDK would retry the POST and duplicate what was committed."""
    try:
        return read()
    except redis.exceptions.RedisError as exc:
        log.warning("read after commit failed, answering without it: %s", exc)
        return fallback
