"""The shapes of request bodies, checked strictly: no extra keys, no bools or floats for ints.

Pydantic's errors are turned into one 400 message naming each bad field (`jobs[2].runs: ...`).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from core.errors import InvalidRequest
from core.priorities import DEFAULT_PRIORITY
from core.roles import Role

M = TypeVar("M", bound=BaseModel)

Tag = Annotated[StrictStr, Field(min_length=1, max_length=128)]
Tags = Annotated[list[Tag], Field(max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class JobIn(_Strict):
    """One job as the SDK sends it (`serialized_sequence` travels as `sequence`)."""

    #: Shots. May be absent for emulators: the backend configuration or a default decides.
    runs: Annotated[StrictInt, Field(gt=0)] | None = None
    variables: dict[str, Any] | None = None
    #: The job's own sequence; null means "use the batch's sequence_builder".
    sequence: StrictStr | None = None


class CreateBatchIn(_Strict):
    sequence_builder: StrictStr | None = None
    webhook: StrictStr | None = None
    jobs: list[JobIn]
    open: StrictBool = False
    device_type: StrictStr | None = None
    configuration: dict[str, Any] | None = None
    backend_configuration: StrictStr | None = None
    tags: Tags | None = None
    #: Parsed from its JSON string (strict mode would want a UUID object).
    project_id: Annotated[uuid.UUID, Field(strict=False)]


#: Batches one cancel request may name.
MAX_CANCEL_BATCHES = 1000


class CancelBatchesIn(_Strict):
    batch_ids: Annotated[list[StrictStr], Field(max_length=MAX_CANCEL_BATCHES)]


class TagsIn(_Strict):
    """PATCH .../tags sends a bare JSON array; it is wrapped as {"tags": [...]} to check it."""

    tags: Tags


class NewUserIn(_Strict):
    username: StrictStr
    #: Without one, the user can only use API tokens.
    password: Annotated[StrictStr, Field(min_length=8, max_length=1024)] | None = None
    admin: StrictBool = False


class NewTokenIn(_Strict):
    expires_in: Annotated[StrictInt, Field(gt=0)] | None = None


class NewProjectIn(_Strict):
    name: StrictStr
    queue_priority: StrictStr = DEFAULT_PRIORITY


class ProjectChangeIn(_Strict):
    """Quota values are checked by core/quotas.parse_changes (null lifts a limit)."""

    queue_priority: StrictStr | None = None
    quotas: dict[str, Any] | None = None
    #: Fair-share share of QPU time (checked by core/accounts.py).
    share: StrictFloat | StrictInt | None = None


class MemberIn(_Strict):
    role: StrictStr = Role.MEMBER


class EmuFreeConfigurationIn(BaseModel):
    """The SDK's `EmuFreeConfig` dict (BaseConfig fields plus `with_noise`); `extra_config`
    keys arrive flattened beside them and are kept as they are."""

    model_config = ConfigDict(extra="allow", strict=True)

    strict_validation: StrictBool = False
    result_types: list[StrictStr] | None = None
    with_noise: StrictBool = False


def parse_model(model: type[M], data: Any, field: str = "") -> M:
    """`model.model_validate(data)`, failures raised as one InvalidRequest naming every field by
    its full path (`field` is where `data` sits in the body, e.g. `configuration`)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(f"Invalid request body: {describe(exc, field)}") from None


def describe(exc: ValidationError, field: str = "") -> str:
    parts = []
    for error in exc.errors():
        location = field + "".join(
            f"[{item}]" if isinstance(item, int) else f".{item}" for item in error["loc"]
        )
        parts.append(f"{location.lstrip('.') or 'body'}: {error['msg']}")
    return "; ".join(parts)
