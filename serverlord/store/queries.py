"""Named SQL statements, read from the package's ``.sql`` files."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)

Migration = tuple[int, str, str]
"""A numbered migration: (number, name, sql)."""


def load_queries(backend: str, file: str = "queries.sql") -> dict[str, str]:
    """Every ``-- name: x`` block of ``sql/<backend>/<file>``, by name."""
    text = _read(backend, file)
    parts = _NAME.split(text)
    return {
        name: sql.strip() for name, sql in zip(parts[1::2], parts[2::2], strict=True)
    }


def load_migrations(backend: str) -> list[Migration]:
    """The numbered migrations of a backend as (number, name, sql), in order."""
    folder = resources.files("serverlord.store.sql").joinpath(backend)
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text("utf-8")))
    return sorted(found)


def _read(backend: str, name: str) -> str:
    folder = resources.files("serverlord.store.sql").joinpath(backend)
    return folder.joinpath(name).read_text("utf-8")
