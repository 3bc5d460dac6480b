"""The store contract on SQLite: group commit, durability, migrations, pruning."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from serverlord.checks import Check
from serverlord.config import Settings
from serverlord.pings import Ping
from serverlord.schedules import Schedule
from serverlord.store import (
    CheckNotFoundError,
    ConflictError,
    Store,
    open_store,
)
from serverlord.store.base import PINGS_KEPT, Due
from serverlord.store.queries import load_migrations
from serverlord.store.sqlite import SqliteStore, connect, migrate
from serverlord.store.writes import PRUNE_EVERY


def new_check(period: float = 60, grace: float = 30) -> Check:
    return Check(
        id=str(uuid.uuid4()),
        name="backup",
        schedule=Schedule.simple(period),
        grace=grace,
        created=time.time(),
    )


def ping(
    check: Check,
    kind: str = "success",
    *,
    body: bytes = b"",
    received: float | None = None,
    exit_status: int | None = None,
) -> Ping:
    return Ping(
        check_id=check.id,
        received=time.time() if received is None else received,
        kind=kind,
        body=body,
        exit_status=exit_status,
    )


def db_path(store: Store) -> Path:
    assert isinstance(store, SqliteStore)
    return store.path


class Transactions:
    """Counts the transactions the writer's own connection runs, as SQLite sees them."""

    def __init__(self, store: Store) -> None:
        assert isinstance(store, SqliteStore) and store._writer is not None
        self.conn = store._writer.conn
        self.begins = 0
        self.commits = 0
        self._lock = threading.Lock()
        self.conn.set_trace_callback(self._seen)

    def _seen(self, statement: str) -> None:
        with self._lock:
            if statement.startswith("BEGIN"):
                self.begins += 1
            elif statement == "COMMIT":
                self.commits += 1

    def stop(self) -> None:
        self.conn.set_trace_callback(None)


@pytest.fixture
def transactions(store: Store) -> Iterator[Transactions]:
    counter = Transactions(store)
    yield counter
    counter.stop()


async def test_concurrent_pings_are_committed_in_fewer_transactions_than_pings(
    store: Store, transactions: Transactions
) -> None:
    check = new_check()
    await store.add_check(check)
    transactions.begins = transactions.commits = 0

    pings = [store.record_ping(ping(check)) for _ in range(500)]
    outcomes = await asyncio.gather(*pings)

    assert len(outcomes) == 500
    assert transactions.commits == transactions.begins
    assert 1 <= transactions.commits <= 50
    stored = await store.get_check(check.id)
    assert stored is not None and stored.n_pings == 500
    numbers = sorted(p.n for p in await store.recent_pings(check.id, 1000))
    assert numbers[-1] == 500


async def test_a_ping_is_readable_from_a_second_store_as_soon_as_its_await_returns(
    store: Store, settings: Settings
) -> None:
    check = new_check()
    await store.add_check(check)

    await store.record_ping(ping(check, body=b"nightly backup done"))

    second = open_store(settings)
    await second.open()
    try:
        pings = await second.recent_pings(check.id, 10)
        stored = await second.get_check(check.id)
    finally:
        await second.close()
    assert [p.body for p in pings] == [b"nightly backup done"]
    assert stored is not None and stored.n_pings == 1 and stored.status == "up"


async def test_a_committed_ping_survives_closing_the_store(settings: Settings) -> None:
    first = open_store(settings)
    await first.open()
    check = new_check()
    await first.add_check(check)
    await first.record_ping(ping(check))
    await first.close()

    conn = sqlite3.connect(settings.resolved_data_dir() / "serverlord.sqlite3")
    try:
        count = conn.execute(
            "SELECT count(*) FROM pings WHERE check_id = ?", (check.id,)
        ).fetchone()[0]
    finally:
        conn.close()
    assert count == 1


