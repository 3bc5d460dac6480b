"""Users, projects, keys and project-scoped reads on the PostgreSQL store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from serverlord.accounts import ApiKey, Project, User
from serverlord.channels import Channel
from serverlord.checks import Check, Flip
from serverlord.pings import Ping
from serverlord.store.base import ConflictError
from serverlord.store.postgres_writes import row_count, shard_or_none
from serverlord.store.projects import (
    FLIPS_LISTED,
    api_key_from_row,
    api_key_params,
    project_from_row,
    project_params,
    user_from_row,
    user_params,
)
from serverlord.store.queries import load_queries
from serverlord.store.rows import (
    channel_from_row,
    checks_from_rows,
    flip_from_row,
    ping_from_row,
)

if TYPE_CHECKING:
    from serverlord.store.postgres_writes import Connection

Q = load_queries("postgres", "projects.sql")
T = TypeVar("T")


class PostgresProjects:
    """The ``ProjectStore`` half of ``PostgresStore``."""

    async def _write(self, op: Callable[[Connection], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        raise NotImplementedError

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        raise NotImplementedError

    async def add_user(self, user: User, project: Project, keys: list[ApiKey]) -> None:
        async def add(conn: Connection) -> None:
            try:
                async with conn.transaction():
                    await conn.execute(Q["insert_user"], *user_params(user))
                    await conn.execute(Q["insert_project"], *project_params(project))
                    for key in keys:
                        await conn.execute(Q["insert_api_key"], *api_key_params(key))
            except asyncpg.UniqueViolationError as exc:
                raise ConflictError(str(exc)) from exc

        await self._write(add)

    async def get_user(self, email: str) -> User | None:
        row = await self._fetchrow(Q["get_user"], email.strip().lower())
        return None if row is None else user_from_row(row)

    async def add_project(self, project: Project) -> None:
        await self._insert(Q["insert_project"], *project_params(project))

    async def get_project(self, project_id: str) -> Project | None:
        row = await self._fetchrow(Q["get_project"], project_id)
        return None if row is None else project_from_row(row)

    async def projects_named(self, name: str) -> list[Project]:
        rows = await self._fetch(Q["projects_named"], name)
        return [project_from_row(row) for row in rows]

    async def project_by_ping_key(self, ping_key: str) -> Project | None:
        row = await self._fetchrow(Q["project_by_ping_key"], ping_key)
        return None if row is None else project_from_row(row)

    async def list_projects(self) -> list[tuple[Project, str | None]]:
        rows = await self._fetch(Q["list_projects"])
        return [(project_from_row(row), row["owner_email"]) for row in rows]

    async def add_api_key(self, key: ApiKey) -> None:
        await self._insert(Q["insert_api_key"], *api_key_params(key))

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        row = await self._fetchrow(Q["get_api_key"], key_id)
        return None if row is None else api_key_from_row(row)

    async def revoke_api_key(self, key_id: str, now: float) -> bool:
        async def revoke(conn: Connection) -> bool:
            return row_count(await conn.execute(Q["revoke_api_key"], now, key_id)) == 1

        return await self._write(revoke)

    async def list_api_keys(self, project_id: str) -> list[ApiKey]:
        rows = await self._fetch(Q["list_api_keys"], project_id)
        return [api_key_from_row(row) for row in rows]

    async def project_checks(self, project_id: str) -> list[Check]:
        rows = await self._fetch(Q["project_checks"], project_id)
        return checks_from_rows(rows)

    async def checks_by_slug(self, project_id: str, slug: str) -> list[Check]:
        rows = await self._fetch(Q["checks_by_slug"], project_id, slug)
        return checks_from_rows(rows)

    async def project_channels(self, project_id: str) -> list[Channel]:
        rows = await self._fetch(Q["project_channels"], project_id)
        return [channel_from_row(row) for row in rows]

    async def project_links(self, project_id: str) -> dict[str, list[str]]:
        links: dict[str, list[str]] = {}
        for row in await self._fetch(Q["project_links"], project_id):
            links.setdefault(row[0], []).append(row[1])
        return links

    async def ping_log(self, check_id: str, limit: int) -> list[tuple[Ping, int]]:
        shard = shard_or_none(check_id)
        if shard is None:
            return []
        rows = await self._fetch(Q["ping_log"], shard, check_id, limit)
        return [(ping_from_row(row), row["size"]) for row in rows]

    async def ping_body(self, check_id: str, n: int) -> bytes | None:
        shard = shard_or_none(check_id)
        if shard is None:
            return None
        row = await self._fetchrow(Q["ping_body"], shard, check_id, n)
        return None if row is None else bytes(row[0])

    async def flips_between(
        self, check_id: str, start: float, end: float, limit: int = FLIPS_LISTED
    ) -> list[Flip]:
        shard = shard_or_none(check_id)
        if shard is None:
            return []
        rows = await self._fetch(Q["flips_between"], shard, check_id, start, end, limit)
        return [flip_from_row(row) for row in rows]

    async def _insert(self, sql: str, *params: Any) -> None:
        async def insert(conn: Connection) -> None:
            try:
                async with conn.transaction():
                    await conn.execute(sql, *params)
            except asyncpg.UniqueViolationError as exc:
                raise ConflictError(str(exc)) from exc

        await self._write(insert)
