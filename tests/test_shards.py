"""Shards shared by several servers on one PostgreSQL database.

Two ``Server`` objects in this test's loop, each with its own store and its
own ownership connection, stand for two processes: they split the shards,
hand them over when one leaves or loses its connection, and tell each other
of deadlines that moved earlier. The real processes are in
test_shards_processes.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from serverlord.checks import DOWN, MISSED, RUN_TOO_LONG, SHARD_COUNT, UP
from serverlord.config import Settings
from serverlord.pings import Ping
from serverlord.schedules import Schedule
from serverlord.server import Server
from serverlord.store import Store, open_store
from tests.test_sweeper import DAY, HOUR, LAG, add, down_flip, eventually, flips_of

HANDOVER = 5.0
"""Longest accepted time for a server to take over the shards of another."""

Start = Callable[[], Awaitable[Server]]


@pytest.fixture
def pg_settings(tmp_path: Path, postgres_url: str) -> Settings:
    return Settings(data_dir=tmp_path, database_url=postgres_url, shards=4)


@pytest.fixture
async def start_server(pg_settings: Settings) -> AsyncIterator[Start]:
    """Start servers on the test's database; all are stopped afterwards."""
    running: list[tuple[Server, Store]] = []

    async def start() -> Server:
        store = open_store(pg_settings)
        await store.open()
        server = Server(pg_settings, store)
        await server.start()
        running.append((server, store))
        return server

    yield start
    for server, store in running:
        await server.stop()
        await store.close()


async def other_store(settings: Settings) -> Store:
    """A store of another process, as the CLI opens it."""
    store = open_store(settings)
    await store.open()
    return store


def owned(server: Server) -> set[int]:
    return server.sweepers.owned


async def split(first: Server, second: Server) -> None:
    """Wait until the two own half of the shards each."""

    def halves() -> bool:
        a, b = owned(first), owned(second)
        return len(a) == len(b) == SHARD_COUNT // 2 and not a & b

    await eventually(halves, timeout=HANDOVER)


async def test_a_lone_server_owns_every_shard(start_server: Start) -> None:
    server = await start_server()

    assert owned(server) == set(range(SHARD_COUNT))
    assert server.ownership.alone()


async def test_two_servers_split_the_shards_without_overlap(
    start_server: Start,
) -> None:
    first = await start_server()
    second = await start_server()

    await split(first, second)

    assert owned(first) | owned(second) == set(range(SHARD_COUNT))
    assert not second.ownership.alone()


async def test_a_server_that_stops_hands_its_shards_to_the_other(
    start_server: Start,
) -> None:
    first = await start_server()
    second = await start_server()
    await split(first, second)

    await second.stop()
    began = time.monotonic()
    await eventually(lambda: len(owned(first)) == SHARD_COUNT, timeout=HANDOVER)

    assert owned(second) == set()
    assert time.monotonic() - began < HANDOVER


async def test_a_server_that_loses_its_connection_stops_sweeping_at_once(
    start_server: Start, pg_settings: Settings
) -> None:
    first = await start_server()
    second = await start_server()
    await split(first, second)

    # The database ends the session that holds the second server's locks.
    admin = await asyncpg.connect(pg_settings.database_url)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'serverlord-shards' AND pid = ANY($1)",
            [p for p in await _shard_pids(admin, second)],
        )
    finally:
        await admin.close()

    def stopped() -> bool:
        deadlines = any(sweeper.deadlines for sweeper in second.sweepers.shards)
        return not owned(second) and not deadlines

    await eventually(stopped, timeout=LAG)
    # It joins again and the two share the shards once more.
    await split(first, second)


async def _shard_pids(admin: asyncpg.Connection, server: Server) -> list[int]:
    """The backend pid of a server's ownership connection."""
    rows = await admin.fetch(
        "SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' "
        "AND objsubid = 2 AND objid = $1::bigint::oid",
        next(iter(owned(server))),
    )
    return [row[0] for row in rows]