async def test_an_unknown_check_fails_alone_and_its_batch_still_commits(
    store: Store, transactions: Transactions
) -> None:
    check = new_check()
    await store.add_check(check)
    stranger = new_check()  # never added

    # Hold the database with another connection so that the writer waits in
    # BEGIN and the next three pings queue up behind it as one batch.
    blocker = sqlite3.connect(db_path(store), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    transactions.commits = 0
    try:
        first = asyncio.ensure_future(store.record_ping(ping(check)))
        await asyncio.sleep(0.1)
        batch = asyncio.gather(
            store.record_ping(ping(check, body=b"before")),
            store.record_ping(ping(stranger)),
            store.record_ping(ping(check, body=b"after")),
            return_exceptions=True,
        )
        await asyncio.sleep(0.1)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await first
    before, unknown, after = await batch

    assert transactions.commits == 2
    assert isinstance(unknown, CheckNotFoundError)
    assert not isinstance(before, BaseException)
    assert not isinstance(after, BaseException)
    bodies = [p.body for p in await store.recent_pings(check.id, 10)]
    assert bodies == [b"after", b"before", b""]
    assert await store.recent_pings(stranger.id, 10) == []


async def test_a_ping_to_an_unknown_check_raises_check_not_found(store: Store) -> None:
    with pytest.raises(CheckNotFoundError):
        await store.record_ping(ping(new_check()))


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    numbers = [number for number, _, _ in load_migrations("sqlite")]
    # 0003 is reserved for a migration that lands from another branch.
    wanted = [n for n in range(1, numbers[-1] + 1) if n != 3 or 3 in numbers]
    assert numbers == wanted


def test_migrations_applied_in_order_give_the_schema(tmp_path: Path) -> None:
    numbers = [number for number, _, _ in load_migrations("sqlite")]
    conn = connect(tmp_path / "fresh.sqlite3")
    try:
        assert migrate(conn) == numbers
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        }
        assert migrate(conn) == []
    finally:
        conn.close()

    assert version == numbers[-1]
    assert {"checks", "pings", "flips", "changes", "meta"} <= tables


async def test_opening_a_store_twice_applies_no_migration_again(
    settings: Settings,
) -> None:
    check = new_check()
    first = open_store(settings)
    await first.open()
    await first.add_check(check)
    await first.close()

    second = open_store(settings)
    await second.open()
    try:
        assert await second.get_check(check.id) is not None
    finally:
        await second.close()

    conn = connect(settings.resolved_data_dir() / "serverlord.sqlite3")
    try:
        assert migrate(conn) == []
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()
    assert version == load_migrations("sqlite")[-1][0]


async def test_pings_beyond_pings_kept_are_pruned(store: Store) -> None:
    check = new_check()
    await store.add_check(check)
    total = PINGS_KEPT + 2 * PRUNE_EVERY
    total += -total % PRUNE_EVERY  # prune runs on every PRUNE_EVERY-th ping

    for _ in range(total):
        await store.record_ping(ping(check))

    kept = [p.n for p in await store.recent_pings(check.id, 10 * total)]
    assert sorted(kept) == list(range(total - PINGS_KEPT + 1, total + 1))
    stored = await store.get_check(check.id)
    assert stored is not None and stored.n_pings == total


async def test_pings_record_a_flip_for_each_status_change(store: Store) -> None:
    check = new_check()
    await store.add_check(check)

    await store.record_ping(ping(check))
    await store.record_ping(ping(check))
    await store.record_ping(ping(check, "fail"))
    await store.record_ping(ping(check, "log"))
    await store.record_ping(ping(check, "success", exit_status=0))
    await store.record_ping(ping(check, "fail", exit_status=3))

    flips = await store.recent_flips(check.id, 10)
    seen = [
        (f.old_status, f.new_status, f.reason, f.exit_status) for f in reversed(flips)
    ]
    assert seen == [
        ("new", "up", "success", None),
        ("up", "down", "failure", None),
        ("down", "up", "success", 0),
        ("up", "down", "exit_status", 3),
    ]
    assert all(f.id is not None for f in flips)


