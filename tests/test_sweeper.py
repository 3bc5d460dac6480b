"""Sweepers on a live server: missed deadlines, long runs, edits, restarts.

Cases A1 and A2 of the behaviour cases, detection soon after a deadline, the
change feed from other processes and the rule for deadlines that fell while
serverlord was not running. Lags are bounded generously (1 s): these tests pin
behaviour, not speed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from serverlord.checks import (
    DOWN,
    MISSED,
    MISSED_OFFLINE,
    NEW,
    PAUSE,
    PAUSED,
    RUN_TOO_LONG,
    UP,
    Check,
    Flip,
)
from serverlord.config import Settings
from serverlord.pings import Ping
from serverlord.schedules import Schedule
from serverlord.server import Server
from serverlord.store import Store, open_store
from tests.conftest import Live

DAY = 86400.0
HOUR = 3600.0
LAG = 1.0
"""Longest accepted time from a deadline to its flip being stored."""


async def add(store: Store, **fields: Any) -> Check:
    """Store a check: simple, period 1 day, grace 1 hour, unless told otherwise."""
    fields.setdefault("schedule", Schedule.simple(DAY))
    fields.setdefault("grace", HOUR)
    check = Check(id=str(uuid.uuid4()), name="backup", created=time.time(), **fields)
    await store.add_check(check)
    return check


async def flips_of(store: Store, check: Check) -> list[Flip]:
    """The check's flips, oldest first."""
    return list(reversed(await store.recent_flips(check.id, 100)))


async def eventually(
    condition: Callable[[], Awaitable[bool] | bool], timeout: float = 5.0
) -> None:
    give_up = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > give_up:
            raise AssertionError(f"not so within {timeout} s")
        await asyncio.sleep(0.01)


async def down_flip(store: Store, check: Check, timeout: float = 5.0) -> Flip:
    """Wait for the check's first flip to down and return it."""
    found: list[Flip] = []

    async def flipped() -> bool:
        found[:] = [f for f in await flips_of(store, check) if f.new_status == DOWN]
        return bool(found)

    await eventually(flipped, timeout)
    return found[0]


async def status_of(store: Store, check: Check) -> str:
    stored = await store.get_check(check.id)
    assert stored is not None
    return stored.status


# Missed deadlines


async def test_a_missed_deadline_flips_the_check_down_once_dated_at_the_deadline(
    live: Live,
) -> None:
    last_ping = time.time() - 2 * DAY
    added = time.time()
    check = await add(live.store, status=UP, last_ping=last_ping)

    flip = await down_flip(live.store, check)

    deadline = last_ping + DAY + HOUR
    assert flip.at == pytest.approx(deadline)
    assert (flip.old_status, flip.reason) == (UP, MISSED)
    assert added <= flip.detected <= time.time()
    assert (flip.offline_from, flip.offline_until) == (None, None)
    assert await status_of(live.store, check) == DOWN

    # The same deadline coming round again finds the check already down.
    shard = live.server.sweepers.shard_for(check.shard)
    live.server.sweepers.schedule(check.shard, check.id, deadline)
    await eventually(lambda: check.id not in shard.deadlines)
    await asyncio.sleep(0.3)
    assert len(await flips_of(live.store, check)) == 1


async def test_a_stale_earlier_deadline_does_not_flip_a_check_pinged_since(
    live: Live,
) -> None:
    last_ping = time.time() - HOUR
    check = await add(live.store, status=UP, last_ping=last_ping)
    deadline = last_ping + DAY + HOUR
    shard = live.server.sweepers.shard_for(check.shard)
    await eventually(lambda: shard.deadlines.get(check.id) == deadline)

    stale = time.time() - DAY
    live.server.sweepers.schedule(check.shard, check.id, stale)
    assert shard.deadlines[check.id] == stale
    await eventually(lambda: shard.deadlines.get(check.id) == deadline)

    assert await flips_of(live.store, check) == []
    assert await status_of(live.store, check) == UP


async def test_a_check_that_stops_pinging_is_down_within_a_second_of_its_deadline(
    live: Live,
) -> None:
    check = await add(live.store, schedule=Schedule.simple(1), grace=1)

    # The second ping moves the deadline the first one set.
    for _ in range(2):
        response = await live.client.get(f"/ping/{check.id}")
        assert response.status_code == 200
        await asyncio.sleep(0.6)
    [last, *_] = await live.store.recent_pings(check.id, 1)

    flip = await down_flip(live.store, check)

    assert flip.at == pytest.approx(last.received + 2)
    assert (flip.old_status, flip.reason) == (UP, MISSED)
    assert 0 <= flip.detected - flip.at < LAG
    assert [f.new_status for f in await flips_of(live.store, check)] == [UP, DOWN]


async def test_a_run_that_outlives_its_max_runtime_or_grace_goes_down(
    live: Live,
) -> None:
    by_max_runtime = await add(live.store, max_runtime=1)
    by_grace = await add(live.store, grace=1)

    for check in (by_max_runtime, by_grace):
        response = await live.client.get(f"/ping/{check.id}/start")
        assert response.status_code == 200

    for check in (by_max_runtime, by_grace):
        [start] = await live.store.recent_pings(check.id, 1)
        flip = await down_flip(live.store, check)
        assert flip.at == pytest.approx(start.received + 1)
        assert (flip.old_status, flip.reason) == (NEW, RUN_TOO_LONG)
        assert 0 <= flip.detected - flip.at < LAG
        stored = await live.store.get_check(check.id)
        assert stored is not None
        assert (stored.status, stored.last_start) == (DOWN, None)


# Edits made by other processes


