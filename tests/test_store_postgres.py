"""What only the PostgreSQL store shows, on a real PostgreSQL: batches that form
while one commits, values the database refuses, lost connections, a database
that is gone, and flips and their deliveries in one transaction.

The store contract both backends pass is in ``test_store_contract.py``;
migrations and the schema in ``test_migrations.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from serverlord.channels import Channel
from serverlord.checks import Check
from serverlord.store import StoreUnavailableError
from serverlord.store.base import Due
from serverlord.store.postgres import PostgresStore, masked
from tests.tenants import unreachable_channel
from tests.test_store_contract import new_check, ping

if TYPE_CHECKING:
    # Loaded by pytest as a plugin (pyproject.toml); importing it here first
    # would keep pytest from rewriting its asserts.
    from tests.postgres import Cluster


@pytest.fixture
def backend() -> str:
    return "postgres"


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(postgres_url)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test's database, beside the store's own."""
    conn = await asyncpg.connect(postgres_url)
    yield conn
    await conn.close()


async def transactions_of(db: asyncpg.Connection, check: Check) -> int:
    """How many transactions wrote the check's stored pings, as PostgreSQL saw it."""
    value = await db.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM pings WHERE check_id = $1", check.id
    )
    return int(value)


async def add_channel(store: PostgresStore, name: str = "ops") -> Channel:
    channel = unreachable_channel(name)
    await store.add_channel(channel)
    return channel


# Group commit and durability


async def test_pings_that_queue_while_a_batch_commits_form_the_next_batch(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    check = new_check()
    await store.add_check(check)

    # Waves of pings, each sent while the one before is still being written.
    waves = []
    for _ in range(5):
        waves.append(
            asyncio.gather(*(store.record_ping(ping(check)) for _ in range(16)))
        )
        await asyncio.sleep(0)
    await asyncio.gather(*waves)

    assert await transactions_of(db, check) <= 5
    stored = await store.get_check(check.id)
    assert stored is not None and stored.n_pings == 80


async def test_a_ping_the_database_refuses_fails_alone(store: PostgresStore) -> None:
    check = new_check()
    await store.add_check(check)
    refused = ping(check)
    refused.user_agent = "nul\x00"  # text in PostgreSQL cannot hold NUL

    results = await asyncio.gather(
        store.record_ping(ping(check, body=b"one")),
        store.record_ping(refused),
        store.record_ping(ping(check, body=b"two")),
        return_exceptions=True,
    )

    assert isinstance(results[1], asyncpg.PostgresError)
    assert not isinstance(results[0], BaseException)
    assert not isinstance(results[2], BaseException)
    pings = await store.recent_pings(check.id, 10)
    assert [(p.n, p.body) for p in pings] == [(2, b"two"), (1, b"one")]
    stored = await store.get_check(check.id)
    assert stored is not None and stored.n_pings == 2


async def cut_connections(db: asyncpg.Connection, *, waiting: bool = False) -> None:
    """End the store's connections, or only the one waiting on a row lock."""
    await db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'serverlord' "
        "AND (NOT $1 OR wait_event_type = 'Lock')",
        waiting,
    )


async def test_a_batch_whose_connection_is_lost_before_commit_is_written_again(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    check = new_check()
    await store.add_check(check)
    await store.record_ping(ping(check))

    # The writer waits on a row this connection holds; its connection is cut.
    blocker = db.transaction()
    await blocker.start()
    await db.execute("SELECT 1 FROM checks WHERE id = $1 FOR UPDATE", check.id)
    written = asyncio.ensure_future(store.record_ping(ping(check, body=b"again")))
    await asyncio.sleep(0.1)
    await cut_connections(db, waiting=True)
    await asyncio.sleep(0.1)
    await blocker.rollback()
    outcome = await written

    pings = await store.recent_pings(check.id, 10)
    assert [(p.n, p.body) for p in pings] == [(2, b"again"), (1, b"")]
    assert outcome.deadline is not None


async def test_writes_fail_while_the_database_is_unreachable_and_recover_after(
    store: PostgresStore,
    db: asyncpg.Connection,
    postgres_url: str,
    postgres_cluster: Cluster,
) -> None:
    check = new_check()
    await store.add_check(check)
    await store.record_ping(ping(check))
    name = postgres_url.rsplit("/", 1)[1]

    await postgres_cluster.allow_connections(name, False)
    await cut_connections(db)
    try:
        with pytest.raises(StoreUnavailableError):
            await store.record_ping(ping(check, body=b"lost"))
        with pytest.raises(StoreUnavailableError):
            await store.get_check(check.id)
    finally:
        await postgres_cluster.allow_connections(name, True)
    await store.record_ping(ping(check, body=b"back"))

    pings = await store.recent_pings(check.id, 10)
    assert [(p.n, p.body) for p in pings] == [(2, b"back"), (1, b"")]


async def test_an_unreachable_database_is_a_clear_error_at_open(
    postgres_cluster: Cluster,
) -> None:
    store = PostgresStore(
        postgres_cluster.url("postgres").replace(f":{postgres_cluster.port}/", ":1/")
    )
    with pytest.raises(StoreUnavailableError, match="cannot connect to"):
        await store.open()


def test_without_postgresql_the_tests_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("shutil.which", lambda _: None)
    monkeypatch.setattr("tests.postgres.DEBIAN_BINARIES", tmp_path)
    from tests.postgres import PostgresMissingError, find_binaries

    with pytest.raises(PostgresMissingError, match="apt-get install postgresql"):
        find_binaries()


def test_the_description_hides_the_password() -> None:
    store = PostgresStore("postgresql://lord:s3cret@db.example:5433/serverlord")
    assert store.description == "postgresql://lord:***@db.example:5433/serverlord"
    assert "s3cret" not in masked("postgres://u:s3cret@[::1]/x")


# The outbox


async def test_a_flip_and_its_deliveries_are_written_in_one_transaction(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    check = new_check(period=60, grace=30)
    await store.add_check(check)
    channels = [await add_channel(store, "ops"), await add_channel(store, "dev")]
    await store.set_check_channels(check.id, [c.id for c in channels])
    await store.record_ping(ping(check, received=time.time() - 200))

    [outcome] = await store.sweep([Due(check.id)], time.time())

    assert outcome.flip is not None
    rows = await db.fetch(
        "SELECT d.xmin::text AS d_xmin, f.xmin::text AS f_xmin "
        "FROM deliveries d JOIN flips f ON f.id = d.flip_id WHERE d.check_id = $1",
        check.id,
    )
    assert len(rows) == 2
    assert all(row["d_xmin"] == row["f_xmin"] for row in rows)


async def test_the_stores_statements_are_planned_for_their_values(
    store: PostgresStore,
) -> None:
    # asyncpg prepares every statement; a generic plan kept after five runs
    # made the claim of a wave's deliveries a hundred times slower.
    rows = await store._fetch("SHOW plan_cache_mode")

    assert rows[0][0] == "force_custom_plan"