async def test_a_sweep_flips_a_late_check_at_its_deadline_once(store: Store) -> None:
    check = new_check(period=60, grace=30)
    await store.add_check(check)
    last = time.time() - 200
    outcome = await store.record_ping(ping(check, received=last))
    assert outcome.deadline == pytest.approx(last + 90)

    now = time.time()
    first = await store.sweep([Due(check.id)], now)
    again = await store.sweep([Due(check.id)], now + 1)

    assert first[0].flip is not None
    assert first[0].flip.at == pytest.approx(last + 90)
    assert first[0].flip.detected == pytest.approx(now)
    assert first[0].deadline is None
    assert again[0].flip is None
    flips = await store.recent_flips(check.id, 10)
    assert [(f.new_status, f.reason) for f in flips] == [
        ("down", "missed"),
        ("up", "success"),
    ]
    assert flips[0].detected - flips[0].at == pytest.approx(now - (last + 90))


async def test_a_sweep_does_not_flip_a_check_whose_deadline_moved(store: Store) -> None:
    check = new_check(period=60, grace=30)
    await store.add_check(check)
    await store.record_ping(ping(check))

    outcomes = await store.sweep([Due(check.id)], time.time())

    assert outcomes[0].flip is None
    assert outcomes[0].deadline is not None and outcomes[0].deadline > time.time()
    stored = await store.get_check(check.id)
    assert stored is not None and stored.status == "up"


async def test_edits_are_recorded_as_changes_for_a_running_server(store: Store) -> None:
    cursor = await store.last_change()
    check = new_check()
    await store.add_check(check)
    await store.pause_check(check.id, time.time())
    await store.resume_check(check.id, time.time())
    await store.delete_check(check.id)

    new_cursor, changed = await store.changes_since(cursor)

    assert changed == [check.id] * 4
    assert new_cursor == await store.last_change() > cursor
    assert await store.changes_since(new_cursor) == (new_cursor, [])


async def test_pause_and_resume_record_flips(store: Store) -> None:
    check = new_check()
    await store.add_check(check)
    await store.record_ping(ping(check))

    paused = await store.pause_check(check.id, time.time())
    resumed = await store.resume_check(check.id, time.time())

    assert (paused.status, resumed.status) == ("paused", "new")
    flips = await store.recent_flips(check.id, 10)
    assert [(f.old_status, f.new_status) for f in flips][:2] == [
        ("paused", "new"),
        ("up", "paused"),
    ]


async def test_resuming_a_check_that_is_not_paused_is_a_conflict(store: Store) -> None:
    check = new_check()
    await store.add_check(check)

    with pytest.raises(ConflictError):
        await store.resume_check(check.id, time.time())

    stored = await store.get_check(check.id)
    assert stored is not None and stored.status == "new"
    assert await store.recent_flips(check.id, 10) == []


async def test_changing_an_unknown_check_raises_check_not_found(store: Store) -> None:
    with pytest.raises(CheckNotFoundError):
        await store.pause_check(str(uuid.uuid4()), time.time())
    with pytest.raises(CheckNotFoundError):
        await store.delete_check(str(uuid.uuid4()))


async def test_removing_a_check_removes_its_pings_and_flips(store: Store) -> None:
    check = new_check()
    await store.add_check(check)
    await store.record_ping(ping(check))

    await store.delete_check(check.id)

    assert await store.get_check(check.id) is None
    assert await store.recent_pings(check.id, 10) == []
    assert await store.recent_flips(check.id, 10) == []
    assert await store.count_checks() == 0


async def test_deadlines_and_heartbeat_are_read_back(store: Store) -> None:
    check = new_check(period=60, grace=30)
    idle = new_check()
    await store.add_check(check)
    await store.add_check(idle)
    received = time.time()
    await store.record_ping(ping(check, received=received))
    await store.heartbeat(1234.5)

    [(check_id, deadline, grace)] = await store.load_deadlines()

    assert (check_id, grace) == (check.id, 30)
    assert deadline == pytest.approx(received + 90)
    assert await store.last_heartbeat() == 1234.5
    assert await store.count_checks() == 2


async def test_adding_a_check_twice_is_a_conflict_that_spares_its_batch(
    store: Store,
) -> None:
    check = new_check()
    await store.add_check(check)
    other = new_check()
    await store.add_check(other)

    results = await asyncio.gather(
        store.add_check(check),
        store.record_ping(ping(other)),
        return_exceptions=True,
    )

    assert isinstance(results[0], ConflictError)
    assert not isinstance(results[1], BaseException)
    stored = await store.get_check(other.id)
    assert stored is not None and stored.n_pings == 1
