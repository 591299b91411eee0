"""Roles in a project, and a project's status: plain names."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """A member's role in a project."""

    #: May act on every batch of the project.
    ADMIN = "ADMIN"
    #: May see the project's batches, and act on their own.
    MEMBER = "MEMBER"


class ProjectStatus(StrEnum):
    """As the account API lists projects (`project_status`); projects are created ACTIVE."""

    ACTIVE = "ACTIVE"
    ARCHIVED = "ARCHIVED"
