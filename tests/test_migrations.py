"""Migrations, on SQLite and on a real PostgreSQL: applied in order, all at once or
one run at a time, they give the schema committed in ``tests/schema/``.

When a new migration changes the schema on purpose, write the new description
with ``UPDATE_SCHEMA=1 .venv/bin/pytest tests/test_migrations.py`` and commit it
with the migration: the diff shows what the migration did.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from serverlord.store import postgres, sqlite
from serverlord.store.queries import Migration, load_migrations
from tests.schemas import describe_postgres, describe_sqlite

SCHEMA = Path(__file__).parent / "schema"
UPDATE = os.environ.get("UPDATE_SCHEMA") == "1"

REFERENCE_TABLES = {
    "channels", "meta", "schema_migrations", "users", "projects", "api_keys",
}  # fmt: skip
"""Tables that hold no check's rows: Citus copies them to every node. Any other
table is distributed by ``shard``."""


@dataclass
class Database:
    """A database of one backend, connected anew for each step, as separate
    runs of serverlord would."""

    backend: str
    url: str

    async def migrate(self, migrations: list[Migration] | None = None) -> list[int]:
        if self.backend == "postgres":
            conn = await asyncpg.connect(self.url)
            try:
                return await postgres.migrate(conn, migrations)
            finally:
                await conn.close()
        return await asyncio.to_thread(self._sqlite, sqlite.migrate, migrations)

    async def describe(self) -> str:
        if self.backend == "postgres":
            conn = await asyncpg.connect(self.url)
            try:
                return await describe_postgres(conn)
            finally:
                await conn.close()
        return await asyncio.to_thread(self._sqlite, describe_sqlite)

    def _sqlite(self, work: object, *args: object) -> object:
        conn = sqlite.connect(Path(self.url.removeprefix("sqlite:///")))
        try:
            return work(conn, *args)  # type: ignore[operator]
        finally:
            conn.close()


@pytest.fixture
async def empty(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Database]:
    """A database without any table."""
    if backend == "sqlite":
        yield Database(backend, f"sqlite:///{tmp_path / 'empty.sqlite3'}")
        return
    cluster = request.getfixturevalue("postgres_cluster")
    name = await cluster.create_empty_database()
    yield Database(backend, cluster.url(name))
    await cluster.drop_database(name)


def numbers(backend: str) -> list[int]:
    return [number for number, _, _ in load_migrations(backend)]


def assert_committed(backend: str, described: str) -> None:
    path = SCHEMA / f"{backend}.txt"
    if UPDATE:
        path.write_text(described)
    committed = path.read_text()
    assert described == committed, (
        f"the schema differs from tests/schema/{path.name}; if that is meant, "
        "run UPDATE_SCHEMA=1 .venv/bin/pytest tests/test_migrations.py"
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrations_are_numbered_from_one_without_gaps(backend: str) -> None:
    assert numbers(backend) == list(range(1, len(numbers(backend)) + 1))


def test_both_backends_have_the_same_migrations() -> None:
    def names(backend: str) -> list[tuple[int, str]]:
        return [(number, name) for number, name, _ in load_migrations(backend)]

    assert names("sqlite") == names("postgres")


async def test_all_migrations_on_an_empty_database_give_the_committed_schema(
    empty: Database,
) -> None:
    assert await empty.migrate() == numbers(empty.backend)
    assert await empty.migrate() == []

    assert_committed(empty.backend, await empty.describe())


async def test_migrations_applied_one_run_at_a_time_give_the_committed_schema(
    empty: Database,
) -> None:
    migrations = load_migrations(empty.backend)

    for count, (number, _, _) in enumerate(migrations, start=1):
        assert await empty.migrate(migrations[:count]) == [number]
    assert await empty.migrate() == []

    assert_committed(empty.backend, await empty.describe())


async def test_a_migration_that_fails_leaves_the_database_as_it_was(
    empty: Database,
) -> None:
    [first, *_] = load_migrations(empty.backend)
    broken = (first[0] + 1, "broken", "CREATE TABLE half (x int);\nSELECT * FROM x;")
    before = await empty.describe()

    with pytest.raises((sqlite3.Error, asyncpg.PostgresError)):
        await empty.migrate([first, broken])

    assert await empty.describe() == before
    assert await empty.migrate() == numbers(empty.backend)


async def test_two_processes_migrating_at_once_apply_each_migration_once(
    empty: Database,
) -> None:
    applied = await asyncio.gather(*(empty.migrate() for _ in range(3)))

    assert sorted(n for each in applied for n in each) == numbers(empty.backend)
    assert_committed(empty.backend, await empty.describe())


async def test_every_key_of_a_checks_rows_includes_its_shard(
    postgres_url: str,
) -> None:
    # What Citus needs to distribute the schema by shard: every primary key,
    # unique index and foreign key between distributed tables has the column.
    conn = await asyncpg.connect(postgres_url)
    try:
        tables = {
            row[0]
            for row in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
        keys = await conn.fetch(
            "SELECT conrelid::regclass::text AS tbl, "
            "confrelid::regclass::text AS ref, contype::text, conname, "
            "(SELECT array_agg(attname::text) FROM pg_attribute "
            "  WHERE attrelid = conrelid AND attnum = ANY(conkey)) AS cols "
            "FROM pg_constraint WHERE contype IN ('p', 'f', 'u') "
            "AND connamespace = 'public'::regnamespace"
        )
        unique_indexes = await conn.fetch(
            "SELECT i.indrelid::regclass::text AS tbl, "
            "i.indexrelid::regclass::text AS name, "
            "(SELECT array_agg(attname::text) FROM pg_attribute "
            "  WHERE attrelid = i.indrelid AND attnum = ANY(i.indkey)) AS cols "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "WHERE i.indisunique AND c.relnamespace = 'public'::regnamespace"
        )
    finally:
        await conn.close()

    distributed = tables - REFERENCE_TABLES
    assert {"checks", "pings", "flips", "deliveries"} <= distributed
    primary = {row["tbl"] for row in keys if row["contype"] == "p"}
    assert distributed <= primary, "a distributed table without a primary key"
    for row in keys:
        if row["tbl"] in distributed and row["ref"] not in REFERENCE_TABLES:
            assert "shard" in row["cols"], (row["tbl"], row["conname"], row["cols"])
    for row in unique_indexes:
        if row["tbl"] in distributed:
            assert "shard" in row["cols"], (row["tbl"], row["name"], row["cols"])
