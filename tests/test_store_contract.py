"""The store contract, on SQLite and on a real PostgreSQL alike.

Every test here runs once per backend (the ``store`` fixture of conftest). What
only one backend can show lives in ``test_store_sqlite.py`` and
``test_store_postgres.py``; migrations and the schema in ``test_migrations.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from serverlord.channels import (
    DOWN_ALERT,
    REMINDER,
    TEST,
    UP_ALERT,
    AttemptResult,
    Channel,
    Delivery,
    Digests,
)
from serverlord.checks import DOWN, UP, Check
from serverlord.config import Settings
from serverlord.pings import Ping
from serverlord.schedules import Schedule
from serverlord.store import CheckNotFoundError, ConflictError, Store, open_store
from serverlord.store.base import PINGS_KEPT, ChannelNotFoundError, Due
from serverlord.store.sqlite import SqliteStore
from serverlord.store.writes import CLAIM_WINDOW, PRUNE_EVERY
from tests.database import fetch, is_postgres, url_of

HOOK = "json://127.0.0.1:9/hook"


def new_check(period: float = 60, grace: float = 30, **fields: object) -> Check:
    return Check(
        id=str(uuid.uuid4()),
        name="backup",
        schedule=Schedule.simple(period),
        grace=grace,
        created=time.time(),
        **fields,  # type: ignore[arg-type]
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


async def a_channel(store: Store, name: str = "hook") -> Channel:
    channel = Channel(str(uuid.uuid4()), name, HOOK, "json", HOOK, time.time())
    await store.add_channel(channel)
    return channel


async def a_check(store: Store, channels: list[Channel], **fields: object) -> Check:
    check = new_check(**fields)
    await store.add_check(check)
    await store.set_check_channels(check.id, [c.id for c in channels])
    return check


async def claim(
    store: Store, crowded: list[str] | None = None, per_channel: int = 8
) -> list[Delivery]:
    now = time.time() + 1
    return await store.claim_deliveries(now, 100, 60, crowded or [], per_channel)


async def outbox(settings: Settings, check: Check) -> list[tuple[str, int, str]]:
    """Kind, flip id and channel of each delivery written for the check."""
    rows = await fetch(
        url_of(settings),
        "SELECT kind, flip_id, channel_id FROM deliveries WHERE check_id = ? "
        "ORDER BY id",
        check.id,
    )
    return [(row[0], row[1], row[2]) for row in rows]


class Probe:
    """What the database itself sees of the store's writes.

    ``transactions`` counts the transactions that stored the check's pings: on
    PostgreSQL the distinct ``xmin`` of its rows, on SQLite the COMMITs of the
    writer's connection since the probe was made (the tests write nothing else
    meanwhile). ``holding_writes`` makes the writer wait, so that what is sent
    meanwhile queues up as one batch.
    """

    def __init__(self, store: Store, url: str) -> None:
        self.url = url
        self.commits = 0
        self._sqlite: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        if isinstance(store, SqliteStore):
            assert store._writer is not None
            self._sqlite = store._writer.conn
            self._sqlite.set_trace_callback(self._seen)

    def _seen(self, statement: str) -> None:
        with self._lock:
            if statement == "COMMIT":
                self.commits += 1

    def stop(self) -> None:
        if self._sqlite is not None:
            self._sqlite.set_trace_callback(None)

    async def transactions(self, check: Check) -> int:
        if self._sqlite is not None:
            return self.commits
        rows = await fetch(
            self.url,
            "SELECT count(DISTINCT xmin::text) FROM pings WHERE check_id = ?",
            check.id,
        )
        return int(rows[0][0])

    @contextlib.asynccontextmanager
    async def holding_writes(self, check: Check) -> AsyncIterator[None]:
        if not is_postgres(self.url):
            # Another connection holds the write lock: the writer waits in BEGIN.
            path = self.url.removeprefix("sqlite:///")
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            try:
                yield
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            return
        # Another connection holds the check's row: the writer waits on it.
        conn = await asyncpg.connect(self.url)
        try:
            async with conn.transaction():
                await conn.execute(
                    "SELECT 1 FROM checks WHERE id = $1 FOR UPDATE", check.id
                )
                yield
                # Leaving the block commits: the lock is released either way.
        finally:
            await conn.close()


# Group commit and durability


async def test_concurrent_pings_are_committed_in_fewer_transactions_than_pings(
    store: Store, settings: Settings
) -> None:
    check = new_check()
    await store.add_check(check)
    probe = Probe(store, url_of(settings))

    try:
        pings = [store.record_ping(ping(check)) for _ in range(200)]
        outcomes = await asyncio.gather(*pings)
        transactions = await probe.transactions(check)
    finally:
        probe.stop()

    assert len(outcomes) == 200
    assert 1 <= transactions <= 20
    stored = await store.get_check(check.id)
    assert stored is not None and stored.n_pings == 200
    numbers = sorted(p.n for p in await store.recent_pings(check.id, 1000))
    assert numbers[-1] == 200 and len(set(numbers)) == len(numbers)
    assert len(numbers) == min(200, PINGS_KEPT)


async def test_an_observer_is_told_of_every_group_commit_and_its_operations(
    store: Store,
) -> None:
    check = new_check()
    await store.add_check(check)
    commits: list[tuple[int, float, bool]] = []
    store.observe_commits(lambda size, seconds, ok: commits.append((size, seconds, ok)))

    await asyncio.gather(*(store.record_ping(ping(check)) for _ in range(50)))
    store.observe_commits(None)
    await store.record_ping(ping(check))

    assert sum(size for size, _, _ in commits) == 50
    assert all(ok and 0 <= seconds < 60 for _, seconds, ok in commits)


async def test_checks_are_counted_by_stored_status(store: Store) -> None:
    up, down, new = new_check(), new_check(), new_check()
    for check in (up, down, new):
        await store.add_check(check)
    await store.record_ping(ping(up))
    await store.record_ping(ping(down, "fail"))

    assert await store.count_by_status() == {"up": 1, "down": 1, "new": 1}


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
    assert stored is not None and stored.n_pings == 1 and stored.status == UP


async def test_a_committed_ping_survives_closing_the_store(settings: Settings) -> None:
    first = open_store(settings)
    await first.open()
    check = new_check()
    await first.add_check(check)
    await first.record_ping(ping(check))
    await first.close()

    rows = await fetch(
        url_of(settings), "SELECT count(*) FROM pings WHERE check_id = ?", check.id
    )

    assert rows == [(1,)]


async def test_an_unknown_check_fails_alone_and_its_batch_still_commits(
    store: Store, settings: Settings
) -> None:
    check = new_check()
    await store.add_check(check)
    stranger = new_check()  # never added
    probe = Probe(store, url_of(settings))

    try:
        async with probe.holding_writes(check):
            first = asyncio.ensure_future(store.record_ping(ping(check)))
            await asyncio.sleep(0.1)
            batch = asyncio.gather(
                store.record_ping(ping(check, body=b"before")),
                store.record_ping(ping(stranger)),
                store.record_ping(ping(check, body=b"after")),
                store.record_ping(
                    Ping(check_id="not a uuid", received=time.time(), kind="success")
                ),
                return_exceptions=True,
            )
            await asyncio.sleep(0.1)
        await first
        before, unknown, after, malformed = await batch
        transactions = await probe.transactions(check)
    finally:
        probe.stop()

    assert isinstance(unknown, CheckNotFoundError)
    assert isinstance(malformed, CheckNotFoundError)
    assert not isinstance(before, BaseException)
    assert not isinstance(after, BaseException)
    bodies = [p.body for p in await store.recent_pings(check.id, 10)]
    assert bodies == [b"after", b"before", b""]
    assert await store.recent_pings(stranger.id, 10) == []
    assert transactions == 2


async def test_a_ping_to_an_unknown_check_raises_check_not_found(store: Store) -> None:
    with pytest.raises(CheckNotFoundError):
        await store.record_ping(ping(new_check()))


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


async def test_concurrent_pings_of_a_few_checks_count_and_prune_as_one_by_one(
    store: Store,
) -> None:
    # Batches full of pings of the same checks: each ping sees the ones
    # before it, as it would alone.
    checks = [new_check() for _ in range(3)]
    for check in checks:
        await store.add_check(check)
    each = PINGS_KEPT + 2 * PRUNE_EVERY
    rounds = 26
    assert each % rounds == 0

    for _ in range(rounds):
        outcomes = await asyncio.gather(
            *(
                store.record_ping(ping(check))
                for _ in range(each // rounds)
                for check in checks
            )
        )
        assert {outcome.check_id for outcome in outcomes} == {c.id for c in checks}

    for check in checks:
        kept = [p.n for p in await store.recent_pings(check.id, 10 * each)]
        assert sorted(kept) == list(range(each - PINGS_KEPT + 1, each + 1))
        stored = await store.get_check(check.id)
        assert stored is not None and stored.n_pings == each and stored.status == UP


# Flips, sweeps and edits


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


async def test_pings_of_one_batch_flip_a_check_in_their_order(
    store: Store, settings: Settings
) -> None:
    check = new_check()
    await store.add_check(check)
    await store.record_ping(ping(check))
    channel = await a_channel(store)
    await store.set_check_channels(check.id, [channel.id])

    outcomes = await asyncio.gather(
        store.record_ping(ping(check, "fail", body=b"disk full")),
        store.record_ping(ping(check)),
        store.record_ping(ping(check, "fail", exit_status=2)),
    )

    flips = [outcome.flip for outcome in outcomes]
    assert [f.new_status if f else None for f in flips] == [DOWN, UP, DOWN]
    assert all(outcome.notify for outcome in outcomes)
    ids = [f.id for f in flips if f is not None and f.id is not None]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert await outbox(settings, check) == [
        (DOWN_ALERT, ids[0], channel.id),
        (UP_ALERT, ids[1], channel.id),
        (DOWN_ALERT, ids[2], channel.id),
    ]
    [(first,)] = await fetch(
        url_of(settings), "SELECT body FROM deliveries WHERE flip_id = ?", ids[0]
    )
    assert f"Flip: #{ids[0]}" in first and "disk full" in first


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

    [(check_id, shard, deadline, grace)] = await store.load_deadlines()

    assert (check_id, shard, grace) == (check.id, check.shard, 30)
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


async def test_many_checks_are_added_at_once_with_their_channels_and_changes(
    store: Store,
) -> None:
    channels = [await a_channel(store, "ops"), await a_channel(store, "dev")]
    cursor = await store.last_change()
    checks = [new_check() for _ in range(50)]

    await store.add_checks(checks, [channels[0].id, channels[1].id, channels[0].id])

    stored = {check.id: check for check in await store.list_checks()}
    assert all(stored[check.id] == check for check in checks)
    for check in checks[:3]:
        assert sorted(await store.check_channels(check.id)) == sorted(
            c.id for c in channels
        )
    _, changed = await store.changes_since(cursor)
    assert changed == [check.id for check in checks]


async def test_adding_many_checks_is_all_or_nothing(store: Store) -> None:
    channel = await a_channel(store)
    existing = new_check()
    await store.add_check(existing)
    before = await store.count_checks()

    with pytest.raises(ConflictError):
        await store.add_checks([new_check(), existing, new_check()], [channel.id])
    with pytest.raises(ChannelNotFoundError):
        await store.add_checks([new_check()], [channel.id, str(uuid.uuid4())])

    assert await store.count_checks() == before


# The outbox


async def test_a_flip_writes_one_delivery_per_linked_channel(
    store: Store, settings: Settings
) -> None:
    check = new_check(period=60, grace=30)
    await store.add_check(check)
    channels = [await a_channel(store, "ops"), await a_channel(store, "dev")]
    await store.set_check_channels(check.id, [c.id for c in channels])
    await store.record_ping(ping(check, received=time.time() - 200, body=b"ok"))

    [outcome] = await store.sweep([Due(check.id)], time.time())

    assert outcome.flip is not None and outcome.notify
    assert sorted(await outbox(settings, check)) == sorted(
        (DOWN_ALERT, outcome.flip.id, channel.id) for channel in channels
    )
    assert await store.next_delivery_at() is not None


async def test_a_sweep_past_a_reminder_writes_a_reminder(
    store: Store, settings: Settings
) -> None:
    check = new_check(reminder_every=60.0)
    await store.add_check(check)
    channel = await a_channel(store)
    await store.set_check_channels(check.id, [channel.id])
    await store.record_ping(ping(check, "fail", received=time.time() - 90))

    [outcome] = await store.sweep([Due(check.id)], time.time())

    assert outcome.flip is None and outcome.notify
    kinds = [kind for kind, _, _ in await outbox(settings, check)]
    assert kinds == [DOWN_ALERT, REMINDER]


async def test_each_delivery_is_claimed_by_exactly_one_of_two_claimers(
    store: Store, settings: Settings
) -> None:
    channel = await a_channel(store)
    checks = [new_check() for _ in range(30)]
    for each in checks:
        await store.add_check(each)
        await store.set_check_channels(each.id, [channel.id])
        await store.record_ping(ping(each))
        await store.record_ping(ping(each, "fail"))

    other = open_store(settings)
    await other.open()
    try:
        now = time.time() + 1
        claims = await asyncio.gather(
            *(s.claim_deliveries(now, 7, 60) for s in [store, other] * 3)
        )
        # A claimer passes over rows another holds, so some may be left.
        while more := await other.claim_deliveries(now, 100, 60):
            claims.append(more)
    finally:
        await other.close()

    claimed = [d.id for batch in claims for d in batch]
    assert len(claimed) == len(set(claimed)) == 30
    assert await store.claim_deliveries(now, 100, 60) == []
    assert all(d.channel_url == channel.url for batch in claims for d in batch)
    assert all(d.attempts == 1 for batch in claims for d in batch)


async def test_a_claim_runs_out_with_its_lease_and_an_attempt_is_recorded(
    store: Store,
) -> None:
    channel = await a_channel(store, "ops")
    check = await a_check(store, [channel])
    await store.record_ping(ping(check))
    await store.record_ping(ping(check, "fail"))
    now = time.time() + 1

    [first] = await store.claim_deliveries(now, 10, 30)
    assert await store.claim_deliveries(now + 10, 10, 30) == []
    [again] = await store.claim_deliveries(now + 31, 10, 30)
    assert (again.id, again.attempts) == (first.id, 2)

    failed = AttemptResult(now + 32, False, "refused", 0.01, next_attempt=now + 40)
    await store.finish_attempt(again, failed)
    assert await store.next_delivery_at() == pytest.approx(now + 40)
    [third] = await store.claim_deliveries(now + 41, 10, 30)
    assert await store.release_claims() == 1
    [fourth] = await store.claim_deliveries(now + 41, 10, 30)
    await store.finish_attempt(fourth, AttemptResult(now + 42, True, None, 0.02, None))

    assert third.id == fourth.id == first.id
    attempts = await store.recent_attempts(check.id, 10)
    assert [(bool(a["ok"]), a["error"]) for a in attempts] == [
        (True, None),
        (False, "refused"),
    ]
    assert attempts[0]["channel_name"] == "ops"
    assert await store.next_delivery_at() is None
    stored = await store.get_channel(channel.id)
    assert stored is not None and stored.last_ok is True


def owed(
    check: Check | None,
    channel: Channel,
    created: float,
    kind: str = DOWN_ALERT,
    body: str = "",
) -> Delivery:
    """A message owed to the channel, as a flip (or a channel test) makes one."""
    check_id = None if check is None else check.id
    return Delivery(
        0, None, check_id, channel.id, channel.url, kind, kind, body, 0, created
    )


async def test_a_channel_failing_with_a_backlog_holds_back_no_other_channel(
    store: Store,
) -> None:
    failing, working = await a_channel(store, "failing"), await a_channel(store)
    flapping, other = new_check(), new_check()
    now = time.time()
    # A flapping check's alerts pile up behind the first, which fails: more
    # of them are due than a claim looks at.
    await store.add_checks([flapping], [failing.id])
    await store.add_checks([other], [working.id])
    await store.enqueue([owed(flapping, failing, now - 10)])
    [head] = await store.claim_deliveries(now, 1, 30)
    retry = AttemptResult(now, False, "error=500", 0.01, next_attempt=now + 60)
    await store.finish_attempt(head, retry)
    backlog = [owed(flapping, failing, now - 5) for _ in range(CLAIM_WINDOW + 100)]
    await store.enqueue(backlog)
    await store.enqueue([owed(other, working, now)])

    claimed = await store.claim_deliveries(now + 1, 10, 30)

    assert [d.check_id for d in claimed] == [other.id]
    await store.finish_attempts(claimed, AttemptResult(now + 1, True, None, 0.01, None))
    # Nothing else is due before the failed one is tried again.
    assert await store.next_delivery_at() == pytest.approx(now + 60)
    [again] = await store.claim_deliveries(now + 61, 1, 30)
    assert again.id == head.id


async def test_a_channel_test_is_enqueued_without_a_check(store: Store) -> None:
    channel = await a_channel(store)
    delivery = owed(None, channel, time.time(), TEST, "hello")

    [delivery_id] = await store.enqueue([delivery])
    [claimed] = await store.claim_deliveries(time.time() + 1, 10, 30)

    assert claimed.id == delivery_id == delivery.id
    assert (claimed.kind, claimed.check_id, claimed.body) == (TEST, None, "hello")
    await store.delete_channel(channel.id)
    assert await store.list_channels() == []


async def test_a_channel_hears_of_a_checks_flips_in_order(store: Store) -> None:
    channel = await a_channel(store)
    check = await a_check(store, [channel])
    await store.record_ping(ping(check, "fail"))
    await store.record_ping(ping(check))

    first = await claim(store)
    second = await claim(store)

    assert [d.kind for d in first] == [DOWN_ALERT]
    assert second == []


async def test_a_crowded_channel_gets_nothing_and_others_at_most_their_share(
    store: Store,
) -> None:
    slow, fine = await a_channel(store, "slow"), await a_channel(store, "fine")
    for _ in range(5):
        await store.record_ping(ping(await a_check(store, [slow, fine]), "fail"))

    taken = await claim(store, crowded=[slow.id], per_channel=3)

    assert {d.channel_id for d in taken} == {fine.id}
    assert len(taken) == 3


async def test_alerts_are_claimed_before_reminders(store: Store) -> None:
    channel = await a_channel(store)
    reminded = await a_check(store, [channel])
    await store.enqueue(
        [Delivery(0, None, reminded.id, channel.id, "", REMINDER, "t", "b", 0, 0.0)]
    )
    await store.record_ping(ping(await a_check(store, [channel]), "fail"))

    taken = await claim(store, per_channel=1)

    assert [d.kind for d in taken] == [DOWN_ALERT]


async def test_pending_reminders_are_dropped_when_the_check_comes_back_up(
    store: Store,
) -> None:
    channel = await a_channel(store)
    check = await a_check(store, [channel], reminder_every=1.0)
    await store.record_ping(ping(check, "fail"))
    await store.enqueue(
        [Delivery(0, None, check.id, channel.id, "", REMINDER, "t", "b", 0, 0.0)]
    )

    await store.record_ping(ping(check))

    kinds = sorted(d.kind for d in await claim(store) + await claim(store))
    assert REMINDER not in kinds


async def test_finishing_a_delivery_of_a_removed_channel_spares_its_batch(
    store: Store,
) -> None:
    channel = await a_channel(store)
    check = await a_check(store, [channel])
    await store.record_ping(ping(check, "fail"))
    [delivery] = await claim(store)
    await store.delete_channel(channel.id)
    result = AttemptResult(time.time(), True, None, 0.01, None)

    await asyncio.gather(
        store.finish_attempt(delivery, result), store.record_ping(ping(check))
    )

    stored = await store.get_check(check.id)
    assert stored is not None and stored.status == UP


async def _down_alerts(store: Store, channel: Channel, count: int) -> list[Check]:
    """``count`` checks linked to ``channel``, each with a down alert waiting."""
    checks = [await a_check(store, [channel]) for _ in range(count)]
    await asyncio.gather(*(store.record_ping(ping(c)) for c in checks))
    await asyncio.gather(*(store.record_ping(ping(c, "fail")) for c in checks))
    return checks


async def test_a_channel_in_a_storm_is_claimed_a_digest_at_a_time(
    store: Store,
) -> None:
    stormy, quiet = await a_channel(store, "stormy"), await a_channel(store, "quiet")
    await _down_alerts(store, stormy, 50)
    await _down_alerts(store, quiet, 3)
    now = time.time() + 1
    rule = Digests(storm_at=17, per_digest=20)

    taken = await store.claim_deliveries(now, 100, 60, [], 2, rule)

    by_channel = Counter(d.channel_id for d in taken)
    # Two messages each: two digests of 20 for the storm, two single alerts.
    assert by_channel == {stormy.id: 40, quiet.id: 2}


async def test_a_claim_counts_messages_not_deliveries(store: Store) -> None:
    stormy = await a_channel(store, "stormy")
    await _down_alerts(store, stormy, 30)
    quiet = await a_channel(store, "quiet")
    await _down_alerts(store, quiet, 5)
    now = time.time() + 1
    rule = Digests(storm_at=17, per_digest=20)

    # The storm's alerts fell due first: its first digest is the one message.
    first = await store.claim_deliveries(now, 1, 60, [], 16, rule)
    rest = await store.claim_deliveries(now, 100, 60, [], 16, rule)

    assert {d.channel_id for d in first} == {stormy.id}
    assert len(first) == 20
    assert Counter(d.channel_id for d in rest) == {stormy.id: 10, quiet.id: 5}


async def test_without_a_digest_rule_no_channel_is_in_a_storm(store: Store) -> None:
    channel = await a_channel(store)
    await _down_alerts(store, channel, 30)

    taken = await claim(store, per_channel=4)

    assert len(taken) == 4


async def test_one_write_records_the_attempt_of_every_delivery_in_a_digest(
    store: Store,
) -> None:
    channel = await a_channel(store, "ops")
    checks = await _down_alerts(store, channel, 20)
    rule = Digests(storm_at=17, per_digest=40)
    now = time.time() + 1
    digest = await store.claim_deliveries(now, 10, 60, [], 16, rule)
    assert len(digest) == 20

    failed = AttemptResult(now + 1, False, "error=500", 0.01, next_attempt=now + 5)
    await store.finish_attempts(digest, failed)
    assert await store.next_delivery_at() == pytest.approx(now + 5)
    again = await store.claim_deliveries(now + 6, 10, 60, [], 16, rule)
    assert sorted(d.id for d in again) == sorted(d.id for d in digest)
    assert {d.attempts for d in again} == {2}
    await store.finish_attempts(again, AttemptResult(now + 7, True, None, 0.01, None))

    for check in checks:
        attempts = await store.recent_attempts(check.id, 10)
        assert [(bool(a["ok"]), a["state"]) for a in attempts] == [
            (True, "sent"),
            (False, "sent"),
        ]
    assert await store.next_delivery_at() is None
    shown = await store.get_channel(channel.id)
    assert shown is not None and shown.last_ok is True
