"""What only the SQLite store shows: one server per file, its synchronous mode.

The store contract both backends pass is in ``test_store_contract.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from serverlord.checks import Check
from serverlord.config import Settings
from serverlord.pings import Ping
from serverlord.schedules import Schedule
from serverlord.store import StoreUnavailableError, open_store
from serverlord.store.sqlite import SqliteStore, connect
from serverlord.store.sqlite_reads import CheckCache


@pytest.fixture
def backend() -> str:
    return "sqlite"


async def test_a_second_server_on_the_same_file_waits_until_the_first_closes(
    settings: Settings,
) -> None:
    first, second = open_store(settings), open_store(settings)
    first.lock_for_server()
    try:
        with pytest.raises(StoreUnavailableError, match="already using"):
            second.lock_for_server()
    finally:
        await first.close()

    second.lock_for_server()
    await second.close()


@pytest.mark.parametrize(("mode", "pragma"), [("full", 2), ("normal", 1)])
async def test_the_synchronous_setting_reaches_the_writer(
    tmp_path: Path, mode: str, pragma: int
) -> None:
    store = open_store(Settings(data_dir=tmp_path, sqlite_synchronous=mode))
    await store.open()
    try:
        assert isinstance(store, SqliteStore) and store._writer is not None
        seen = store._writer.conn.execute("PRAGMA synchronous").fetchone()[0]
    finally:
        await store.close()

    assert seen == pragma


async def test_a_new_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "serverlord.sqlite3"
    store = SqliteStore(path)
    await store.open()
    try:
        modes = {
            p.name: p.stat().st_mode & 0o777
            for p in [path.parent, *path.parent.iterdir()]
            if not p.name.endswith(".lock")
        }
    finally:
        await store.close()

    assert modes["data"] == 0o700
    assert modes["serverlord.sqlite3"] == 0o600
    assert modes["serverlord.sqlite3-wal"] == 0o600


# The writer's cache of checks: a check pinged often is not built from its row
# on every ping, but a row changed by anyone is read again.


async def _in_another_process(
    path: Path, write: Callable[[SqliteStore], Awaitable[None]]
) -> None:
    """Write as another process (the CLI) does: with a store of its own."""
    store = SqliteStore(path)
    await store.open()
    try:
        await write(store)
    finally:
        await store.close()


async def _stored_check(path: Path, name: str = "backup") -> Check:
    check = Check(
        str(uuid.uuid4()), name, Schedule.simple(60), 30.0, created=time.time()
    )
    await _in_another_process(path, lambda store: store.add_check(check))
    return check


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "serverlord.sqlite3"


@pytest.fixture
def conn(path: Path) -> Iterator[sqlite3.Connection]:
    """The writer's connection, as far as the cache can tell."""
    opened = connect(path)
    yield opened
    opened.close()


async def test_a_cached_check_is_read_again_once_another_process_changed_it(
    path: Path, conn: sqlite3.Connection
) -> None:
    check, cache = await _stored_check(path), CheckCache()
    first = cache.read(conn, [check.id])[check.id]
    assert cache.read(conn, [check.id])[check.id] is first

    first.name = "what the cache holds"
    renamed = dataclasses.replace(check, name="renamed")
    await _in_another_process(path, lambda store: store.update_check(renamed))
    again = cache.read(conn, [check.id])[check.id]

    assert again is not first
    assert again.name == "renamed"


async def test_a_check_deleted_and_made_again_with_its_id_is_read_again(
    path: Path, conn: sqlite3.Connection
) -> None:
    check, cache = await _stored_check(path), CheckCache()
    assert cache.read(conn, [check.id])[check.id].name == "backup"
    conn.execute("DELETE FROM checks WHERE id = ?", (check.id,))
    assert cache.read(conn, [check.id]) == {}

    # The same id and version, made again by another process later.
    remade = dataclasses.replace(check, name="remade", created=time.time() + 1)
    await _in_another_process(path, lambda store: store.add_check(remade))

    assert cache.read(conn, [check.id])[check.id].name == "remade"


async def test_the_cache_keeps_at_most_its_size_and_sweeps_add_nothing(
    path: Path, conn: sqlite3.Connection
) -> None:
    ids = [(await _stored_check(path, f"c{i}")).id for i in range(3)]
    cache = CheckCache(size=2)
    swept = cache.read(conn, ids[:1], keep=False)[ids[0]]
    assert cache.read(conn, ids[:1])[ids[0]] is not swept

    kept = cache.read(conn, ids)
    again = cache.read(conn, ids)

    assert [again[i] is kept[i] for i in ids].count(True) == 2


async def _pings_in_one_batch(store: SqliteStore, check: Check, count: int) -> None:
    # The writer waits on the first operation while the pings queue up
    # behind it: they are then written together, through the cache.
    queued = threading.Event()
    first = asyncio.ensure_future(store._write(lambda conn: queued.wait(10)))
    tasks = [
        asyncio.ensure_future(store.record_ping(Ping(check.id, time.time(), "success")))
        for _ in range(count)
    ]
    await asyncio.sleep(0.05)
    queued.set()
    await asyncio.gather(first, *tasks)


async def test_the_writer_forgets_its_cached_checks_when_a_batch_is_undone(
    path: Path,
) -> None:
    check = await _stored_check(path)
    store = SqliteStore(path)
    await store.open()
    try:
        assert store._writer is not None
        cache = store._writer.checks
        await _pings_in_one_batch(store, check, 3)

        def broken(conn: sqlite3.Connection) -> None:
            # Changes a cached check in place, as an operation would, then fails.
            cache.read(conn, [check.id])[check.id].n_pings = 1000
            raise RuntimeError("a bug in an operation")

        with pytest.raises(RuntimeError):
            await store._write(broken)
        await _pings_in_one_batch(store, check, 2)
        stored = await store.get_check(check.id)
    finally:
        await store.close()

    assert stored.n_pings == 5
