"""The store contract on a real PostgreSQL: the contract tests written for SQLite,
then what only PostgreSQL shows: batches, row locks, migrations, claims."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from serverlord.channels import DOWN_ALERT, REMINDER, UP_ALERT, AttemptResult, Channel
from serverlord.checks import DOWN, UP, Check
from serverlord.pings import Ping
from serverlord.store import CheckNotFoundError, StoreUnavailableError
from serverlord.store.base import Due
from serverlord.store.postgres import PostgresStore, masked, migrate
from serverlord.store.queries import load_migrations
from tests import test_outbox as outbox_contract
from tests import test_store_sqlite as contract
from tests import test_sweeper as sweeper
from tests.test_store_sqlite import new_check, ping

if TYPE_CHECKING:
    # Imported by pytest as a plugin below; importing it here first would keep
    # pytest from rewriting its asserts.
    from tests.postgres import Cluster


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


# The contract tests that need nothing but a store run here unchanged, on the
# ``store`` fixture above.
test_a_ping_to_an_unknown_check_raises_check_not_found = (
    contract.test_a_ping_to_an_unknown_check_raises_check_not_found
)
test_pings_beyond_pings_kept_are_pruned = (
    contract.test_pings_beyond_pings_kept_are_pruned
)
test_pings_record_a_flip_for_each_status_change = (
    contract.test_pings_record_a_flip_for_each_status_change
)
test_a_sweep_flips_a_late_check_at_its_deadline_once = (
    contract.test_a_sweep_flips_a_late_check_at_its_deadline_once
)
test_a_sweep_does_not_flip_a_check_whose_deadline_moved = (
    contract.test_a_sweep_does_not_flip_a_check_whose_deadline_moved
)
test_edits_are_recorded_as_changes_for_a_running_server = (
    contract.test_edits_are_recorded_as_changes_for_a_running_server
)
test_pause_and_resume_record_flips = contract.test_pause_and_resume_record_flips
test_resuming_a_check_that_is_not_paused_is_a_conflict = (
    contract.test_resuming_a_check_that_is_not_paused_is_a_conflict
)
test_changing_an_unknown_check_raises_check_not_found = (
    contract.test_changing_an_unknown_check_raises_check_not_found
)
test_removing_a_check_removes_its_pings_and_flips = (
    contract.test_removing_a_check_removes_its_pings_and_flips
)
test_deadlines_and_heartbeat_are_read_back = (
    contract.test_deadlines_and_heartbeat_are_read_back
)
test_adding_a_check_twice_is_a_conflict_that_spares_its_batch = (
    contract.test_adding_a_check_twice_is_a_conflict_that_spares_its_batch
)

test_a_channel_hears_of_a_checks_flips_in_order = (
    outbox_contract.test_a_channel_hears_of_a_checks_flips_in_order
)
test_a_crowded_channel_gets_nothing_and_others_at_most_their_share = (
    outbox_contract.test_a_crowded_channel_gets_nothing_and_others_at_most_their_share
)
test_alerts_are_claimed_before_reminders = (
    outbox_contract.test_alerts_are_claimed_before_reminders
)
test_pending_reminders_are_dropped_when_the_check_comes_back_up = (
    outbox_contract.test_pending_reminders_are_dropped_when_the_check_comes_back_up
)
test_finishing_a_delivery_of_a_removed_channel_spares_its_batch = (
    outbox_contract.test_finishing_a_delivery_of_a_removed_channel_spares_its_batch
)

# Sweepers of a live server on PostgreSQL.
test_a_missed_deadline_flips_the_check_down_once_dated_at_the_deadline = (
    sweeper.test_a_missed_deadline_flips_the_check_down_once_dated_at_the_deadline
)
test_a_run_that_outlives_its_max_runtime_or_grace_goes_down = (
    sweeper.test_a_run_that_outlives_its_max_runtime_or_grace_goes_down
)


async def transactions_of(db: asyncpg.Connection, check: Check) -> int:
    """How many transactions wrote the check's stored pings, as PostgreSQL saw it."""
    value = await db.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM pings WHERE check_id = $1", check.id
    )
    return int(value)


async def add_channel(store: PostgresStore, name: str = "ops") -> Channel:
    channel = Channel(
        id=str(uuid.uuid4()),
        name=name,
        url="json://127.0.0.1:9/",
        kind="json",
        masked_url="json://127.0.0.1:9/",
        created=time.time(),
    )
    await store.add_channel(channel)
    return channel


async def outbox(db: asyncpg.Connection, check: Check) -> list[tuple[str, int, str]]:
    rows = await db.fetch(
        "SELECT kind, flip_id, channel_id FROM deliveries WHERE check_id = $1 "
        "ORDER BY id",
        check.id,
    )
    return [(row[0], row[1], row[2]) for row in rows]


# Group commit and durability


