"""Users, projects and API tokens.

Tokens are random 256-bit strings handed to the user once; Redis keeps only their SHA-256, so a
dump of the database yields no usable token (a slow KDF is for low-entropy passwords, not these).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

import redis

from core.keys import Keys
from core.records import Principal

DEFAULT_QUEUE_PRIORITY = "MEDIUM"
QUEUE_PRIORITIES = ("HIGH", "MEDIUM", "LOW")


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    status: str
    queue_priority: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis = client
        self.keys = Keys(namespace)

    def create_user(self, username: str) -> str:
        """Creates (or finds) the user `username`; the user id is the username."""
        self.redis.hset(self.keys.user(username), mapping={"id": username, "disabled": "0"})
        return username

    def create_project(
        self, name: str, queue_priority: str = DEFAULT_QUEUE_PRIORITY, project_id: str = ""
    ) -> Project:
        project = Project(project_id or str(uuid.uuid4()), name, "ACTIVE", queue_priority)
        pipe = self.redis.pipeline()
        pipe.hset(
            self.keys.project(project.id),
            mapping={
                "id": project.id,
                "name": project.name,
                "status": project.status,
                "queue_priority": project.queue_priority,
            },
        )
        pipe.sadd(self.keys.projects(), project.id)
        pipe.execute()
        return project

    def add_member(self, project_id: str, user_id: str) -> None:
        self.redis.sadd(self.keys.user_projects(user_id), project_id)

    def issue_token(self, user_id: str) -> str:
        """A new API token for `user_id`; only its hash is stored."""
        token = secrets.token_urlsafe(32)
        self.redis.hset(
            self.keys.token(hash_token(token)),
            mapping={"user_id": user_id, "token_id": str(uuid.uuid4())},
        )
        return token

    def authenticate(self, token: str) -> Principal | None:
        """The caller behind `token`, or None when it is unknown or its user is disabled."""
        user_id = self.redis.hget(self.keys.token(hash_token(token)), "user_id")
        if user_id is None or self.redis.hget(self.keys.user(user_id), "disabled") != "0":
            return None
        projects = frozenset(self.redis.smembers(self.keys.user_projects(user_id)))
        return Principal(user_id=user_id, project_ids=projects)

    def get_project(self, project_id: str) -> Project | None:
        h = self.redis.hgetall(self.keys.project(project_id))
        if not h:
            return None
        return Project(h["id"], h["name"], h["status"], h["queue_priority"])

    def projects_of(self, principal: Principal) -> list[Project]:
        """The caller's projects, sorted by name."""
        found = [self.get_project(pid) for pid in principal.project_ids]
        return sorted((p for p in found if p), key=lambda p: (p.name, p.id))
