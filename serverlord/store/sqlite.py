"""The embedded store: SQLite in WAL mode, written by one group-commit thread.

Every write is an operation queued to the writer thread. The thread takes all
operations waiting, runs them in one transaction and resolves their futures only
after COMMIT, so an acknowledged ping is durable and concurrent pings share one
fsync. Reads run on a second thread with its own connection, which WAL lets
proceed while the writer commits.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import queue
import sqlite3
import threading
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
from serverlord.pings import Ping, apply_ping
from serverlord.store import sqlite_sweep, writes
from serverlord.store.base import (
    ChannelNotFoundError,
    CheckNotFoundError,
    CommitObserver,
    ConflictError,
    Due,
    PingOutcome,
    SchemaBehindError,
    StoreError,
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
    delivery_from_row,
    flip_from_row,
    flip_to_params,
    ping_from_row,
    ping_to_params,
    state_params,
)
from serverlord.store.sqlite_projects import SqliteProjects
from serverlord.store.sqlite_reads import read_checks
from serverlord.trouble import Trouble

log = logging.getLogger(__name__)

Q = load_queries("sqlite")
T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], Any]

MAX_BATCH = 2000
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


class _Writer(threading.Thread):
    """The one thread that writes: operations in, one transaction per batch."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(name="serverlord-sqlite-writer", daemon=True)
        self.conn = conn
        self.queue: queue.SimpleQueue[tuple[Operation, asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self.observer: CommitObserver | None = None
        self.trouble = Trouble(log, "sqlite store refuses writes", "store_write_failed")

    def submit(self, op: Operation) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self.queue.put((op, future))
        return future

    def stop(self) -> None:
        self.queue.put(None)

    def run(self) -> None:
        while True:
            batch, stopping = self._take_batch()
            if batch:
                self._commit(batch)
            if stopping:
                return

    def _take_batch(self) -> tuple[list[tuple[Operation, Any]], bool]:
        first = self.queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _commit(
        self, batch: list[tuple[Operation, Any]], together: bool = True
    ) -> None:
        outcomes: list[tuple[Any, Any, BaseException | None]] = []
        started = time.perf_counter()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            index = 0
            while index < len(batch):
                pings = _ping_run(batch, index) if together else 0
                if pings > 1:
                    try:
                        outcomes += _record_ping_run(
                            self.conn, batch[index : index + pings]
                        )
                    except sqlite3.Error:
                        raise
                    except Exception as exc:
                        self._retry_one_by_one(batch, exc)
                        return
                    index += pings
                    continue
                op, future = batch[index]
                try:
                    outcomes.append((future, op(self.conn), None))
                except StoreError as exc:
                    # Operations raise their domain errors before they write.
                    outcomes.append((future, None, exc))
                except sqlite3.Error:
                    raise
                except Exception as exc:
                    self._drop_and_retry(batch, index, exc)
                    return
                index += 1
            self.conn.execute("COMMIT")
            self.trouble.ok()
            if self.observer is not None:
                self.observer(len(batch), time.perf_counter() - started, True)
        except sqlite3.Error as exc:
            self._roll_back()
            # A full disk or a lock held elsewhere fails every batch until it
            # ends: one line when it starts, one when writes work again.
            self.trouble.failed(exc, logging.ERROR)
            error = StoreUnavailableError(str(exc))
            outcomes = [(future, None, error) for _, future in batch]
            if self.observer is not None:
                self.observer(len(batch), time.perf_counter() - started, False)
        _resolve_all(outcomes)

    def _roll_back(self) -> None:
        # SQLite may have rolled back already (a full disk does); a failing
        # ROLLBACK must not end the thread every ping waits on.
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.warning(
                    "sqlite rollback failed: %s",
                    exc,
                    extra={"action": "store_rollback_failed"},
                )

    def _retry_one_by_one(
        self, batch: list[tuple[Operation, Any]], exc: Exception
    ) -> None:
        # A bug while pings were written together: undo, and find the ping
        # that raised by running each on its own (see ``_drop_and_retry``).
        log.warning(
            "pings written together failed, writing them one by one: %r",
            exc,
            extra={"action": "store_ping_run_failed"},
        )
        self.conn.execute("ROLLBACK")
        self._commit(batch, together=False)

    def _drop_and_retry(
        self, batch: list[tuple[Operation, Any]], index: int, exc: Exception
    ) -> None:
        # A bug in one operation must not cost the others their write: undo the
        # whole transaction, fail that one and commit the rest again.
        log.error(
            "store operation failed: %r",
            exc,
            exc_info=exc,
            extra={"action": "store_bug"},
        )
        self.conn.execute("ROLLBACK")
        _resolve_all([(batch[index][1], None, exc)])
        rest = batch[:index] + batch[index + 1 :]
        if rest:
            self._commit(rest)


def guarded(op: Operation) -> Operation:
    """Run an operation that may break a constraint under its own savepoint."""

    def run(conn: sqlite3.Connection) -> Any:
        conn.execute("SAVEPOINT op")
        try:
            result = op(conn)
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            raise ConflictError(str(exc)) from exc
        except BaseException:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            raise
        conn.execute("RELEASE op")
        return result

    return run


def _resolve_all(outcomes: list[tuple[Any, Any, BaseException | None]]) -> None:
    # One hop to each event loop per batch, not one per ping.
    by_loop: dict[Any, list[tuple[Any, Any, BaseException | None]]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
    for loop, items in by_loop.items():
        if not loop.is_closed():
            loop.call_soon_threadsafe(_resolve, items)


def _resolve(items: list[tuple[Any, Any, BaseException | None]]) -> None:
    for future, result, error in items:
        if future.done():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class SqliteStore(SqliteProjects):
    """The SQLite backend of the store contract."""

    def __init__(
        self, path: Path, *, synchronous: str = "FULL", auto_migrate: bool = True
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.auto_migrate = auto_migrate
        self.description = f"sqlite:///{path}"
        self._writer: _Writer | None = None
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
        self._writer = _Writer(conn)
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
        return await self._write(lambda conn: sqlite_sweep.sweep(conn, due, now))

    async def add_check(self, check: Check) -> None:
        await self._write(guarded(lambda conn: _add_check(conn, check)))

    async def update_check(self, check: Check) -> None:
        await self._write(guarded(lambda conn: _update_check(conn, check)))

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
        return [check_from_row(row) for row in rows]

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
        if self._writer is None:
            raise StoreUnavailableError("the store is closed")
        result: T = await self._writer.submit(op)
        return result

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


def _load(conn: sqlite3.Connection, check_id: str) -> Check:
    row = conn.execute(Q["get_check"], (check_id,)).fetchone()
    if row is None:
        raise CheckNotFoundError(check_id)
    return check_from_row(row)


def _save_state(conn: sqlite3.Connection, check: Check) -> float | None:
    params = state_params(check)
    cursor = conn.execute(Q["update_check_state"], params)
    if cursor.rowcount != 1:
        raise ConflictError(check.id)
    check.version += 1
    deadline: float | None = params[6]
    return deadline


def _insert_flip(conn: sqlite3.Connection, flip: Flip) -> None:
    flip.id = conn.execute(Q["insert_flip"], flip_to_params(flip)).fetchone()[0]


def _record_ping(conn: sqlite3.Connection, ping: Ping) -> PingOutcome:
    check = _load(conn, ping.check_id)
    flip = apply_ping(check, ping)
    deadline = _save_state(conn, check)
    conn.execute(Q["insert_ping"], ping_to_params(ping, check.shard))
    below = writes.prune_below(ping.n)
    if below is not None:
        conn.execute(Q["prune_pings"], (check.id, below))
    notify = False
    if flip is not None:
        _insert_flip(conn, flip)
        notify = _enqueue_alerts(conn, check, flip, ping.received)
    return PingOutcome(check.id, check.shard, deadline, flip, notify)


class PingWrite:
    """The operation of one ping. The writer spots these in a batch and
    writes the pings next to each other together (``_record_ping_run``)."""

    __slots__ = ("ping",)

    def __init__(self, ping: Ping) -> None:
        self.ping = ping

    def __call__(self, conn: sqlite3.Connection) -> PingOutcome:
        return _record_ping(conn, self.ping)


def _ping_run(batch: list[tuple[Operation, Any]], start: int) -> int:
    """How many operations from ``start`` on are pings, one after another."""
    end = start
    while end < len(batch) and type(batch[end][0]) is PingWrite:
        end += 1
    return end - start


def _record_ping_run(
    conn: sqlite3.Connection, run: list[tuple[Operation, Any]]
) -> list[tuple[Any, Any, BaseException | None]]:
    """Record pings that follow each other in a batch with a few statements.

    Their checks are read with one query; each ping is applied in its turn
    to its check in memory, so that two pings of one check see each other,
    as they would one by one; each check's final state is written once and
    the ping rows with one statement. The result is what ``_record_ping``
    gives for each in turn (but a check's version, raised once), for about
    a sixth less of the writer's time per ping.
    """
    pings: list[Ping] = [op.ping for op, _ in run]  # type: ignore[attr-defined]
    checks = read_checks(conn, list(dict.fromkeys(p.check_id for p in pings)))
    states: dict[str, tuple[Any, ...]] = {}
    rows: list[tuple[Any, ...]] = []
    prunes: list[tuple[str, int]] = []
    outcomes: list[tuple[Any, Any, BaseException | None]] = []
    for ping, (_, future) in zip(pings, run, strict=True):
        check = checks.get(ping.check_id)
        if check is None:
            outcomes.append((future, None, CheckNotFoundError(ping.check_id)))
            continue
        flip = apply_ping(check, ping)
        states[check.id] = params = state_params(check)
        rows.append(ping_to_params(ping, check.shard))
        below = writes.prune_below(ping.n)
        if below is not None:
            prunes.append((check.id, below))
        notify = False
        if flip is not None:
            # The alert quotes the check's last ping: its row goes in first.
            conn.executemany(Q["insert_ping"], rows)
            rows.clear()
            _insert_flip(conn, flip)
            notify = _enqueue_alerts(conn, check, flip, ping.received)
        outcome = PingOutcome(check.id, check.shard, params[6], flip, notify)
        outcomes.append((future, outcome, None))

    saved = conn.executemany(Q["update_check_state"], list(states.values())).rowcount
    if saved != len(states):
        # Nothing else writes between the read above and this update.
        raise ConflictError(f"{len(states) - saved} checks changed under a ping")
    conn.executemany(Q["insert_ping"], rows)
    conn.executemany(Q["prune_pings"], prunes)
    return outcomes


def _enqueue_alerts(
    conn: sqlite3.Connection, check: Check, flip: Flip, now: float
) -> bool:
    """Write one delivery per linked channel, in the flip's own transaction."""
    if writes.drops_reminders(flip):
        conn.execute(Q["drop_reminders"], (check.id,))
    message = writes.alert_message(check, flip, _last_body(conn, check.id), now)
    if message is None:
        return False
    return _enqueue(conn, check, flip.id, *message, now)


def _enqueue(
    conn: sqlite3.Connection,
    check: Check,
    flip_id: int | None,
    kind: str,
    title: str,
    body: str,
    now: float,
) -> bool:
    # Reminders are only owed by sweeps (see ``sqlite_sweep``).
    channel_ids = [row[0] for row in conn.execute(Q["check_channels"], (check.id,))]
    for channel_id in channel_ids:
        conn.execute(
            Q["insert_delivery"],
            (flip_id, check.id, check.shard, channel_id, kind, title, body, now, now),
        )
    return bool(channel_ids)


def _last_body(conn: sqlite3.Connection, check_id: str) -> bytes | None:
    row = conn.execute(Q["last_body"], (check_id,)).fetchone()
    return None if row is None else bytes(row[0])


def _add_check(conn: sqlite3.Connection, check: Check) -> None:
    conn.execute(Q["insert_check"], check_to_row(check))
    conn.execute(Q["insert_change"], (check.id,))


def _update_check(conn: sqlite3.Connection, check: Check) -> None:
    cursor = conn.execute(Q["update_check_config"], check_to_row(check))
    if cursor.rowcount != 1:
        raise ConflictError(check.id)
    conn.execute(Q["insert_change"], (check.id,))


def _delete_check(conn: sqlite3.Connection, check_id: str) -> None:
    cursor = conn.execute(Q["delete_check"], (check_id,))
    if cursor.rowcount != 1:
        raise CheckNotFoundError(check_id)
    conn.execute(Q["insert_change"], (check_id,))


def _change_state(
    conn: sqlite3.Connection, check_id: str, change: Callable[[Check], Flip | None]
) -> Check:
    check = _load(conn, check_id)
    flip = writes.change_state(check, change)
    _save_state(conn, check)
    if flip is not None:
        _insert_flip(conn, flip)
        if writes.drops_reminders(flip):
            conn.execute(Q["drop_reminders"], (check_id,))
    conn.execute(Q["insert_change"], (check_id,))
    return check


def _delete_channel(conn: sqlite3.Connection, channel_id: str) -> None:
    if conn.execute(Q["delete_channel"], (channel_id,)).rowcount != 1:
        raise ChannelNotFoundError(channel_id)


def _link(conn: sqlite3.Connection, check_id: str, channel_ids: list[str]) -> None:
    check = _load(conn, check_id)
    for channel_id in channel_ids:
        if conn.execute(Q["get_channel"], (channel_id,)).fetchone() is None:
            raise ChannelNotFoundError(channel_id)
    conn.execute(Q["unlink_channels"], (check_id,))
    for channel_id in dict.fromkeys(channel_ids):
        conn.execute(Q["link_channel"], (check_id, check.shard, channel_id))


def _insert_deliveries(
    conn: sqlite3.Connection, deliveries: list[Delivery]
) -> list[int]:
    ids = []
    for item in deliveries:
        if conn.execute(Q["get_channel"], (item.channel_id,)).fetchone() is None:
            raise ChannelNotFoundError(item.channel_id)
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
