"""Queue priorities of projects (and of the batches they submit): plain names."""

from __future__ import annotations

from enum import StrEnum


class Priority(StrEnum):
    """A project's queue priority; a batch keeps the one its project had at submission."""

    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


#: Highest first: the order the scheduler serves levels in.
PRIORITIES = (Priority.HIGH, Priority.MEDIUM, Priority.LOW)
DEFAULT_PRIORITY = Priority.MEDIUM
