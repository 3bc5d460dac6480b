"""The embedded store: SQLite in WAL mode, written by one group-commit thread.

Every write is an operation queued to the writer thread (``sqlite_writer``),
which runs all operations waiting in one transaction and resolves their futures
only after COMMIT, so an acknowledged ping is durable and concurrent pings
share one fsync. Pings are recorded by ``sqlite_pings``, sweeps by
``sqlite_sweep``. Reads run on a second thread with its own connection, which WAL lets
proceed while the writer commits.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, TypeVar

from serverlord import checks as rules
from serverlord.channels import (
    AttemptResult,
    Channel,
    Delivery,
    Digests,
)
from serverlord.checks import Check, Flip
from serverlord.ownership import Ownership, SoleOwnership
from serverlord.pings import Ping
from serverlord.store import sqlite_sweep, writes
from serverlord.store.base import (
    ChannelNotFoundError,
    CheckNotFoundError,
    CommitObserver,
    ConflictError,
    Due,
    PingOutcome,
    SchemaBehindError,
    StoreUnavailableError,
    SweepOutcome,
    refuse_newer,
    schema_behind,
)
from serverlord.store.queries import Migration, load_migrations, load_queries
from serverlord.store.rows import (
    channel_from_row,
    check_from_row,
    check_to_row,
    checks_from_rows,
    delivery_from_row,
    flip_from_row,
    ping_from_row,
)
from serverlord.store.sqlite_pings import (
    PingWrite,
    insert_flip,
    load_check,
    save_state,
)
from serverlord.store.sqlite_projects import SqliteProjects
from serverlord.store.sqlite_writer import Writer, guarded

log = logging.getLogger(__name__)

Q = load_queries("sqlite")
T = TypeVar("T")

WAL_SWITCH_TIMEOUT = 5.0
"""Longest wait to switch a new database file to WAL mode."""


def make_private(path: Path) -> None:
    """Create the database's folder (0700) and file (0600) when missing.

    The file holds webhook secrets, keys' digests and job output; SQLite
    gives its -wal and -shm files the database file's mode.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))


