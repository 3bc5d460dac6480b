"""What only the SQLite store shows: one server per file, its synchronous mode.

The store contract both backends pass is in ``test_store_contract.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from serverlord.config import Settings
from serverlord.store import StoreUnavailableError, open_store
from serverlord.store.sqlite import SqliteStore


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
