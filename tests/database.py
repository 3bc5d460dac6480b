"""Plain SQL on a test's database, whichever the backend, beside the store.

Tests look at rows the store wrote (the outbox, stored pings) with one query
text for both backends: ``?`` marks the parameters, numbered for PostgreSQL.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from serverlord.config import Settings
from serverlord.store import SQLITE_FILE

_PARAMETER = re.compile(r"\?")


def url_of(settings: Settings) -> str:
    """The database URL the settings stand for, the default SQLite file included."""
    if settings.database_url:
        return settings.database_url
    return f"sqlite:///{settings.resolved_data_dir() / SQLITE_FILE}"


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


async def fetch(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of one query on the database at ``url``, as tuples."""
    if is_postgres(url):
        numbered = iter(range(1, len(params) + 1))
        text = _PARAMETER.sub(lambda _: f"${next(numbered)}", sql)
        conn = await asyncpg.connect(url)
        try:
            return [tuple(row) for row in await conn.fetch(text, *params)]
        finally:
            await conn.close()
    return await asyncio.to_thread(_sqlite_fetch, url, sql, params)


def fetch_now(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """``fetch`` for tests that run no event loop of their own."""
    return asyncio.run(fetch(url, sql, *params))


def _sqlite_fetch(url: str, sql: str, params: tuple[Any, ...]) -> list[Any]:
    conn = sqlite3.connect(Path(url.removeprefix("sqlite:///")), timeout=5)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@dataclass
class Database:
    """Where the servers and the CLI of an end-to-end test keep their checks."""

    data_dir: Path
    database_url: str
    """``--database-url``: empty for SQLite's default file in ``data_dir``."""

    @property
    def url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / SQLITE_FILE}"

    def env(self) -> dict[str, str]:
        """The SERVERLORD_* variables that point a process at this database."""
        env = {"SERVERLORD_DATA_DIR": str(self.data_dir)}
        if self.database_url:
            env["SERVERLORD_DATABASE_URL"] = self.database_url
        return env

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return fetch_now(self.url, sql, *params)
