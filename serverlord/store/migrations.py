"""``serverlord db migrate``: bring a database's schema up to date on its own.

One connection, the backend's own ``migrate`` (one transaction, one migrating
process at a time), and a report of what it did. No store is opened: nothing
else of a server starts.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from serverlord.config import Settings, hide_password
from serverlord.store import is_postgres, sqlite_path
from serverlord.store.base import DatabaseUrlError, StoreError, StoreUnavailableError
from serverlord.store.queries import load_migrations


@dataclass(slots=True, frozen=True)
class Migrated:
    """What ``db migrate`` did to one database."""

    database: str
    """The database, its password hidden."""
    applied: list[tuple[int, str]] = field(default_factory=list)
    """Number and name of each migration applied now, in order."""
    version: int = 0
    """The latest migration the database has now."""


async def migrate_database(settings: Settings) -> Migrated:
    """Apply every pending migration to the database the settings name."""
    if is_postgres(settings):
        return await _migrate_postgres(settings.database_url)
    return await asyncio.to_thread(_migrate_sqlite, sqlite_path(settings))


def _migrate_sqlite(path: Path) -> Migrated:
    from serverlord.store.sqlite import connect, migrate

    database = f"sqlite:///{path}"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        conn = connect(path)
    except (OSError, sqlite3.Error) as exc:
        raise StoreUnavailableError(f"cannot open {database}: {exc}") from exc
    try:
        numbers = migrate(conn)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise StoreError(f"cannot migrate {database}: {exc}") from exc
    finally:
        conn.close()
    return _report(database, "sqlite", numbers, version)


async def _migrate_postgres(url: str) -> Migrated:
    # asyncpg takes ~0.2 s to import: only for those who use it.
    import asyncpg

    from serverlord.store.postgres import CONNECT_TIMEOUT, migrate

    database = hide_password(url)
    try:
        conn = await asyncpg.connect(
            url,
            timeout=CONNECT_TIMEOUT,
            server_settings={"application_name": "serverlord-migrate"},
        )
    except (ValueError, OverflowError) as exc:
        # asyncpg read the URL, or a PG* variable, and found it wrong.
        raise DatabaseUrlError(f"{database}: {_one_line(exc)}") from exc
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreUnavailableError(
            f"cannot connect to {database}: {_one_line(exc)}"
        ) from exc
    try:
        numbers = await migrate(conn)
        version = await conn.fetchval("SELECT max(number) FROM schema_migrations")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(f"cannot migrate {database}: {_one_line(exc)}") from exc
    finally:
        await conn.close()
    return _report(database, "postgres", numbers, version or 0)


def _report(database: str, backend: str, numbers: list[int], version: int) -> Migrated:
    names = {number: name for number, name, _ in load_migrations(backend)}
    return Migrated(
        database,
        [(number, names[number]) for number in numbers],
        version,
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