def connect(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    if not path.exists():
        make_private(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    # Other processes (the CLI) write to the same file: wait for them briefly
    # instead of failing at once; first, since switching to WAL takes a lock.
    conn.execute("PRAGMA busy_timeout = 5000")
    _switch_to_wal(conn)
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    # While processes create a new file at once, SQLite may refuse the switch
    # at once instead of waiting (it would deadlock otherwise): try again. A
    # file in WAL mode already needs no lock for it.
    give_up = time.monotonic() + WAL_SWITCH_TIMEOUT
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > give_up:
                raise
        time.sleep(0.01)


def migrate(
    conn: sqlite3.Connection, migrations: list[Migration] | None = None
) -> list[int]:
    """Apply the migrations this database has not seen; return their numbers.

    All of them run in one transaction with the version stamp, so a process
    killed halfway leaves the database as it was; a second process starting at
    the same time waits for the lock and then finds nothing left to do.
    ``migrations`` defaults to all of the package's.
    """
    if migrations is None:
        migrations = load_migrations("sqlite")
    applied = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        refuse_newer(current, migrations)
        for number, name, sql in migrations:
            if number <= current:
                continue
            log.info(
                "applying migration %04d_%s",
                number,
                name,
                extra={"action": "migrate", "migration": number},
            )
            # executescript() would commit first: run statement by statement.
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number:d}")
            applied.append(number)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return applied


def pending_migrations(
    conn: sqlite3.Connection, migrations: list[Migration] | None = None
) -> list[Migration]:
    """The migrations this database has not seen, in order."""
    if migrations is None:
        migrations = load_migrations("sqlite")
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    refuse_newer(current, migrations)
    return [migration for migration in migrations if migration[0] > current]


def _statements(sql: str) -> list[str]:
    statements, pending = [], ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip() and not all(
        part.strip().startswith("--") or not part.strip()
        for part in pending.splitlines()
    ):
        statements.append(pending.strip())
    return statements


class SqliteStore(SqliteProjects):
    """The SQLite backend of the store contract."""

    def __init__(
        self, path: Path, *, synchronous: str = "FULL", auto_migrate: bool = True
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.auto_migrate = auto_migrate
        self.description = f"sqlite:///{path}"
        self._writer: Writer | None = None
        self._observer: CommitObserver | None = None
        self._lock: IO[str] | None = None
        self._reader: sqlite3.Connection | None = None
        self._reads = ThreadPoolExecutor(1, thread_name_prefix="serverlord-sqlite-read")

    async def open(self) -> None:
        if not self.auto_migrate and not self.path.exists():
            raise SchemaBehindError(
                "there is no database there yet: create it with "
                "`serverlord db migrate`, or let it be created on start with "
                "--auto-migrate true"
            )
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        conn = await asyncio.to_thread(connect, self.path, synchronous=self.synchronous)
        try:
            if self.auto_migrate:
                await asyncio.to_thread(migrate, conn)
            elif pending := await asyncio.to_thread(pending_migrations, conn):
                raise schema_behind(pending)
        except BaseException:
            conn.close()
            raise
        self._writer = Writer(conn)
        self._writer.observer = self._observer
        self._writer.start()
        self._reader = await self._read(connect, self.path)

    def lock_for_server(self) -> None:
        """Make this the only server on the database file, until it exits.

        Claims of deliveries are released at start-up, which is only safe when
        no other server shares the file.
        """
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock = open(lock_path, "a+")  # noqa: SIM115 - held for the process
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock.close()
            raise StoreUnavailableError(
                f"another serverlord serve is already using {self.path}"
            ) from exc

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.stop()
            await asyncio.to_thread(self._writer.join)
            self._writer.conn.close()
            self._writer = None
        if self._reader is not None:
            await self._read(self._reader.close)
            self._reader = None
        self._reads.shutdown(wait=True)
        if self._lock is not None:
            # Closing the file releases the lock: the next server may start.
            self._lock.close()
            self._lock = None

    def observe_commits(self, observer: CommitObserver | None) -> None:
        self._observer = observer
        if self._writer is not None:
            self._writer.observer = observer

    # Writes: each is one operation of a group-committed batch.

    async def record_ping(self, ping: Ping) -> PingOutcome:
        return await self._write(PingWrite(ping))

    async def sweep(self, due: list[Due], now: float) -> list[SweepOutcome]:
        cache = self._running_writer().checks
        return await self._write(lambda conn: sqlite_sweep.sweep(conn, due, now, cache))

    async def add_check(self, check: Check) -> None:
        await self.add_checks([check], [])

    async def add_checks(self, checks: list[Check], channel_ids: list[str]) -> None:
        await self._write(guarded(lambda conn: _add_checks(conn, checks, channel_ids)))

    async def update_check(
        self, check: Check, channel_ids: list[str] | None = None
    ) -> None:
        await self._write(guarded(lambda conn: _update_check(conn, check, channel_ids)))

    async def delete_check(self, check_id: str) -> None:
        await self._write(guarded(lambda conn: _delete_check(conn, check_id)))

    async def pause_check(self, check_id: str, now: float) -> Check:
        return await self._write(
            lambda conn: _change_state(conn, check_id, lambda c: rules.pause(c, now))
        )

    async def resume_check(self, check_id: str, now: float) -> Check:
        return await self._write(
            lambda conn: _change_state(conn, check_id, lambda c: rules.resume(c, now))
        )

    async def heartbeat(self, now: float) -> None:
        await self._write(lambda conn: conn.execute(Q["set_meta"], ("heartbeat", now)))

    async def add_channel(self, channel: Channel) -> None:
        params = (
            channel.id,
            channel.name,
            channel.url,
            channel.kind,
            channel.masked_url,
            channel.created,
            channel.project,
        )
        await self._write(
            guarded(lambda conn: conn.execute(Q["insert_channel"], params))
        )

    async def delete_channel(self, channel_id: str) -> None:
        await self._write(lambda conn: _delete_channel(conn, channel_id))

    async def set_check_channels(self, check_id: str, channel_ids: list[str]) -> None:
        await self._write(lambda conn: _link(conn, check_id, channel_ids))

    async def enqueue(self, deliveries: list[Delivery]) -> list[int]:
        return await self._write(lambda conn: _insert_deliveries(conn, deliveries))

    async def claim_deliveries(
        self,
        now: float,
        limit: int,
        lease: float,
        crowded: list[str] = [],  # noqa: B006 - read only
        per_channel: int = 8,
        digests: Digests | None = None,
    ) -> list[Delivery]:
        return await self._write(
            lambda conn: _claim(conn, now, limit, lease, crowded, per_channel, digests)
        )

    async def finish_attempt(self, delivery: Delivery, result: AttemptResult) -> None:
        await self.finish_attempts([delivery], result)

    async def finish_attempts(
        self, deliveries: list[Delivery], result: AttemptResult
    ) -> None:
        await self._write(guarded(lambda conn: _finish(conn, deliveries, result)))

    async def note_channel_result(self, channel_id: str, result: AttemptResult) -> None:
        params = (result.at, int(result.ok), result.error, channel_id)
        await self._write(lambda conn: conn.execute(Q["channel_result"], params))

    async def release_claims(self) -> int:
        return await self._write(
            lambda conn: conn.execute(Q["release_claims"]).rowcount
        )

    async def get_channel(self, channel_id: str) -> Channel | None:
        row = await self._query_one(Q["get_channel"], (channel_id,))
        return None if row is None else channel_from_row(row)

    async def list_channels(self) -> list[Channel]:
        rows = await self._query(Q["list_channels"], ())
        return [channel_from_row(row) for row in rows]

    async def check_channels(self, check_id: str) -> list[str]:
        rows = await self._query(Q["check_channels"], (check_id,))
        return [row[0] for row in rows]

    async def next_delivery_at(self) -> float | None:
        row = await self._query_one(Q["next_delivery_at"], ())
        return None if row is None or row[0] is None else float(row[0])

    async def recent_attempts(
        self, check_id: str, limit: int
    ) -> list[dict[str, object]]:
        rows = await self._query(Q["recent_attempts"], (check_id, limit))
        return [dict(row) for row in rows]

    # Reads.

    async def get_check(self, check_id: str) -> Check | None:
        row = await self._query_one(Q["get_check"], (check_id,))
        return None if row is None else check_from_row(row)

    async def list_checks(self) -> list[Check]:
        rows = await self._query(Q["list_checks"], ())
        return checks_from_rows(rows)

    async def count_checks(self) -> int:
        row = await self._query_one(Q["count_checks"], ())
        assert row is not None
        return int(row[0])

    async def count_by_status(self) -> dict[str, int]:
        rows = await self._query(Q["count_by_status"], ())
        return {row[0]: int(row[1]) for row in rows}

    async def recent_pings(self, check_id: str, limit: int) -> list[Ping]:
        rows = await self._query(Q["recent_pings"], (check_id, limit))
        return [ping_from_row(row) for row in rows]

    async def recent_flips(self, check_id: str, limit: int) -> list[Flip]:
        rows = await self._query(Q["recent_flips"], (check_id, limit))
        return [flip_from_row(row) for row in rows]

    async def load_deadlines(
        self, shards: list[int] | None = None
    ) -> list[tuple[str, int, float, float]]:
        rows = await self._query(Q["load_deadlines"], ())
        wanted = None if shards is None else set(shards)
        return [
            (row[0], row[1], row[2], row[3])
            for row in rows
            if wanted is None or row[1] in wanted
        ]

    def ownership(self) -> Ownership:
        return SoleOwnership(self.last_heartbeat)

    async def changes_since(self, cursor: int) -> tuple[int, list[str]]:
        rows = await self._query(Q["changes_since"], (cursor,))
        if not rows:
            return cursor, []
        return rows[-1][0], [row[1] for row in rows]

    async def last_change(self) -> int:
        row = await self._query_one(Q["last_change"], ())
        assert row is not None
        return int(row[0])

    async def last_heartbeat(self) -> float | None:
        row = await self._query_one(Q["get_meta"], ("heartbeat",))
        return None if row is None else float(row[0])

    # Plumbing.

    async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        result: T = await self._running_writer().submit(op)
        return result

    def _running_writer(self) -> Writer:
        if self._writer is None:
            raise StoreUnavailableError("the store is closed")
        return self._writer

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reads, fn, *args)

    async def _query(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        def run() -> list[sqlite3.Row]:
            assert self._reader is not None
            return self._reader.execute(sql, params).fetchall()

        try:
            return await self._read(run)
        except sqlite3.Error as exc:
            raise StoreUnavailableError(str(exc)) from exc

    async def _query_one(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Row | None:
        rows = await self._query(sql, params)
        return rows[0] if rows else None


# The operations below run on the writer thread inside the batch's transaction.


def _add_checks(
    conn: sqlite3.Connection, checks: list[Check], channel_ids: list[str]
) -> None:
    _require_channels(conn, channel_ids)
    conn.executemany(Q["insert_check"], map(check_to_row, checks))
    conn.executemany(Q["insert_change"], [(check.id,) for check in checks])
    wanted = list(dict.fromkeys(channel_ids))
    links = [(check.id, check.shard, channel) for check in checks for channel in wanted]
    conn.executemany(Q["link_channel"], links)


def _update_check(
    conn: sqlite3.Connection, check: Check, channel_ids: list[str] | None
) -> None:
    cursor = conn.execute(Q["update_check_config"], check_to_row(check))
    if cursor.rowcount != 1:
        raise ConflictError(check.id)
    conn.execute(Q["insert_change"], (check.id,))
    if channel_ids is not None:
        _link(conn, check.id, channel_ids)  # the savepoint undoes all on an error


def _delete_check(conn: sqlite3.Connection, check_id: str) -> None:
    cursor = conn.execute(Q["delete_check"], (check_id,))
    if cursor.rowcount != 1:
        raise CheckNotFoundError(check_id)
    conn.execute(Q["insert_change"], (check_id,))


def _change_state(
    conn: sqlite3.Connection, check_id: str, change: Callable[[Check], Flip | None]
) -> Check:
    check = load_check(conn, check_id)
    flip = writes.change_state(check, change)
    save_state(conn, check)
    if flip is not None:
        insert_flip(conn, flip)
        if writes.drops_reminders(flip):
            conn.execute(Q["drop_reminders"], (check_id,))
    conn.execute(Q["insert_change"], (check_id,))
    return check


def _delete_channel(conn: sqlite3.Connection, channel_id: str) -> None:
    if conn.execute(Q["delete_channel"], (channel_id,)).rowcount != 1:
        raise ChannelNotFoundError(channel_id)


def _require_channels(conn: sqlite3.Connection, channel_ids: list[str]) -> None:
    for channel_id in channel_ids:
        if conn.execute(Q["get_channel"], (channel_id,)).fetchone() is None:
            raise ChannelNotFoundError(channel_id)


def _link(conn: sqlite3.Connection, check_id: str, channel_ids: list[str]) -> None:
    check = load_check(conn, check_id)
    _require_channels(conn, channel_ids)
    conn.execute(Q["unlink_channels"], (check_id,))
    for channel_id in dict.fromkeys(channel_ids):
        conn.execute(Q["link_channel"], (check_id, check.shard, channel_id))


def _insert_deliveries(
    conn: sqlite3.Connection, deliveries: list[Delivery]
) -> list[int]:
    ids = []
    _require_channels(conn, [item.channel_id for item in deliveries])
    for item in deliveries:
        row = conn.execute(
            Q["insert_delivery"],
            (
                item.flip_id,
                item.check_id,
                None,
                item.channel_id,
                item.kind,
                item.title,
                item.body,
                item.created,
                item.created,
            ),
        ).fetchone()
        item.id = row[0]
        ids.append(row[0])
    return ids


def _claim(
    conn: sqlite3.Connection,
    now: float,
    limit: int,
    lease: float,
    crowded: list[str],
    per_channel: int,
    digests: Digests | None,
) -> list[Delivery]:
    # Claims of a notifier that died mid-send run out with their lease.
    conn.execute(Q["expired_claims"], (now,))
    params = (
        now + lease,
        now,
        limit,
        json.dumps(crowded),
        per_channel,
        *writes.digest_params(digests),
        writes.claim_window(limit, digests),
    )
    claimed = [row[0] for row in conn.execute(Q["claim_deliveries"], params)]
    if not claimed:
        return []
    rows = conn.execute(Q["deliveries_by_id"], (json.dumps(claimed),)).fetchall()
    return [delivery_from_row(row) for row in rows]


def _finish(
    conn: sqlite3.Connection, deliveries: list[Delivery], result: AttemptResult
) -> None:
    ids = json.dumps([d.id for d in deliveries])
    params = (*writes.attempt_state(result), ids)
    # Those no longer claimed lost their channel or check while being sent.
    finished = [row[0] for row in conn.execute(Q["finish_deliveries"], params)]
    if not finished:
        return
    attempt = (result.at, int(result.ok), result.error, result.latency)
    conn.executemany(Q["insert_attempt"], [(i, *attempt) for i in finished])
    done = set(finished)
    channels = {d.channel_id for d in deliveries if d.id in done}
    conn.executemany(
        Q["channel_result"],
        [(result.at, int(result.ok), result.error, c) for c in sorted(channels)],
    )
