"""Users, projects, roles and credentials.

Passwords are stored as argon2id hashes (argon2-cffi). API tokens are random 256-bit strings
handed out once; Redis keeps only their SHA-256 (a slow KDF is for low-entropy secrets, not
these). Access tokens from the password grant are JWTs signed with `Settings.auth_secret`:
HS256 only, `exp`, `sub` and our audience required.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
import uuid
from dataclasses import dataclass, field

import jwt
import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.audit import CLI_ACTOR, Audit, AuditLog
from core.errors import Conflict, InvalidRequest, NotFound
from core.keys import Keys
from core.priorities import DEFAULT_PRIORITY, PRIORITIES
from core.quotas import Quotas, parse_changes
from core.records import Principal
from core.roles import ProjectStatus, Role
from core.timefmt import SECOND_US, now_us

#: The one algorithm our access tokens use; the token's own `alg` header is never trusted.
JWT_ALGORITHM = "HS256"
#: (uid_t)-1 means "no uid" to the kernel: Unix uids are below it.
MAX_UNIX_UID = 2**32 - 1
_hasher = PasswordHasher()


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    status: str
    queue_priority: str
    quotas: Quotas = field(default_factory=Quotas)
    #: Its share of QPU time under the fair-share policy, relative to other projects' (1).
    share: float = 1.0


@dataclass(frozen=True)
class User:
    id: str
    admin: bool
    disabled: bool
    #: The Unix account it is on the lab's Slurm cluster (MUNGE), if mapped.
    unix_uid: int | None = None
    #: The project its Slurm jobs' sessions run in when it has several (qrmi pasqal-local).
    slurm_project: str | None = None


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    token: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    """Users, projects, memberships and credentials. Every change names its `actor` (a user id,
    or core/audit.py's CLI_ACTOR) and is written with its audit entry in one transaction."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis = client
        self.keys = Keys(namespace)
        self.audit_log = AuditLog(client, namespace)

    def _commit(self, audit: Audit, project_id: str = "") -> redis.client.Pipeline:
        """A transaction holding the audit entry; the caller adds its writes and executes it."""
        pipe = self.redis.pipeline(transaction=True)
        self.audit_log.record(pipe, audit, now_us(), project_id)
        return pipe

    # -- users ------------------------------------------------------------------------------

    def create_user(
        self,
        username: str,
        password: str | None = None,
        admin: bool = False,
        actor: str = CLI_ACTOR,
        unix_uid: int | None = None,
    ) -> str:
        """Creates the user `username` (its id); refuses a name that is taken. `unix_uid`: the
        Unix account it is on the lab's Slurm cluster (MUNGE credentials of that uid
        authenticate as it: core/munge.py), one user per uid."""
        if not username or len(username) > 64 or not username.isprintable() or ":" in username:
            raise InvalidRequest("a username is 1 to 64 printable characters, without ':'")
        fields = {"id": username, "admin": "1" if admin else "0", "disabled": "0"}
        if password is not None:
            fields["password_hash"] = _hasher.hash(password)
        key = self.keys.user(username)
        watched = [key]
        if unix_uid is not None:
            _check_unix_uid(unix_uid)
            fields["unix_uid"] = str(unix_uid)
            watched.append(self.keys.unix_uid(unix_uid))
        detail = {"user": username, "admin": admin, "unix_uid": unix_uid}
        audit = Audit(actor, "user.add", detail)
        # One transaction, and only if the name (and the uid) are still free when it commits
        # (WATCH): no stub user is left behind by a failure, and two concurrent creations
        # cannot both succeed.
        with self.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(*watched)
                if pipe.exists(key):
                    raise Conflict(f"user {username!r} already exists")
                if unix_uid is not None and (holder := pipe.get(watched[1])):
                    raise Conflict(f"Unix uid {unix_uid} is already user {holder!r}")
                pipe.multi()
                self.audit_log.record(pipe, audit, now_us())
                pipe.hset(key, mapping=fields)
                pipe.sadd(self.keys.users(), username)
                if unix_uid is not None:
                    pipe.set(watched[1], username)
                pipe.execute()
            except redis.exceptions.WatchError as exc:
                # redis-py also raises WatchError when the connection died while watching:
                # that is Redis failing (503 on the API), not a name taken meanwhile.
                lost = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
                if isinstance(exc.__context__, lost):
                    raise exc.__context__ from None
                raise Conflict(f"user {username!r} already exists") from None
        return username

    def user_of_unix_uid(self, uid: int) -> User | None:
        """The user a Unix uid was mapped to (`create_user(unix_uid=)`), if any."""
        user_id = self.redis.get(self.keys.unix_uid(uid))
        return None if user_id is None else self.get_user(user_id)

    def get_user(self, user_id: str) -> User | None:
        h = self.redis.hgetall(self.keys.user(user_id))
        if not h:
            return None
        uid = h.get("unix_uid")
        return User(
            h["id"],
            h.get("admin") == "1",
            h.get("disabled") == "1",
            None if uid is None else int(uid),
            h.get("slurm_project"),
        )

    def map_unix_account(
        self,
        user_id: str,
        unix_uid: int | None = None,
        slurm_project: str | None = None,
        actor: str = CLI_ACTOR,
    ) -> None:
        """Sets the Unix uid an existing user is on the lab's Slurm cluster (one user per uid)
        and the project its Slurm jobs' sessions run in (needed when it has several)."""
        self._require_user(user_id)
        if unix_uid is not None:
            _check_unix_uid(unix_uid)
        if slurm_project is not None and not self.redis.exists(self.keys.project(slurm_project)):
            raise NotFound(f"project {slurm_project} not found")
        key = self.keys.user(user_id)
        uid_key = None if unix_uid is None else self.keys.unix_uid(unix_uid)
        detail = {"user": user_id, "unix_uid": unix_uid, "slurm_project": slurm_project}
        with self.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key, *([uid_key] if uid_key else []))
                old = pipe.hget(key, "unix_uid")
                holder = pipe.get(uid_key) if uid_key else None
                if holder not in (None, user_id):
                    raise Conflict(f"Unix uid {unix_uid} is already user {holder!r}")
                pipe.multi()
                self.audit_log.record(pipe, Audit(actor, "user.map_unix", detail), now_us())
                if uid_key is not None:
                    if old is not None and old != str(unix_uid):
                        pipe.delete(self.keys.unix_uid(int(old)))
                    pipe.hset(key, "unix_uid", str(unix_uid))
                    pipe.set(uid_key, user_id)
                if slurm_project is not None:
                    pipe.hset(key, "slurm_project", slurm_project)
                pipe.execute()
            except redis.exceptions.WatchError:
                raise Conflict(f"user {user_id!r} changed meanwhile: try again") from None

    def users(self) -> list[User]:
        found = (self.get_user(u) for u in sorted(self.redis.smembers(self.keys.users())))
        return [u for u in found if u]

    def set_password(self, user_id: str, password: str, actor: str = CLI_ACTOR) -> None:
        self._require_user(user_id)
        pipe = self._commit(Audit(actor, "user.set_password", {"user": user_id}))
        pipe.hset(self.keys.user(user_id), "password_hash", _hasher.hash(password))
        pipe.execute()

    def disable_user(self, user_id: str, actor: str = CLI_ACTOR) -> None:
        self._require_user(user_id)
        pipe = self._commit(Audit(actor, "user.disable", {"user": user_id}))
        pipe.hset(self.keys.user(user_id), "disabled", "1")
        pipe.execute()

    def check_password(self, username: str, password: str) -> str | None:
        """The user id if `password` is the enabled user's, else None (same cost either way)."""
        stored = self.redis.hmget(self.keys.user(username), "password_hash", "disabled")
        candidate = stored[0] or _DUMMY_HASH  # no timing hint that the user does not exist
        try:
            _hasher.verify(candidate, password)
        except (VerificationError, InvalidHashError):
            return None
        return username if stored[0] and stored[1] == "0" else None

    # -- projects ---------------------------------------------------------------------------

    def create_project(
        self,
        name: str,
        queue_priority: str = DEFAULT_PRIORITY,
        project_id: str = "",
        actor: str = CLI_ACTOR,
    ) -> Project:
        if not name or len(name) > 128 or not name.isprintable():
            raise InvalidRequest("a project name is 1 to 128 printable characters")
        _check_priority(queue_priority)
        project = Project(
            project_id or str(uuid.uuid4()), name, ProjectStatus.ACTIVE, queue_priority
        )
        pipe = self._commit(Audit(actor, "project.add", {"name": name}), project.id)
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

    def update_project(
        self,
        project_id: str,
        served: list[str],
        queue_priority: str | None = None,
        quotas: dict[str, object] | None = None,
        actor: str = CLI_ACTOR,
        share: float | None = None,
    ) -> Project:
        """Sets a project's queue priority (its batches submitted from now on carry it), its
        fair-share `share`, and quota changes (see core/quotas.parse_changes; None lifts a
        limit). Returns the project as the commit left it, built without reading it back
        (nothing may fail after it)."""
        fields: dict[str, str] = self.redis.hgetall(self.keys.project(project_id))
        if not fields:
            raise NotFound(f"project {project_id} not found")
        to_set, to_delete = parse_changes(quotas or {}, served)
        if queue_priority is not None:
            _check_priority(queue_priority)
            to_set["queue_priority"] = queue_priority
        if share is not None:
            if not (math.isfinite(share) and 0 < share <= 1_000_000):
                raise InvalidRequest(f"share must be > 0 and at most 1000000, got {share}")
            to_set["share"] = repr(float(share))
        detail = {"queue_priority": queue_priority, "quotas": quotas or {}, "share": share}
        pipe = self._commit(Audit(actor, "project.update", detail), project_id)
        if to_set:
            pipe.hset(self.keys.project(project_id), mapping=to_set)
        if share is not None:
            pipe.incr(self.keys.shares_version())  # schedulers read the shares again
        if to_delete:
            pipe.hdel(self.keys.project(project_id), *to_delete)
        pipe.execute()
        fields.update(to_set)
        for name in to_delete:
            fields.pop(name, None)
        return _project(fields)

    def get_project(self, project_id: str) -> Project | None:
        h = self.redis.hgetall(self.keys.project(project_id))
        return _project(h) if h else None

    def projects(self) -> list[Project]:
        found = (self.get_project(p) for p in self.redis.smembers(self.keys.projects()))
        return sorted((p for p in found if p), key=lambda p: (p.name, p.id))

    def add_member(
        self, project_id: str, user_id: str, role: Role = Role.MEMBER, actor: str = CLI_ACTOR
    ) -> None:
        self._require_user(user_id)
        if self.get_project(project_id) is None:
            raise NotFound(f"project {project_id} not found")
        audit = Audit(actor, "member.add", {"user": user_id, "role": role.value})
        pipe = self._commit(audit, project_id)
        pipe.hset(self.keys.user_projects(user_id), project_id, role.value)
        pipe.execute()

    def remove_member(self, project_id: str, user_id: str, actor: str = CLI_ACTOR) -> None:
        if not self.redis.hexists(self.keys.user_projects(user_id), project_id):
            raise NotFound(f"user {user_id!r} is not a member of project {project_id}")
        pipe = self._commit(Audit(actor, "member.remove", {"user": user_id}), project_id)
        pipe.hdel(self.keys.user_projects(user_id), project_id)
        pipe.execute()

    def memberships(self, user_id: str) -> dict[str, str]:
        """project id -> the user's role in it."""
        roles: dict[str, str] = self.redis.hgetall(self.keys.user_projects(user_id))
        return roles

    def projects_of(self, principal: Principal) -> list[Project]:
        """The caller's projects, sorted by name."""
        found = [self.get_project(pid) for pid in principal.project_ids]
        return sorted((p for p in found if p), key=lambda p: (p.name, p.id))

    # -- credentials ------------------------------------------------------------------------

    def issue_token(
        self, user_id: str, expires_in_s: int | None = None, actor: str = CLI_ACTOR
    ) -> IssuedToken:
        """A new API token for `user_id` (a machine user's long-lived credential)."""
        self._require_user(user_id)
        if expires_in_s is not None and expires_in_s <= 0:
            raise InvalidRequest("expires_in must be a positive number of seconds")
        token, token_id = secrets.token_urlsafe(32), str(uuid.uuid4())
        fields = {"user_id": user_id, "token_id": token_id}
        if expires_in_s is not None:
            fields["expires_us"] = str(now_us() + expires_in_s * SECOND_US)
        digest = hash_token(token)
        detail = {"user": user_id, "token_id": token_id, "expires_in_s": expires_in_s}
        pipe = self._commit(Audit(actor, "token.issue", detail))
        pipe.hset(self.keys.token(digest), mapping=fields)
        pipe.set(self.keys.token_id(token_id), digest)
        pipe.execute()
        return IssuedToken(token_id, token)

    def revoke_token(self, token_id: str, actor: str = CLI_ACTOR) -> None:
        digest = self.redis.get(self.keys.token_id(token_id))
        if digest is None:
            raise NotFound(f"token {token_id} not found")
        pipe = self._commit(Audit(actor, "token.revoke", {"token_id": token_id}))
        pipe.delete(self.keys.token(digest), self.keys.token_id(token_id))
        pipe.execute()

    def access_token(self, user_id: str, secret: str, audience: str, ttl_s: int) -> str:
        """A signed access token (JWT) for the password grant."""
        now = int(time.time())
        claims = {
            "sub": user_id,
            "aud": audience,
            "iat": now,
            "exp": now + ttl_s,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)

    def authenticate(self, token: str, secret: str = "", audience: str = "") -> Principal | None:
        """The caller behind an API token or an access token, or None: unknown, expired,
        revoked, forged, for another audience, or a disabled user."""
        # A JWT is three dot-separated parts; our API tokens (base64url) contain no dot.
        if token.count(".") == 2:
            user_id = self._jwt_subject(token, secret, audience)
        else:
            user_id = self._api_token_user(token)
        if user_id is None:
            return None
        return self.principal(user_id, hash_token(token))

    def principal(self, user_id: str, credential_hash: str) -> Principal | None:
        """The user `user_id` as a caller (None: unknown or disabled), authenticated by a
        credential whose hash keys its rate limit."""
        # The user and their projects in one round trip: every request pays for it.
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(self.keys.user(user_id), "admin", "disabled")
        pipe.hgetall(self.keys.user_projects(user_id))
        (admin, disabled), roles = pipe.execute()
        if disabled != "0":
            return None
        return Principal(
            user_id=user_id,
            project_ids=frozenset(roles),
            roles=roles,
            admin=admin == "1",
            token_hash=credential_hash,
        )

    def _api_token_user(self, token: str) -> str | None:
        user_id, expires_us = self.redis.hmget(
            self.keys.token(hash_token(token)), "user_id", "expires_us"
        )
        if user_id is None or (expires_us is not None and int(expires_us) <= now_us()):
            return None
        return str(user_id)

    def _jwt_subject(self, token: str, secret: str, audience: str) -> str | None:
        if not secret:
            return None
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=[JWT_ALGORITHM],
                audience=audience,
                options={"require": ["exp", "sub", "aud"]},
                leeway=5,
            )
        except jwt.PyJWTError:
            return None
        return str(claims["sub"])

    def _require_user(self, user_id: str) -> None:
        if not self.redis.exists(self.keys.user(user_id)):
            raise NotFound(f"user {user_id!r} not found")


def _check_unix_uid(uid: int) -> None:
    if not 0 <= uid < MAX_UNIX_UID:
        raise InvalidRequest(f"a Unix uid is 0 to {MAX_UNIX_UID - 1}, got {uid}")


def _project(h: dict[str, str]) -> Project:
    """A project from its hash."""
    return Project(
        h["id"],
        h["name"],
        h["status"],
        h["queue_priority"],
        Quotas.from_hash(h),
        float(h.get("share", "1")),
    )


def _check_priority(queue_priority: str) -> None:
    if queue_priority not in PRIORITIES:
        raise InvalidRequest(f"queue_priority must be one of {', '.join(PRIORITIES)}")


#: Verified against when a username is unknown, so both answers take as long.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
