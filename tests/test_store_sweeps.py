"""Sweeps of many due checks at once, on SQLite and on a real PostgreSQL alike.

A sweeper hands the store up to a thousand due checks in one call, and a wave
of checks falling due together makes every call that large: each kind of due
check must come out right when it shares its sweep with all the others.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from serverlord.channels import DOWN_ALERT, REMINDER, Channel
from serverlord.checks import DOWN, MISSED, MISSED_OFFLINE, Check
from serverlord.config import Settings
from serverlord.store import Store
from serverlord.store.base import Due, SweepOutcome
from tests.database import fetch, url_of
from tests.test_store_contract import a_channel, a_check, ping


@dataclass
class Mixed:
    """One check of each kind, all handed to one sweep."""

    now: float
    late: list[Check]
    """Silent past their deadline, two channels each: they go down."""
    pinged: Check
    """Its deadline moved: a ping arrived after the sweeper saw it due."""
    paused: Check
    deleted: Check
    reminded: Check
    """Down, its next reminder due."""
    reminded_again: Check
    """Down, its next reminder due, one already waiting on one channel."""
    offline: Check
    """Its deadline fell while serverlord was down: held back one grace."""
    unlinked: Check
    """Late, with no channel: it goes down and nobody is told."""
    ops: Channel
    dev: Channel

    def due(self) -> list[Due]:
        held = Due(
            self.offline.id,
            not_before=self.now - 50,
            offline_from=self.now - 300,
            offline_until=self.now - 80,
        )
        plain = [
            *self.late,
            self.pinged,
            self.paused,
            self.deleted,
            self.reminded,
            self.reminded_again,
            self.unlinked,
        ]
        return [Due(check.id) for check in plain] + [held]


async def mixed(store: Store) -> Mixed:
    now = time.time()
    ops, dev = await a_channel(store, "ops"), await a_channel(store, "dev")
    both = [ops, dev]

    late = []
    for _ in range(5):
        check = await a_check(store, both, period=60, grace=30)
        await store.record_ping(ping(check, received=now - 200, body=b"it ran"))
        late.append(check)

    pinged = await a_check(store, both)
    await store.record_ping(ping(pinged, received=now - 1))

    paused = await a_check(store, both)
    await store.pause_check(paused.id, now - 10)

    deleted = await a_check(store, both)
    await store.record_ping(ping(deleted, received=now - 200))
    await store.delete_check(deleted.id)

    reminded = await a_check(store, both, reminder_every=60.0)
    await store.record_ping(ping(reminded, "fail", received=now - 90))

    # Linked to ops alone for its first reminder, which is still waiting.
    reminded_again = await a_check(store, [ops], reminder_every=60.0)
    await store.record_ping(ping(reminded_again, "fail", received=now - 200))
    await store.sweep([Due(reminded_again.id)], now - 120)
    await store.set_check_channels(reminded_again.id, [ops.id, dev.id])

    offline = await a_check(store, both, period=60, grace=30)
    await store.record_ping(ping(offline, received=now - 200))

    unlinked = await a_check(store, [], period=60, grace=30)
    await store.record_ping(ping(unlinked, received=now - 200))

    return Mixed(
        now,
        late,
        pinged,
        paused,
        deleted,
        reminded,
        reminded_again,
        offline,
        unlinked,
        ops,
        dev,
    )


async def outbox(settings: Settings) -> list[tuple[str, int | None, str, str]]:
    """Kind, flip id, check and channel of every delivery, in order."""
    rows = await fetch(
        url_of(settings),
        "SELECT kind, flip_id, check_id, channel_id FROM deliveries ORDER BY id",
    )
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def by_check(outcomes: list[SweepOutcome]) -> dict[str, SweepOutcome]:
    found = {outcome.check_id: outcome for outcome in outcomes}
    assert len(found) == len(outcomes), "one outcome per check"
    return found


async def test_one_sweep_settles_every_kind_of_due_check(store: Store) -> None:
    checks = await mixed(store)

    outcomes = by_check(await store.sweep(checks.due(), checks.now))

    assert checks.deleted.id not in outcomes
    for check in checks.late:
        flip = outcomes[check.id].flip
        assert flip is not None and flip.id is not None
        assert (flip.new_status, flip.reason) == (DOWN, MISSED)
        assert outcomes[check.id].notify and outcomes[check.id].deadline is None
    pinged = outcomes[checks.pinged.id]
    assert pinged.flip is None and not pinged.notify
    assert pinged.deadline is not None and pinged.deadline > checks.now
    paused = outcomes[checks.paused.id]
    assert (paused.flip, paused.deadline, paused.notify) == (None, None, False)
    reminded = outcomes[checks.reminded.id]
    assert reminded.flip is None and reminded.notify
    assert reminded.deadline is not None and reminded.deadline > checks.now
    reminded_again = outcomes[checks.reminded_again.id]
    assert reminded_again.flip is None and reminded_again.notify
    offline = outcomes[checks.offline.id].flip
    assert offline is not None and offline.reason == MISSED_OFFLINE
    assert offline.at == checks.now - 50
    assert (offline.offline_from, offline.offline_until) == (
        checks.now - 300,
        checks.now - 80,
    )
    unlinked = outcomes[checks.unlinked.id]
    assert unlinked.flip is not None and not unlinked.notify


async def test_a_sweep_writes_one_delivery_per_channel_of_each_message_owed(
    store: Store, settings: Settings
) -> None:
    checks = await mixed(store)
    before = await outbox(settings)

    outcomes = by_check(await store.sweep(checks.due(), checks.now))

    written = (await outbox(settings))[len(before) :]
    channels = sorted([checks.ops.id, checks.dev.id])
    expected = []
    for check in [*checks.late, checks.offline]:
        flip = outcomes[check.id].flip
        assert flip is not None
        expected += [(DOWN_ALERT, flip.id, check.id, c) for c in channels]
    expected += [(REMINDER, None, checks.reminded.id, c) for c in channels]
    # Its reminder still waiting on ops is enough there.
    expected.append((REMINDER, None, checks.reminded_again.id, checks.dev.id))
    assert sorted(written, key=str) == sorted(expected, key=str)


async def test_each_alert_of_a_sweep_names_its_own_flip_and_check(
    store: Store, settings: Settings
) -> None:
    checks = await mixed(store)

    outcomes = await store.sweep(checks.due(), checks.now)

    flips = {o.flip.id: o.check_id for o in outcomes if o.flip is not None}
    rows = await fetch(
        url_of(settings),
        "SELECT flip_id, body FROM deliveries WHERE kind = ?",
        DOWN_ALERT,
    )
    assert rows
    for flip_id, body in rows:
        if flip_id in flips:
            assert f"Flip: #{flip_id}\n" in body
            assert f"Check id: {flips[flip_id]}" in body
            assert "it ran" in body or flips[flip_id] == checks.offline.id


async def test_a_flip_is_written_once_however_often_its_check_is_swept(
    store: Store, settings: Settings
) -> None:
    checks = await mixed(store)
    due = checks.due()

    # Two sweeps of the same checks at once, as two workers would, then again.
    first, second = await asyncio.gather(
        store.sweep(due, checks.now), store.sweep(due, checks.now)
    )
    third = await store.sweep(due, checks.now + 1)

    flipped = [o.check_id for o in [*first, *second, *third] if o.flip is not None]
    assert sorted(flipped) == sorted(
        [c.id for c in checks.late] + [checks.offline.id, checks.unlinked.id]
    )
    rows = await fetch(
        url_of(settings),
        "SELECT check_id, count(*) FROM flips WHERE new_status = ? GROUP BY check_id",
        DOWN,
    )
    assert all(count == 1 for _, count in rows)
    kinds = [
        (kind, check, channel) for kind, _, check, channel in await outbox(settings)
    ]
    alerts = [entry for entry in kinds if entry[0] == DOWN_ALERT]
    assert len(alerts) == len(set(alerts))


async def test_a_ping_stored_before_the_sweep_keeps_its_check_up(
    store: Store, settings: Settings
) -> None:
    checks = await mixed(store)
    late = checks.late[0]
    await store.record_ping(ping(late, received=checks.now))

    outcomes = by_check(await store.sweep(checks.due(), checks.now))

    assert outcomes[late.id].flip is None
    assert outcomes[late.id].deadline == checks.now + 90
    stored = await store.get_check(late.id)
    assert stored is not None and stored.status == "up"
    assert not [row for row in await outbox(settings) if row[2] == late.id]
