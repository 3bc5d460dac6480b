"""The embedded store: SQLite in WAL mode, written by one group-commit thread.

Every write is an operation queued to the writer thread. The thread takes all
operations waiting, runs them in one transaction and resolves their futures only
after COMMIT, so an acknowledged ping is durable and concurrent pings share one
fsync. Reads run on a second thread with its own connection, which WAL lets
proceed while the writer commits.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from serverlord import checks as rules
from serverlord.checks import Check, Flip, deadline_of
from serverlord.pings import Ping, apply_ping
from serverlord.store.base import (
    PINGS_KEPT,
    CheckNotFoundError,
    ConflictError,
    Due,
    PingOutcome,
    StoreError,
    StoreUnavailableError,
    SweepOutcome,
)
from serverlord.store.queries import load_migrations, load_queries
from serverlord.store.rows import (
    check_from_row,
    check_to_row,
    flip_from_row,
    flip_to_params,
    ping_from_row,
    ping_to_params,
    state_params,
)

log = logging.getLogger(__name__)

Q = load_queries("sqlite")
T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], Any]

MAX_BATCH = 2000
PRUNE_EVERY = 20
"""Pings of a check are pruned every this many pings, not on each one."""


def connect(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    # Other processes (the CLI) write to the same file: wait for them briefly
    # instead of failing at once.
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Apply the migrations this database has not seen; return their numbers."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    applied = []
    for number, name, sql in load_migrations("sqlite"):
        if number <= current:
            continue
        log.info(
            "applying migration %04d_%s",
            number,
            name,
            extra={"action": "migrate", "migration": number},
        )
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executescript(f"{sql}\nPRAGMA user_version = {number};")
        except sqlite3.Error:
            conn.execute("ROLLBACK")
            raise
        applied.append(number)
    return applied


class _Writer(threading.Thread):
    """The one thread that writes: operations in, one transaction per batch."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(name="serverlord-sqlite-writer", daemon=True)
        self.conn = conn
        self.queue: queue.SimpleQueue[tuple[Operation, asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )

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

    def _commit(self, batch: list[tuple[Operation, Any]]) -> None:
        outcomes: list[tuple[Any, Any, BaseException | None]] = []
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            for index, (op, future) in enumerate(batch):
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
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            log.error(
                "sqlite write of %d operations failed: %s",
                len(batch),
                exc,
                extra={"action": "store_write_failed"},
            )
            error = StoreUnavailableError(str(exc))
            outcomes = [(future, None, error) for _, future in batch]
        _resolve_all(outcomes)

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


class SqliteStore:
    """The SQLite backend of the store contract."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.path = path
        self.synchronous = synchronous
        self.description = f"sqlite:///{path}"
        self._writer: _Writer | None = None
        self._reader: sqlite3.Connection | None = None
        self._reads = ThreadPoolExecutor(1, thread_name_prefix="serverlord-sqlite-read")

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = await asyncio.to_thread(connect, self.path, synchronous=self.synchronous)
        await asyncio.to_thread(migrate, conn)
        self._writer = _Writer(conn)
        self._writer.start()
        self._reader = await self._read(connect, self.path)

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

    # Writes: each is one operation of a group-committed batch.

    async def record_ping(self, ping: Ping) -> PingOutcome:
        return await self._write(lambda conn: _record_ping(conn, ping))  # type: ignore[no-any-return]

    async def sweep(self, due: list[Due], now: float) -> list[SweepOutcome]:
        return await self._write(lambda conn: _sweep(conn, due, now))  # type: ignore[no-any-return]

    async def add_check(self, check: Check) -> None:
        await self._write(guarded(lambda conn: _add_check(conn, check)))

    async def update_check(self, check: Check) -> None:
        await self._write(guarded(lambda conn: _update_check(conn, check)))

    async def delete_check(self, check_id: str) -> None:
        await self._write(guarded(lambda conn: _delete_check(conn, check_id)))

    async def pause_check(self, check_id: str, now: float) -> Check:
        return await self._write(  # type: ignore[no-any-return]
            lambda conn: _change_state(conn, check_id, lambda c: rules.pause(c, now))
        )

    async def resume_check(self, check_id: str, now: float) -> Check:
        return await self._write(  # type: ignore[no-any-return]
            lambda conn: _change_state(conn, check_id, lambda c: rules.resume(c, now))
        )

    async def heartbeat(self, now: float) -> None:
        await self._write(lambda conn: conn.execute(Q["set_meta"], ("heartbeat", now)))

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

    async def recent_pings(self, check_id: str, limit: int) -> list[Ping]:
        rows = await self._query(Q["recent_pings"], (check_id, limit))
        return [ping_from_row(row) for row in rows]

    async def recent_flips(self, check_id: str, limit: int) -> list[Flip]:
        rows = await self._query(Q["recent_flips"], (check_id, limit))
        return [flip_from_row(row) for row in rows]

    async def load_deadlines(self) -> list[tuple[str, float, float]]:
        rows = await self._query(Q["load_deadlines"], ())
        return [(row[0], row[1], row[2]) for row in rows]

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

    async def _write(self, op: Operation) -> Any:
        if self._writer is None:
            raise StoreUnavailableError("the store is closed")
        return await self._writer.submit(op)

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
    if ping.n % PRUNE_EVERY == 0:
        conn.execute(Q["prune_pings"], (check.id, ping.n - PINGS_KEPT))
    if flip is not None:
        _insert_flip(conn, flip)
    return PingOutcome(check.id, check.shard, deadline, flip)


def _sweep(conn: sqlite3.Connection, due: list[Due], now: float) -> list[SweepOutcome]:
    outcomes = []
    for item in due:
        row = conn.execute(Q["get_check"], (item.check_id,)).fetchone()
        if row is None:
            continue
        check = check_from_row(row)
        deadline = deadline_of(check)
        if deadline is None or deadline.at > now:
            # A ping moved the deadline since the sweeper saw it: reschedule.
            at = None if deadline is None else deadline.at
            outcomes.append(SweepOutcome(check.id, check.shard, at, None))
            continue
        flip = rules.flip_down(check, deadline, now)
        if item.not_before is not None:
            flip.at = max(flip.at, item.not_before)
        if item.offline_until is not None:
            flip.offline_from = item.offline_from
            flip.offline_until = item.offline_until
            if deadline.reason == rules.MISSED:
                flip.reason = rules.MISSED_OFFLINE
        new_deadline = _save_state(conn, check)
        _insert_flip(conn, flip)
        outcomes.append(SweepOutcome(check.id, check.shard, new_deadline, flip))
    return outcomes


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
    try:
        flip = change(check)
    except rules.NotPausedError as exc:
        raise ConflictError("check is not paused") from exc
    _save_state(conn, check)
    if flip is not None:
        _insert_flip(conn, flip)
    conn.execute(Q["insert_change"], (check_id,))
    return check
