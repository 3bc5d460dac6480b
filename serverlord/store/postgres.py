"""The PostgreSQL store: asyncpg, with one asyncio task that group-commits.

Every write is an item queued to the writer task. The task takes all items
waiting, runs them in one transaction on its own connection and resolves their
futures only after COMMIT: an acknowledged ping is durable, and concurrent
pings share one commit. Consecutive pings of a batch are written together, one
statement per table (see ``postgres_writes``). Reads go through the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from serverlord.channels import AttemptResult, Channel, Delivery, Digests
from serverlord.checks import Check, Flip
from serverlord.ownership import Ownership
from serverlord.pings import Ping
from serverlord.store.base import (
    CommitObserver,
    ConflictError,
    DatabaseUrlError,
    Due,
    PingOutcome,
    StoreError,
    StoreUnavailableError,
    SweepOutcome,
    refuse_newer,
    schema_behind,
)
from serverlord.store.postgres_projects import PostgresProjects
from serverlord.store.postgres_writes import (
    LOCK_SPACE,
    Q,
    add_checks,
    claim,
    delete_channel,
    delete_check,
    finish,
    insert_deliveries,
    link,
    pause,
    record_pings,
    resume,
    row_count,
    shard_or_none,
    sweep,
    update_check,
)
from serverlord.store.queries import Migration, load_migrations
from serverlord.store.rows import (
    channel_from_row,
    check_from_row,
    checks_from_rows,
    flip_from_row,
    ping_from_row,
)
from serverlord.trouble import Trouble

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    from serverlord.store.postgres_writes import Connection

    Operation: TypeAlias = Callable[[Connection], Awaitable[Any]]

__all__ = ["PostgresStore", "migrate"]

T = TypeVar("T")

log = logging.getLogger(__name__)

MAX_BATCH = 2000
MAX_RETRIES = 3
"""Times a batch is run again after a deadlock or a serialization failure."""
MAX_RECONNECTS = 2
"""Times a batch is run again on a new connection when its own was lost."""
CONNECT_TIMEOUT = 5.0
"""Longest wait for a new connection to the database."""
CLOSE_TIMEOUT = 10.0
"""Longest wait for connections in use (by readers) when closing."""
MIGRATIONS_LOCK = 1
"""Key of the advisory lock that lets one process at a time migrate."""

# SQLSTATE classes that say the database, not the statement, is in trouble:
# connection exceptions, insufficient resources, operator intervention (a
# shutdown), system errors and internal errors.
_UNAVAILABLE_CLASSES = frozenset({"08", "53", "57", "58", "XX"})
_REFUSED = (
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidCatalogNameError,
)
"""Log-in refusals: a wrong user, password or database name."""


async def migrate(
    conn: Connection, migrations: list[Migration] | None = None
) -> list[int]:
    """Apply the migrations this database has not seen; return their numbers.

    All of them run in one transaction, so a process killed halfway leaves the
    database as it was; under an advisory lock, so that a second process
    starting at the same time waits and then finds nothing left to do.
    ``migrations`` defaults to all of the package's.
    """
    if migrations is None:
        migrations = load_migrations("postgres")
    applied = []
    async with conn.transaction():
        await conn.execute(Q["lock"], LOCK_SPACE, MIGRATIONS_LOCK)
        await conn.execute(Q["create_migrations_table"])
        seen = {row[0] for row in await conn.fetch(Q["applied_migrations"])}
        refuse_newer(max(seen, default=0), migrations)
        for number, name, sql in migrations:
            if number in seen:
                continue
            log.info(
                "applying migration %04d_%s",
                number,
                name,
                extra={"action": "migrate", "migration": number},
            )
            await conn.execute(sql)
            await conn.execute(Q["record_migration"], number, name)
            applied.append(number)
    return applied


async def pending_migrations(conn: Connection) -> list[Migration]:
    """The migrations this database has not seen, in order."""
    seen = set()
    if await conn.fetchval(Q["migrations_table_exists"]):
        seen = {row[0] for row in await conn.fetch(Q["applied_migrations"])}
    migrations = load_migrations("postgres")
    refuse_newer(max(seen, default=0), migrations)
    return [m for m in migrations if m[0] not in seen]


@dataclass(slots=True)
class _Item:
    """One write waiting for the writer: a ping, or any other operation."""

    future: asyncio.Future[Any]
    ping: Ping | None = None
    op: Operation | None = None
    kind: str = ""
    """The ping's kind as it came: applying it may change the kind and the
    duration, and a batch may be run again."""
    duration: float | None = None


class _SegmentFailed(Exception):
    """A segment of a batch failed for its own reason (a bug, a bad value)."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


