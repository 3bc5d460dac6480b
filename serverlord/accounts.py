"""Users, projects and their keys.

A user owns projects; a project holds checks, channels and keys. An API key is
shown once, when it is made: the store keeps its first characters (its public
id, shown in listings and used to find it) and a SHA-256 digest of the whole
key, which is compared in constant time. A project's ping key names it in slug
ping URLs, and its badge key signs its badge URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import uuid
from dataclasses import dataclass

DEFAULT_PROJECT = "00000000-0000-0000-0000-000000000000"
"""The project of the checks and channels made before projects existed, and of
those the CLI makes without ``--project``. No user owns it."""

KEY_LENGTH = 32
"""Characters of an API key, as Healthchecks' keys have."""
KEY_ID_LENGTH = 8
"""Leading characters of an API key that name it (not secret)."""
EMAIL_LIMIT = 254
PROJECT_NAME_LIMIT = 100
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+")
BADGE_SIGNATURE_LENGTH = 12


@dataclass(slots=True, frozen=True)
class User:
    id: str
    email: str
    created: float


@dataclass(slots=True, frozen=True)
class Project:
    id: str
    name: str
    owner: str | None
    """The owning user's id; None for the default project."""
    ping_key: str
    badge_key: str
    created: float


@dataclass(slots=True, frozen=True)
class ApiKey:
    id: str
    """The key's first characters: how people and the store name it."""
    project: str
    digest: str
    """SHA-256 of the whole key, in hex."""
    read_only: bool
    name: str
    created: float
    revoked: float | None = None


class AccountError(ValueError):
    """A user, project or key value that cannot be used; the message says why."""


def new_user(email: str, now: float) -> User:
    email = email.strip()
    if len(email) > EMAIL_LIMIT or not EMAIL_RE.fullmatch(email):
        raise AccountError(f"email: {email!r} is not an e-mail address")
    return User(id=str(uuid.uuid4()), email=email.lower(), created=now)


def new_project(name: str, owner: str | None, now: float) -> Project:
    name = name.strip()
    if not name or len(name) > PROJECT_NAME_LIMIT or not name.isprintable():
        raise AccountError(
            f"name: must be 1 to {PROJECT_NAME_LIMIT} printable characters"
        )
    return Project(
        id=str(uuid.uuid4()),
        name=name,
        owner=owner,
        ping_key=new_ping_key(),
        badge_key=secrets.token_urlsafe(16),
        created=now,
    )


KEY_ALPHABET = string.ascii_letters + string.digits


def new_ping_key() -> str:
    # 22 URL-safe characters: never a uuid, so /ping/<key>/<slug> and
    # /ping/<uuid>/<suffix> cannot be confused.
    return secrets.token_urlsafe(16)


def new_api_key(
    project: str, read_only: bool, now: float, name: str = ""
) -> tuple[str, ApiKey]:
    """A fresh key (to show once) and what the store keeps of it."""
    # Letters and digits only, as Healthchecks' keys: a key that began with
    # "-" would read as an option on a command line (~190 bits either way).
    key = "".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_LENGTH))
    stored = ApiKey(
        id=key[:KEY_ID_LENGTH],
        project=project,
        digest=digest(key),
        read_only=read_only,
        name=name,
        created=now,
    )
    return key, stored


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_matches(key: str, stored: ApiKey) -> bool:
    """Whether ``key`` is the stored key, compared in constant time."""
    return stored.revoked is None and hmac.compare_digest(digest(key), stored.digest)


def badge_signature(project: Project, tag: str) -> str:
    """What makes a badge URL of this tag unguessable without the badge key."""
    mac = hmac.new(project.badge_key.encode(), tag.encode(), hashlib.sha256)
    return mac.hexdigest()[:BADGE_SIGNATURE_LENGTH]


def unique_key(check_id: str) -> str:
    """A check's stable id for read-only keys, derived as Healthchecks does."""
    half = uuid.UUID(check_id).hex[:16]
    return hashlib.sha1(half.encode()).hexdigest()