async def test_concurrent_pings_are_committed_in_fewer_transactions_than_pings(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    check = new_check()
    await store.add_check(check)
    batches = store.batches

    outcomes = await asyncio.gather(
        *(store.record_ping(ping(check)) for _ in range(80))
    )

    assert len(outcomes) == 80
    assert 1 <= await transactions_of(db, check) <= 8
    assert store.batches - batches <= 8
    stored = await store.get_check(check.id)
    assert stored is not None and stored.n_pings == 80
    numbers = sorted(p.n for p in await store.recent_pings(check.id, 1000))
    assert numbers == list(range(1, 81))


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


async def test_a_ping_is_readable_from_a_fresh_store_as_soon_as_its_await_returns(
    store: PostgresStore, postgres_url: str
) -> None:
    check = new_check()
    await store.add_check(check)

    await store.record_ping(ping(check, body=b"nightly backup done"))

    second = PostgresStore(postgres_url)
    await second.open()
    try:
        pings = await second.recent_pings(check.id, 10)
        stored = await second.get_check(check.id)
    finally:
        await second.close()
    assert [p.body for p in pings] == [b"nightly backup done"]
    assert stored is not None and stored.n_pings == 1 and stored.status == UP


async def test_a_committed_ping_survives_closing_the_store(
    postgres_url: str, db: asyncpg.Connection
) -> None:
    first = PostgresStore(postgres_url)
    await first.open()
    check = new_check()
    await first.add_check(check)
    await first.record_ping(ping(check))
    await first.close()

    count = await db.fetchval(
        "SELECT count(*) FROM pings WHERE check_id = $1", check.id
    )
    assert count == 1


async def test_an_unknown_check_fails_alone_and_its_batch_still_commits(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    check = new_check()
    await store.add_check(check)
    stranger = new_check()  # never added

    # Hold the check's row so that the writer waits on it and the next three
    # pings queue up behind it as one batch.
    blocker = db.transaction()
    await blocker.start()
    await db.execute("SELECT 1 FROM checks WHERE id = $1 FOR UPDATE", check.id)
    first = asyncio.ensure_future(store.record_ping(ping(check)))
    await asyncio.sleep(0.1)
    batch = asyncio.gather(
        store.record_ping(ping(check, body=b"before")),
        store.record_ping(ping(stranger)),
        store.record_ping(ping(check, body=b"after")),
        store.record_ping(
            Ping(check_id="not a check id", received=time.time(), kind="success")
        ),
        return_exceptions=True,
    )
    await asyncio.sleep(0.1)
    await blocker.rollback()
    await first
    before, unknown, after, malformed = await batch

    assert isinstance(unknown, CheckNotFoundError)
    assert isinstance(malformed, CheckNotFoundError)
    assert not isinstance(before, BaseException)
    assert not isinstance(after, BaseException)
    bodies = [p.body for p in await store.recent_pings(check.id, 10)]
    assert bodies == [b"after", b"before", b""]
    assert await store.recent_pings(stranger.id, 10) == []
    assert await transactions_of(db, check) == 2


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


async def test_pings_of_one_batch_flip_a_check_in_their_order(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    check = new_check()
    await store.add_check(check)
    await store.record_ping(ping(check))
    channel = await add_channel(store)
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
    assert await outbox(db, check) == [
        (DOWN_ALERT, ids[0], channel.id),
        (UP_ALERT, ids[1], channel.id),
        (DOWN_ALERT, ids[2], channel.id),
    ]
    first = await db.fetchval("SELECT body FROM deliveries WHERE flip_id = $1", ids[0])
    assert f"Flip: #{ids[0]}" in first and "disk full" in first


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


# Migrations


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    numbers = [number for number, _, _ in load_migrations("postgres")]
    assert numbers == list(range(1, len(numbers) + 1))


@pytest.fixture
async def empty_db(postgres_cluster: Cluster) -> AsyncIterator[str]:
    name = await postgres_cluster.create_empty_database()
    yield postgres_cluster.url(name)
    await postgres_cluster.drop_database(name)


async def test_migrations_applied_in_order_give_the_schema(empty_db: str) -> None:
    numbers = [number for number, _, _ in load_migrations("postgres")]
    conn = await asyncpg.connect(empty_db)
    try:
        assert await migrate(conn) == numbers
        assert await migrate(conn) == []
        recorded = [
            row[0]
            for row in await conn.fetch(
                "SELECT number FROM schema_migrations ORDER BY number"
            )
        ]
        tables = {
            row[0]
            for row in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'checks'"
        )
    finally:
        await conn.close()

    assert recorded == numbers
    assert tables == {
        "checks", "pings", "flips", "changes", "meta", "channels",
        "check_channels", "deliveries", "attempts", "schema_migrations",
        "users", "projects", "api_keys",
    }  # fmt: skip
    assert {"failure_threshold", "next_reminder", "version"} <= {
        row[0] for row in columns
    }


async def test_every_key_of_a_checks_data_leads_with_its_shard(
    db: asyncpg.Connection,
) -> None:
    # What Citus needs to distribute the schema by shard: every primary key
    # and every foreign key between distributed tables includes the column.
    reference = {
        "channels", "meta", "schema_migrations", "users", "projects", "api_keys",
    }  # fmt: skip
    keys = await db.fetch(
        "SELECT conrelid::regclass::text AS tbl, confrelid::regclass::text AS ref, "
        "contype, (SELECT array_agg(attname ORDER BY attnum) FROM pg_attribute "
        "  WHERE attrelid = conrelid AND attnum = ANY(conkey)) AS cols "
        "FROM pg_constraint WHERE contype IN ('p', 'f', 'u') "
        "AND connamespace = 'public'::regnamespace"
    )
    distributed = {row["tbl"] for row in keys} - reference
    assert distributed == {
        "checks", "pings", "flips", "changes", "check_channels", "deliveries",
        "attempts",
    }  # fmt: skip
    for row in keys:
        if row["tbl"] in reference or row["ref"] in reference:
            continue
        assert "shard" in row["cols"], (row["tbl"], row["contype"], row["cols"])


async def test_a_migration_that_fails_leaves_the_database_as_it_was(
    empty_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    [first, *_] = load_migrations("postgres")
    broken = (first[0] + 1, "broken", "CREATE TABLE half (x int); SELECT 1 / 0;")
    monkeypatch.setattr(
        "serverlord.store.postgres.load_migrations", lambda _: [first, broken]
    )
    conn = await asyncpg.connect(empty_db)
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await migrate(conn)
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
    finally:
        await conn.close()

    assert tables == 0


async def test_two_processes_migrating_at_once_apply_each_migration_once(
    empty_db: str,
) -> None:
    first = await asyncpg.connect(empty_db)
    second = await asyncpg.connect(empty_db)
    try:
        applied = await asyncio.gather(migrate(first), migrate(second))
        count = await first.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await first.close()
        await second.close()

    numbers = [number for number, _, _ in load_migrations("postgres")]
    assert sorted(applied[0] + applied[1]) == numbers
    assert count == len(numbers)


# The outbox


async def test_a_flip_writes_one_delivery_per_linked_channel_in_its_transaction(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    check = new_check(period=60, grace=30)
    await store.add_check(check)
    channels = [await add_channel(store, "ops"), await add_channel(store, "dev")]
    await store.set_check_channels(check.id, [c.id for c in channels])
    last = time.time() - 200
    await store.record_ping(ping(check, received=last, body=b"ok"))

    [outcome] = await store.sweep([Due(check.id)], time.time())

    assert outcome.flip is not None and outcome.notify
    rows = await db.fetch(
        "SELECT d.kind, d.flip_id, d.xmin::text AS d_xmin, f.xmin::text AS f_xmin "
        "FROM deliveries d JOIN flips f ON f.id = d.flip_id WHERE d.check_id = $1",
        check.id,
    )
    assert len(rows) == 2
    assert {row["kind"] for row in rows} == {DOWN_ALERT}
    assert {row["flip_id"] for row in rows} == {outcome.flip.id}
    assert all(row["d_xmin"] == row["f_xmin"] for row in rows)
    assert await store.next_delivery_at() is not None


async def test_a_sweep_past_a_reminder_writes_a_reminder(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    check = new_check()
    check.reminder_every = 60
    await store.add_check(check)
    channel = await add_channel(store)
    await store.set_check_channels(check.id, [channel.id])
    await store.record_ping(ping(check, "fail", received=time.time() - 90))

    [outcome] = await store.sweep([Due(check.id)], time.time())

    assert outcome.flip is None and outcome.notify
    assert [kind for kind, _, _ in await outbox(db, check)] == [DOWN_ALERT, REMINDER]


async def test_each_delivery_is_claimed_by_exactly_one_of_two_claimers(
    store: PostgresStore, postgres_url: str
) -> None:
    channel = await add_channel(store)
    checks = [new_check() for _ in range(30)]
    for each in checks:
        await store.add_check(each)
        await store.set_check_channels(each.id, [channel.id])
        await store.record_ping(ping(each))
        await store.record_ping(ping(each, "fail"))

    other = PostgresStore(postgres_url)
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
    store: PostgresStore,
) -> None:
    channel = await add_channel(store)
    check = new_check()
    await store.add_check(check)
    await store.set_check_channels(check.id, [channel.id])
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
    assert [(a["ok"], a["error"]) for a in attempts] == [
        (True, None),
        (False, "refused"),
    ]
    assert attempts[0]["channel_name"] == "ops"
    assert await store.next_delivery_at() is None
    stored = await store.get_channel(channel.id)
    assert stored is not None and stored.last_ok is True


async def test_a_channel_test_is_enqueued_without_a_check(
    store: PostgresStore,
) -> None:
    from serverlord.channels import TEST, Delivery

    channel = await add_channel(store)
    delivery = Delivery(
        id=0,
        flip_id=None,
        check_id=None,
        channel_id=channel.id,
        channel_url=channel.url,
        kind=TEST,
        title="TEST",
        body="hello",
        attempts=0,
        created=time.time(),
    )

    [delivery_id] = await store.enqueue([delivery])
    [claimed] = await store.claim_deliveries(time.time() + 1, 10, 30)

    assert claimed.id == delivery_id == delivery.id
    assert (claimed.kind, claimed.check_id, claimed.body) == (TEST, None, "hello")
    await store.delete_channel(channel.id)
    assert await store.list_channels() == []
