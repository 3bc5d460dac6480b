"""Users, projects, keys and project-scoped reads on the SQLite store."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from serverlord.accounts import ApiKey, Project, User
from serverlord.channels import Channel
from serverlord.checks import Check, Flip
from serverlord.pings import Ping
from serverlord.store.base import ConflictError
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

Q = load_queries("sqlite", "projects.sql")
T = TypeVar("T")


class SqliteProjects:
    """The ``ProjectStore`` half of ``SqliteStore``."""

    async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _query(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        raise NotImplementedError

    async def _query_one(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Row | None:
        raise NotImplementedError

    async def add_user(self, user: User, project: Project, keys: list[ApiKey]) -> None:
        def add(conn: sqlite3.Connection) -> None:
            conn.execute("SAVEPOINT add_user")
            try:
                conn.execute(Q["insert_user"], user_params(user))
                conn.execute(Q["insert_project"], project_params(project))
                for key in keys:
                    conn.execute(Q["insert_api_key"], api_key_params(key))
            except sqlite3.IntegrityError as exc:
                conn.execute("ROLLBACK TO add_user")
                conn.execute("RELEASE add_user")
                raise ConflictError(str(exc)) from exc
            conn.execute("RELEASE add_user")

        await self._write(add)

    async def get_user(self, email: str) -> User | None:
        row = await self._query_one(Q["get_user"], (email.strip().lower(),))
        return None if row is None else user_from_row(row)

    async def add_project(self, project: Project) -> None:
        await self._insert(Q["insert_project"], project_params(project))

    async def get_project(self, project_id: str) -> Project | None:
        row = await self._query_one(Q["get_project"], (project_id,))
        return None if row is None else project_from_row(row)

    async def projects_named(self, name: str) -> list[Project]:
        rows = await self._query(Q["projects_named"], (name,))
        return [project_from_row(row) for row in rows]

    async def project_by_ping_key(self, ping_key: str) -> Project | None:
        row = await self._query_one(Q["project_by_ping_key"], (ping_key,))
        return None if row is None else project_from_row(row)

    async def list_projects(self) -> list[tuple[Project, str | None]]:
        rows = await self._query(Q["list_projects"], ())
        return [(project_from_row(row), row["owner_email"]) for row in rows]

    async def add_api_key(self, key: ApiKey) -> None:
        await self._insert(Q["insert_api_key"], api_key_params(key))

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        row = await self._query_one(Q["get_api_key"], (key_id,))
        return None if row is None else api_key_from_row(row)

    async def revoke_api_key(self, key_id: str, now: float) -> bool:
        def revoke(conn: sqlite3.Connection) -> bool:
            return conn.execute(Q["revoke_api_key"], (now, key_id)).rowcount == 1

        return await self._write(revoke)

    async def list_api_keys(self, project_id: str) -> list[ApiKey]:
        rows = await self._query(Q["list_api_keys"], (project_id,))
        return [api_key_from_row(row) for row in rows]

    async def project_checks(self, project_id: str) -> list[Check]:
        rows = await self._query(Q["project_checks"], (project_id,))
        return checks_from_rows(rows)

    async def checks_by_slug(self, project_id: str, slug: str) -> list[Check]:
        rows = await self._query(Q["checks_by_slug"], (project_id, slug))
        return checks_from_rows(rows)

    async def project_channels(self, project_id: str) -> list[Channel]:
        rows = await self._query(Q["project_channels"], (project_id,))
        return [channel_from_row(row) for row in rows]

    async def project_links(self, project_id: str) -> dict[str, list[str]]:
        links: dict[str, list[str]] = {}
        for row in await self._query(Q["project_links"], (project_id,)):
            links.setdefault(row[0], []).append(row[1])
        return links

    async def ping_log(self, check_id: str, limit: int) -> list[tuple[Ping, int]]:
        rows = await self._query(Q["ping_log"], (check_id, limit))
        return [(ping_from_row(row), row["size"]) for row in rows]

    async def ping_body(self, check_id: str, n: int) -> bytes | None:
        row = await self._query_one(Q["ping_body"], (check_id, n))
        return None if row is None else bytes(row[0])

    async def flips_between(
        self, check_id: str, start: float, end: float, limit: int = FLIPS_LISTED
    ) -> list[Flip]:
        rows = await self._query(Q["flips_between"], (check_id, start, end, limit))
        return [flip_from_row(row) for row in rows]

    async def _insert(self, sql: str, params: tuple[Any, ...]) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(sql, params)
            except sqlite3.IntegrityError as exc:
                raise ConflictError(str(exc)) from exc

        await self._write(insert)
