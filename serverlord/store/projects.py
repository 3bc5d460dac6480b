"""What the stores offer about users, projects, keys and a project's checks.

Both backends implement ``ProjectStore`` in a mixin of their store class
(``sqlite_projects``, ``postgres_projects``); the rows convert here.
"""

from __future__ import annotations

from typing import Protocol

from serverlord.accounts import ApiKey, Project, User
from serverlord.channels import Channel
from serverlord.checks import Check, Flip
from serverlord.pings import Ping
from serverlord.store.rows import Row

FLIPS_LISTED = 1000
"""Most flips one read returns."""


class ProjectStore(Protocol):
    async def add_user(self, user: User, project: Project, keys: list[ApiKey]) -> None:
        """Add a user with a first project and its keys, all or nothing
        (ConflictError when the e-mail is taken)."""
        ...

    async def get_user(self, email: str) -> User | None: ...

    async def add_project(self, project: Project) -> None: ...

    async def get_project(self, project_id: str) -> Project | None: ...

    async def projects_named(self, name: str) -> list[Project]: ...

    async def project_by_ping_key(self, ping_key: str) -> Project | None: ...

    async def list_projects(self) -> list[tuple[Project, str | None]]:
        """Every project with its owner's e-mail."""
        ...

    async def add_api_key(self, key: ApiKey) -> None: ...

    async def get_api_key(self, key_id: str) -> ApiKey | None: ...

    async def revoke_api_key(self, key_id: str, now: float) -> bool:
        """Revoke a key; False when no such key is in use."""
        ...

    async def list_api_keys(self, project_id: str) -> list[ApiKey]: ...

    async def project_checks(self, project_id: str) -> list[Check]: ...

    async def checks_by_slug(self, project_id: str, slug: str) -> list[Check]: ...

    async def project_channels(self, project_id: str) -> list[Channel]: ...

    async def project_links(self, project_id: str) -> dict[str, list[str]]:
        """The channel ids each check of the project alerts, by check id."""
        ...

    async def ping_log(self, check_id: str, limit: int) -> list[tuple[Ping, int]]:
        """The latest pings without their bodies, with each body's size."""
        ...

    async def ping_body(self, check_id: str, n: int) -> bytes | None: ...

    async def flips_between(
        self, check_id: str, start: float, end: float, limit: int = FLIPS_LISTED
    ) -> list[Flip]:
        """The check's flips from ``start`` up to ``end``, newest first."""
        ...


def user_from_row(row: Row) -> User:
    return User(id=row["id"], email=row["email"], created=row["created"])


def user_params(user: User) -> tuple[str, str, float]:
    return (user.id, user.email, user.created)


def project_from_row(row: Row) -> Project:
    return Project(
        id=row["id"],
        name=row["name"],
        owner=row["owner"],
        ping_key=row["ping_key"],
        badge_key=row["badge_key"],
        created=row["created"],
    )


def project_params(project: Project) -> tuple[str, str, str | None, str, str, float]:
    return (
        project.id,
        project.name,
        project.owner,
        project.ping_key,
        project.badge_key,
        project.created,
    )


def api_key_from_row(row: Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        project=row["project"],
        digest=row["digest"],
        read_only=bool(row["read_only"]),
        name=row["name"],
        created=row["created"],
        revoked=row["revoked"],
    )


def api_key_params(key: ApiKey) -> tuple[str, str, str, bool, str, float]:
    return (key.id, key.project, key.digest, key.read_only, key.name, key.created)