async def test_a_period_shortened_by_another_process_is_honoured_within_a_second(
    live: Live,
) -> None:
    last_ping = time.time() - HOUR
    check = await add(live.store, status=UP, last_ping=last_ping)
    other = open_store(live.settings)
    await other.open()
    try:
        stored = await other.get_check(check.id)
        assert stored is not None
        stored.schedule = Schedule.simple(60)
        stored.grace = 60
        await other.update_check(stored)
        edited = time.time()
    finally:
        await other.close()

    flip = await down_flip(live.store, check)

    assert flip.at == pytest.approx(last_ping + 120)
    assert flip.reason == MISSED
    assert flip.detected - edited < LAG


async def test_a_check_paused_by_another_process_is_not_swept(live: Live) -> None:
    # Due 1.5 s from now, unless the pause reaches the server first.
    last_ping = time.time() - DAY - HOUR + 1.5
    check = await add(live.store, status=UP, last_ping=last_ping)
    shard = live.server.sweepers.shard_for(check.shard)
    await eventually(lambda: check.id in shard.deadlines)

    other = open_store(live.settings)
    await other.open()
    try:
        await other.pause_check(check.id, time.time())
    finally:
        await other.close()

    await eventually(lambda: check.id not in shard.deadlines, timeout=LAG)
    await asyncio.sleep(max(0.0, last_ping + DAY + HOUR + 0.3 - time.time()))
    flips = await flips_of(live.store, check)
    assert [(f.new_status, f.reason) for f in flips] == [(PAUSED, PAUSE)]
    assert await status_of(live.store, check) == PAUSED


# Restarts


async def start_server(settings: Settings, store: Store) -> tuple[Server, float]:
    """Start a server on the store; return it and when it started (at most)."""
    server = Server(settings, store)
    await server.start()
    return server, time.time()


async def test_a_deadline_missed_while_offline_waits_one_grace_from_start_up(
    settings: Settings, store: Store
) -> None:
    # Its deadline fell 5 minutes ago; serverlord was last alive 10 ago.
    now = time.time()
    check = await add(store, status=UP, last_ping=now - DAY - 301, grace=1)
    offline_from = now - 600
    await store.heartbeat(offline_from)

    before = time.time()
    server, after = await start_server(settings, store)
    try:
        flip = await down_flip(store, check)
    finally:
        await server.stop()

    assert flip.reason == MISSED_OFFLINE
    assert flip.offline_from == offline_from
    assert flip.offline_until is not None
    assert before <= flip.offline_until <= after
    assert flip.at == pytest.approx(flip.offline_until + 1)
    assert flip.detected >= flip.at
    assert flip.detected - flip.at < LAG


async def test_a_deadline_missed_while_serverlord_was_watching_flips_at_once(
    settings: Settings, store: Store
) -> None:
    # A day ago serverlord was alive and should have flipped it (it died just
    # before the flip was stored): nobody can have pinged unheard then.
    now = time.time()
    check = await add(store, status=UP, last_ping=now - 2 * DAY, grace=1)
    await store.heartbeat(now - 600)

    server, started = await start_server(settings, store)
    try:
        flip = await down_flip(store, check)
    finally:
        await server.stop()

    assert flip.reason == MISSED
    assert flip.at == pytest.approx(now - DAY + 1, abs=0.1)
    assert flip.detected - started < LAG


async def test_a_ping_that_fell_due_while_offline_waits_one_grace_from_start_up(
    settings: Settings, store: Store
) -> None:
    # Due 2 s ago, while serverlord was down; its grace ends 0.5 s from now.
    now = time.time()
    check = await add(store, status=UP, last_ping=now - DAY - 2, grace=2.5)
    await store.heartbeat(now - 600)

    server, started = await start_server(settings, store)
    try:
        flip = await down_flip(store, check)
    finally:
        await server.stop()

    assert flip.reason == MISSED_OFFLINE
    assert flip.at >= started + 2
    assert flip.offline_until is not None


async def test_a_check_pinged_while_held_back_after_start_up_stays_up(
    settings: Settings, store: Store
) -> None:
    now = time.time()
    check = await add(store, status=UP, last_ping=now - DAY - 300, grace=1.5)
    await store.heartbeat(now - 600)

    server, started = await start_server(settings, store)
    try:
        await server.ingest(
            Ping(check_id=check.id, received=time.time(), kind="success")
        )
        await asyncio.sleep(max(0.0, started + 1.8 - time.time()))
        flips = await flips_of(store, check)
    finally:
        await server.stop()

    assert flips == []
    assert await status_of(store, check) == UP


async def test_a_deadline_still_ahead_at_start_up_is_kept_as_it_is(
    settings: Settings, store: Store
) -> None:
    last_ping = time.time() - HOUR
    check = await add(store, status=UP, last_ping=last_ping)
    await store.heartbeat(time.time() - 600)

    server, _ = await start_server(settings, store)
    try:
        shard = server.sweepers.shard_for(check.shard)
        assert shard.deadlines[check.id] == last_ping + DAY + HOUR
        assert check.id not in shard.offline
    finally:
        await server.stop()


async def test_a_run_too_long_while_offline_says_when_serverlord_was_offline(
    settings: Settings, store: Store
) -> None:
    now = time.time()
    check = await add(
        store,
        status=UP,
        last_ping=now - HOUR,
        last_start=now - 400,
        grace=1,
        max_runtime=60,
    )
    offline_from = now - 600
    await store.heartbeat(offline_from)

    before = time.time()
    server, after = await start_server(settings, store)
    try:
        flip = await down_flip(store, check)
    finally:
        await server.stop()

    assert flip.reason == RUN_TOO_LONG
    assert flip.at >= before + 1
    assert flip.offline_from == offline_from
    assert flip.offline_until is not None
    assert before <= flip.offline_until <= after