def _usable(conn: PoolConnectionProxy[asyncpg.Record]) -> bool:
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        # The pool takes a connection back as soon as it closes.
        return False


def _unavailable(exc: BaseException) -> bool:
    # InternalClientError: the driver lost track of the connection's state,
    # as when the server ends it between two statements.
    if isinstance(
        exc,
        OSError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError
        | StoreUnavailableError,
    ):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate or "")[:2] in _UNAVAILABLE_CLASSES
    return False


POOL_SETTINGS = {
    "application_name": "serverlord",
    # Short statements on few rows: JIT compiling them costs more than it
    # ever saves.
    "jit": "off",
    # asyncpg prepares every statement, and after five runs PostgreSQL may
    # keep a generic plan that ignores the values: the claim of deliveries
    # then took 1-3 s instead of ~20 ms once a wave left thousands pending
    # (10,000 alerts: 29 s to deliver against 2.8 s with plans made for the
    # values at hand). Planning each run costs far less than a bad plan.
    "plan_cache_mode": "force_custom_plan",
}


class _Writer:
    """The one task that writes: items in, one transaction per batch."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.batches = 0
        """Batches committed so far."""
        self._waiting: list[_Item] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._conn: PoolConnectionProxy[asyncpg.Record] | None = None
        self._committing = False
        self.observer: CommitObserver | None = None
        self._trouble = Trouble(log, "postgresql writes fail", "store_write_failed")
        self._task = asyncio.create_task(self._run(), name="serverlord-pg-writer")

    def submit(self, item: _Item) -> None:
        if self._closing:
            raise StoreUnavailableError("the store is closed")
        self._waiting.append(item)
        self._wake.set()

    async def stop(self) -> None:
        """Commit what is waiting, then stop."""
        self._closing = True
        self._wake.set()
        await self._task
        if self._conn is not None and _usable(self._conn):
            await self.pool.release(self._conn)
            self._conn = None
        self._drop_connection()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Whatever queued while the last batch committed is the next batch:
            # batches grow with the load, and no time is spent waiting for more.
            while self._waiting:
                batch = self._waiting[:MAX_BATCH]
                del self._waiting[:MAX_BATCH]
                await self._commit(batch)
            if self._closing:
                return

    async def _commit(self, batch: list[_Item]) -> None:
        try:
            await self._commit_batch(batch)
        except Exception as exc:
            # The writer must outlive any bug, or every later write would hang;
            # its connection may be in any state after one.
            self._drop_connection()
            log.error(
                "store batch failed: %r",
                exc,
                exc_info=exc,
                extra={"action": "store_bug"},
            )
            _resolve([(item, None, exc) for item in batch])

    async def _commit_batch(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        segments = _segments(batch)
        retries = reconnects = 0
        while segments:
            try:
                outcomes = await self._run_segments(segments)
            except _SegmentFailed as failed:
                segments = self._isolate(segments, failed)
                continue
            except asyncpg.TransactionRollbackError as exc:
                retries += 1
                if retries <= MAX_RETRIES:
                    continue
                self._fail_all(segments, exc)
                self._observe(batch, started, False)
                return
            except Exception as exc:
                if not _unavailable(exc):
                    raise
                self._drop_connection()
                # Pooled connections the server ended show it only when used.
                # A batch that did not reach COMMIT wrote nothing: try it on
                # another connection; one lost in COMMIT may have committed.
                if not self._committing and reconnects < MAX_RECONNECTS:
                    reconnects += 1
                    continue
                self._fail_all(segments, exc)
                self._observe(batch, started, False)
                return
            self.batches += 1
            self._observe(batch, started, True)
            self._trouble.ok()
            _resolve(outcomes)
            return

    def _observe(self, batch: list[_Item], started: float, ok: bool) -> None:
        if self.observer is not None:
            self.observer(len(batch), time.perf_counter() - started, ok)

    async def _run_segments(
        self, segments: list[list[_Item]]
    ) -> list[tuple[_Item, Any, BaseException | None]]:
        self._committing = False
        conn = await self._connection()
        outcomes: list[tuple[_Item, Any, BaseException | None]] = []
        transaction = conn.transaction()
        await transaction.start()
        try:
            for index, segment in enumerate(segments):
                try:
                    outcomes += await _run_segment(conn, segment)
                except Exception as exc:
                    if _unavailable(exc) or isinstance(
                        exc, asyncpg.TransactionRollbackError
                    ):
                        raise
                    raise _SegmentFailed(index, exc) from exc
        except BaseException:
            if _usable(conn):
                await transaction.rollback()
            raise
        self._committing = True
        await transaction.commit()
        return outcomes

    def _isolate(
        self, segments: list[list[_Item]], failed: _SegmentFailed
    ) -> list[list[_Item]]:
        # One bad write must not cost the others theirs: split the pings that
        # were written together so the culprit shows, or fail the one item.
        segment = segments[failed.index]
        rest = segments[: failed.index]
        after = segments[failed.index + 1 :]
        if len(segment) > 1:
            return [*rest, *([item] for item in segment), *after]
        log.error(
            "store operation failed: %r",
            failed.error,
            exc_info=failed.error,
            extra={"action": "store_bug"},
        )
        _resolve([(segment[0], None, failed.error)])
        return [*rest, *after]

    def _fail_all(self, segments: list[list[_Item]], exc: BaseException) -> None:
        self._trouble.failed(exc, logging.ERROR)
        error = StoreUnavailableError(str(exc) or type(exc).__name__)
        _resolve([(item, None, error) for segment in segments for item in segment])

    async def _connection(self) -> PoolConnectionProxy[asyncpg.Record]:
        # The writer keeps one connection: giving it back to the pool after each
        # batch would cost a reset round trip every time.
        if self._conn is not None and not _usable(self._conn):
            self._drop_connection()
        if self._conn is None:
            try:
                self._conn = await self.pool.acquire()
            except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # Refused at log-in (too many clients, database not open yet).
                raise StoreUnavailableError(str(exc)) from exc
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        # Terminating hands the connection back to the pool (which opens a new
        # one when next asked), also one the server closed under it; one that
        # the pool took back already refuses.
        if conn is not None:
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()


def _segments(batch: list[_Item]) -> list[list[_Item]]:
    """Consecutive pings form one segment; any other operation is its own."""
    segments: list[list[_Item]] = []
    for item in batch:
        if item.ping is not None and segments and segments[-1][0].ping is not None:
            segments[-1].append(item)
        else:
            segments.append([item])
    return segments


async def _run_segment(
    conn: Connection, segment: list[_Item]
) -> list[tuple[_Item, Any, BaseException | None]]:
    first = segment[0]
    if first.op is not None:
        try:
            return [(first, await first.op(conn), None)]
        except StoreError as exc:
            # Operations raise their domain errors before they write.
            return [(first, None, exc)]

    pings = []
    for item in segment:
        assert item.ping is not None
        item.ping.kind = item.kind
        item.ping.duration = item.duration
        pings.append(item.ping)
    results = await record_pings(conn, pings)
    return [
        (item, None, result) if isinstance(result, StoreError) else (item, result, None)
        for item, result in zip(segment, results, strict=True)
    ]


def _resolve(outcomes: list[tuple[_Item, Any, BaseException | None]]) -> None:
    for item, result, error in outcomes:
        if item.future.done():
            continue
        if error is None:
            item.future.set_result(result)
        else:
            item.future.set_exception(error)


def masked(dsn: str) -> str:
    """The URL without its password, fit for logs."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresStore(PostgresProjects):
    """The PostgreSQL backend of the store contract."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 8,
        command_timeout: float = 30.0,
        auto_migrate: bool = True,
    ) -> None:
        self.dsn = dsn
        self.description = masked(dsn)
        self.pool_size = pool_size
        self.command_timeout = command_timeout
        self.auto_migrate = auto_migrate
        self._pool: asyncpg.Pool | None = None
        self._writer: _Writer | None = None
        self._observer: CommitObserver | None = None

    @property
    def batches(self) -> int:
        """Write transactions committed so far by this store."""
        return 0 if self._writer is None else self._writer.batches

    async def open(self) -> None:
        pool = asyncpg.create_pool(
            self.dsn,
            # A floor would make the pool reconnect in the background,
            # logging a traceback each time, while the database is away.
            min_size=0,
            max_size=max(2, self.pool_size),
            command_timeout=self.command_timeout,
            timeout=CONNECT_TIMEOUT,
            server_settings=POOL_SETTINGS,
        )
        try:
            conn = await self._first_connection(pool)
            try:
                if self.auto_migrate:
                    await migrate(conn)
                elif pending := await pending_migrations(conn):
                    raise schema_behind(pending)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                error = StoreUnavailableError if _unavailable(exc) else StoreError
                raise error(f"cannot migrate {self.description}: {exc}") from exc
            finally:
                await pool.release(conn)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._writer = _Writer(pool)
        self._writer.observer = self._observer

    async def _first_connection(
        self, pool: asyncpg.Pool
    ) -> PoolConnectionProxy[asyncpg.Record]:
        """A connection of the new pool: it says whether the database can be
        reached, and with which settings."""
        try:
            await pool
            conn: PoolConnectionProxy[asyncpg.Record] = await pool.acquire()
        except (ValueError, OverflowError) as exc:
            # asyncpg read the URL, or a PG* variable, and found it wrong.
            raise DatabaseUrlError(f"{self.description}: {exc}") from exc
        except _REFUSED as exc:
            # Trying again changes nothing until someone fixes the settings.
            raise StoreError(f"cannot connect to {self.description}: {exc}") from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailableError(
                f"cannot connect to {self.description}: {exc}"
            ) from exc
        return conn

    def lock_for_server(self) -> None:
        """Nothing to claim: servers share the database, each sweeping the
        shards it holds advisory locks on (see ``ownership``)."""

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
            except TimeoutError:
                log.warning(
                    "postgresql connections still busy after %s s; cut them",
                    CLOSE_TIMEOUT,
                    extra={"action": "store_close_timeout"},
                )
                pool.terminate()

    def observe_commits(self, observer: CommitObserver | None) -> None:
        self._observer = observer
        if self._writer is not None:
            self._writer.observer = observer

    # Writes: each is one item of a group-committed batch.

    async def record_ping(self, ping: Ping) -> PingOutcome:
        future: asyncio.Future[PingOutcome] = asyncio.get_running_loop().create_future()
        self._submit(_Item(future, ping, kind=ping.kind, duration=ping.duration))
        return await future

    async def sweep(self, due: list[Due], now: float) -> list[SweepOutcome]:
        return await self._write(lambda conn: sweep(conn, due, now))

    async def add_check(self, check: Check) -> None:
        await self.add_checks([check], [])

    async def add_checks(self, checks: list[Check], channel_ids: list[str]) -> None:
        await self._write(lambda conn: add_checks(conn, checks, channel_ids))

    async def update_check(
        self, check: Check, channel_ids: list[str] | None = None
    ) -> None:
        await self._write(lambda conn: update_check(conn, check, channel_ids))

    async def delete_check(self, check_id: str) -> None:
        await self._write(lambda conn: delete_check(conn, check_id))

    async def pause_check(self, check_id: str, now: float) -> Check:
        return await self._write(lambda conn: pause(conn, check_id, now))

    async def resume_check(self, check_id: str, now: float) -> Check:
        return await self._write(lambda conn: resume(conn, check_id, now))

    async def heartbeat(self, now: float) -> None:
        await self._write(lambda conn: conn.execute(Q["set_meta"], "heartbeat", now))

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

        async def insert(conn: Connection) -> None:
            try:
                async with conn.transaction():
                    await conn.execute(Q["insert_channel"], *params)
            except asyncpg.UniqueViolationError as exc:
                raise ConflictError(str(exc)) from exc

        await self._write(insert)

    async def delete_channel(self, channel_id: str) -> None:
        await self._write(lambda conn: delete_channel(conn, channel_id))

    async def set_check_channels(self, check_id: str, channel_ids: list[str]) -> None:
        await self._write(lambda conn: link(conn, check_id, channel_ids))

    async def enqueue(self, deliveries: list[Delivery]) -> list[int]:
        return await self._write(lambda conn: insert_deliveries(conn, deliveries))

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
            lambda conn: claim(conn, now, limit, lease, crowded, per_channel, digests)
        )

    async def finish_attempt(self, delivery: Delivery, result: AttemptResult) -> None:
        await self.finish_attempts([delivery], result)

    async def finish_attempts(
        self, deliveries: list[Delivery], result: AttemptResult
    ) -> None:
        await self._write(lambda conn: finish(conn, deliveries, result))

    async def note_channel_result(self, channel_id: str, result: AttemptResult) -> None:
        params = (channel_id, result.at, result.ok, result.error)
        await self._write(lambda conn: conn.execute(Q["channel_result"], *params))

    async def release_claims(self) -> int:
        async def release(conn: Connection) -> int:
            return row_count(await conn.execute(Q["release_claims"]))

        return await self._write(release)

    # Reads.

    async def get_check(self, check_id: str) -> Check | None:
        shard = shard_or_none(check_id)
        if shard is None:
            return None
        row = await self._fetchrow(Q["get_check"], shard, check_id)
        return None if row is None else check_from_row(row)

    async def list_checks(self) -> list[Check]:
        return checks_from_rows(await self._fetch(Q["list_checks"]))

    async def count_checks(self) -> int:
        return int(await self._fetchval(Q["count_checks"]))

    async def count_by_status(self) -> dict[str, int]:
        rows = await self._fetch(Q["count_by_status"])
        return {row[0]: int(row[1]) for row in rows}

    async def recent_pings(self, check_id: str, limit: int) -> list[Ping]:
        shard = shard_or_none(check_id)
        if shard is None:
            return []
        rows = await self._fetch(Q["recent_pings"], shard, check_id, limit)
        return [ping_from_row(row) for row in rows]

    async def recent_flips(self, check_id: str, limit: int) -> list[Flip]:
        shard = shard_or_none(check_id)
        if shard is None:
            return []
        rows = await self._fetch(Q["recent_flips"], shard, check_id, limit)
        return [flip_from_row(row) for row in rows]

    async def load_deadlines(
        self, shards: list[int] | None = None
    ) -> list[tuple[str, int, float, float]]:
        if shards is None:
            rows = await self._fetch(Q["load_deadlines"])
        else:
            rows = await self._fetch(Q["load_shard_deadlines"], shards)
        return [(row[0], row[1], row[2], row[3]) for row in rows]

    def ownership(self) -> Ownership:
        from serverlord.store.postgres_ownership import PostgresOwnership

        return PostgresOwnership(self.dsn, self.description)

    async def changes_since(self, cursor: int) -> tuple[int, list[str]]:
        rows = await self._fetch(Q["changes_since"], cursor)
        if not rows:
            return cursor, []
        return rows[-1][0], [row[1] for row in rows]

    async def last_change(self) -> int:
        return int(await self._fetchval(Q["last_change"]))

    async def last_heartbeat(self) -> float | None:
        value = await self._fetchval(Q["get_meta"], "heartbeat")
        return None if value is None else float(value)

    async def get_channel(self, channel_id: str) -> Channel | None:
        row = await self._fetchrow(Q["get_channel"], channel_id)
        return None if row is None else channel_from_row(row)

    async def list_channels(self) -> list[Channel]:
        rows = await self._fetch(Q["list_channels"])
        return [channel_from_row(row) for row in rows]

    async def check_channels(self, check_id: str) -> list[str]:
        shard = shard_or_none(check_id)
        if shard is None:
            return []
        rows = await self._fetch(Q["check_channels"], shard, check_id)
        return [row[0] for row in rows]

    async def next_delivery_at(self) -> float | None:
        value = await self._fetchval(Q["next_delivery_at"])
        return None if value is None else float(value)

    async def recent_attempts(
        self, check_id: str, limit: int
    ) -> list[dict[str, object]]:
        shard = shard_or_none(check_id)
        if shard is None:
            return []
        rows = await self._fetch(Q["recent_attempts"], shard, check_id, limit)
        return [dict(row) for row in rows]

    # Plumbing.

    def _submit(self, item: _Item) -> None:
        if self._writer is None:
            raise StoreUnavailableError("the store is closed")
        self._writer.submit(item)

    async def _write(self, op: Callable[[Connection], Awaitable[T]]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._submit(_Item(future, op=op))
        return await future

    def _pool_or_fail(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreUnavailableError("the store is closed")
        return self._pool

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return await self._pool_or_fail().fetch(sql, *args)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailableError(str(exc)) from exc

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        rows = await self._fetch(sql, *args)
        return rows[0] if rows else None

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        row = await self._fetchrow(sql, *args)
        return None if row is None else row[0]
