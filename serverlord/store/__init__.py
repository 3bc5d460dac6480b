"""Stores: where checks, pings and flips live. SQLite is the embedded default."""

from __future__ import annotations

from pathlib import Path

from serverlord.config import Settings
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
