"""Stores: where checks, pings and flips live. SQLite is the embedded default."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from serverlord.config import Settings
from serverlord.errors import CommandError, UsageError
from serverlord.store.base import (
    CheckNotFoundError,
    ConflictError,
    DatabaseUrlError,
    SchemaAheadError,
    SchemaBehindError,
    Store,
    StoreError,
    StoreUnavailableError,
)
from serverlord.store.sqlite import SqliteStore

__all__ = [
    "CheckNotFoundError",
    "ConflictError",
    "DatabaseUrlError",
    "SchemaAheadError",
    "SchemaBehindError",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "open_for_command",
    "open_store",
]

SQLITE_FILE = "serverlord.sqlite3"


def is_postgres(settings: Settings) -> bool:
    return settings.database_url.startswith(("postgresql://", "postgres://"))


def sqlite_path(settings: Settings) -> Path:
    """The SQLite file the settings name (when they name no PostgreSQL)."""
    url = settings.database_url
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).expanduser()
    return settings.resolved_data_dir() / SQLITE_FILE


def open_store(settings: Settings) -> Store:
    """The store the settings name; call ``await store.open()`` before use."""
    if is_postgres(settings):
        # asyncpg takes ~0.2 s to import: only for those who use it.
        from serverlord.store.postgres import PostgresStore

        return PostgresStore(settings.database_url, auto_migrate=settings.auto_migrate)
    return SqliteStore(
        sqlite_path(settings),
        synchronous=settings.sqlite_synchronous.upper(),
        auto_migrate=settings.auto_migrate,
    )


async def open_for_command(store: Store) -> None:
    """Open the store for a command, or say in one line why it cannot be:
    a URL that cannot be used is a usage error (exit 2), a database that
    cannot be reached or opened a command error (exit 1)."""
    try:
        await store.open()
    except DatabaseUrlError as exc:
        await store.close()
        raise UsageError(f"the database URL is not valid: {_one_line(exc)}") from exc
    except (OSError, sqlite3.Error, StoreError) as exc:
        await store.close()
        reason = f"cannot open the store {store.description}: {_one_line(exc)}"
        raise CommandError(reason) from exc


def _one_line(exc: BaseException) -> str:
    # The driver's messages may carry a hint on a line of its own.
    return " ".join(str(exc).split())
