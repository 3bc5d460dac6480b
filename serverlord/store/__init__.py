"""Stores: where checks, pings and flips live. SQLite is the embedded default."""

from __future__ import annotations

from pathlib import Path

from serverlord.config import Settings
from serverlord.store.base import (
    CheckNotFoundError,
    ConflictError,
    Store,
    StoreError,
    StoreUnavailableError,
)
from serverlord.store.sqlite import SqliteStore

__all__ = [
    "CheckNotFoundError",
    "ConflictError",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "open_store",
]

SQLITE_FILE = "serverlord.sqlite3"


def open_store(settings: Settings) -> Store:
    """The store the settings name; call ``await store.open()`` before use."""
    url = settings.database_url
    if url.startswith(("postgresql://", "postgres://")):
        # asyncpg takes ~0.2 s to import: only for those who use it.
        from serverlord.store.postgres import PostgresStore

        return PostgresStore(url)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///")).expanduser()
    else:
        path = settings.resolved_data_dir() / SQLITE_FILE
    return SqliteStore(path, synchronous=settings.sqlite_synchronous.upper())