async def test_each_check_is_swept_by_one_server_only(
    start_server: Start, pg_settings: Settings
) -> None:
    first = await start_server()
    second = await start_server()
    await split(first, second)

    store = await other_store(pg_settings)
    try:
        # Due now and down in two seconds: due after the servers started, so
        # a server still loading its shards does not hold them back as checks
        # that fell due before serverlord ever ran.
        pinged = time.time() - DAY
        checks = [
            await add(store, status=UP, last_ping=pinged, grace=2.0) for _ in range(20)
        ]
        for check in checks:
            await down_flip(store, check)
        flips = [await flips_of(store, check) for check in checks]
    finally:
        await store.close()

    # Both servers swept some, and no check was flipped twice.
    assert {check.shard in owned(first) for check in checks} == {True, False}
    assert all([f.reason for f in check_flips] == [MISSED] for check_flips in flips)


async def test_a_start_through_another_server_reaches_the_owner_in_time(
    start_server: Start, pg_settings: Settings
) -> None:
    first = await start_server()
    second = await start_server()
    await split(first, second)
    store = await other_store(pg_settings)
    try:
        check = await add(
            store, status=UP, last_ping=time.time(), max_runtime=1.0, grace=HOUR
        )
        owner, other = first, second
        if check.shard in owned(second):
            owner, other = second, first
        await eventually(
            lambda: check.id in owner.sweepers.shard_for(check.shard).deadlines
        )

        # The start moves the deadline from a day away to a second away: the
        # owner is told, as the server that took the ping does not sweep it.
        started = time.time()
        await other.ingest(Ping(check_id=check.id, received=started, kind="start"))
        flip = await down_flip(store, check)
    finally:
        await store.close()

    assert flip.reason == RUN_TOO_LONG
    assert flip.at == pytest.approx(started + 1.0, abs=0.01)
    assert flip.detected - flip.at < LAG


async def test_a_check_added_by_another_process_is_swept_by_its_owner(
    start_server: Start, pg_settings: Settings
) -> None:
    first = await start_server()
    second = await start_server()
    await split(first, second)
    store = await other_store(pg_settings)
    try:
        last_ping = time.time() - 60 + 0.5
        check = await add(
            store,
            schedule=Schedule.simple(60),
            grace=0.5,
            status=UP,
            last_ping=last_ping,
        )
        flip = await down_flip(store, check)
    finally:
        await store.close()

    assert flip.new_status == DOWN
    assert flip.at == pytest.approx(last_ping + 60.5, abs=0.01)
    assert flip.detected - flip.at < LAG


async def test_a_check_in_grace_when_the_connection_blips_goes_down_at_its_deadline(
    start_server: Start, pg_settings: Settings
) -> None:
    server = await start_server()
    store = await other_store(pg_settings)
    try:
        # Due 3 s ago, deadline 3 s ahead: the job is late but in its grace.
        last_ping = time.time() - 63
        check = await add(
            store, schedule=Schedule.simple(60), grace=6, status=UP,
            last_ping=last_ping,
        )  # fmt: skip
        await eventually(lambda: check.id in server.sweepers.shard_for(
            check.shard).deadlines)  # fmt: skip

        # The shard connection drops and comes back: serverlord never stopped
        # taking pings, so nothing is held back and nothing is mislabelled.
        admin = await asyncpg.connect(pg_settings.database_url)
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'serverlord-shards'"
            )
        finally:
            await admin.close()
        await eventually(lambda: not owned(server), timeout=LAG)
        await eventually(lambda: len(owned(server)) == SHARD_COUNT)
        flip = await down_flip(store, check, timeout=10)
        flips = await flips_of(store, check)
    finally:
        await store.close()

    assert flip.reason == MISSED
    assert flip.at == pytest.approx(last_ping + 66, abs=0.01)
    assert 0 <= flip.detected - flip.at < LAG
    assert len(flips) == 1
