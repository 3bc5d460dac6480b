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
