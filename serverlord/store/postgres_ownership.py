"""Shards shared by serverlord processes through PostgreSQL advisory locks.

Each process keeps one connection of its own, outside the pool (the pool's
reset would release its locks), and on it:

- a *member* lock, so that every process can count the others;
- one lock per shard it sweeps; every second it takes free shards up to its
  fair share (shards / members) or gives back those above it, so a process
  that starts gets its share and the shards of one that died are taken over;
- LISTEN for deadlines that other processes moved earlier, and for edits.

A process that loses the connection has lost its locks with it: it stops
sweeping every shard at once, then joins again when it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random

import asyncpg

from serverlord import clock
from serverlord.checks import SHARD_COUNT
from serverlord.ownership import ALL_SHARDS, OfflineWindow, ShardOwner
from serverlord.store.base import StoreError, StoreUnavailableError
from serverlord.store.postgres_writes import (
    CHANGES_CHANNEL,
    DEADLINES_CHANNEL,
    LOCK_SPACE,
    SHARD_SPACE,
    Q,
)

log = logging.getLogger(__name__)

MEMBER_SPACE = LOCK_SPACE + 2
"""First key of the lock each process holds while it shares the store."""
JOIN_LOCK = 3
"""Key of the lock under which one process at a time joins."""
BALANCE_EVERY = 1.0
"""How often a process looks for shards to take or give back."""
BALANCE_TIMEOUT = 3.0
"""Longest wait for the database while balancing; longer counts as lost."""
RECONNECT_FIRST = 0.5
RECONNECT_MAX = 5.0
CONNECT_TIMEOUT = 5.0

# The server ends the session of a process that went silent (frozen, or cut
# off by the network), which frees its shards for the others: an idle
# session after a minute, a dead peer after ~11 s of failed keep-alives.
_SESSION_SETTINGS = {
    "application_name": "serverlord-shards",
    "idle_session_timeout": "60s",
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}
_rng = random.Random()
_LOST = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class PostgresOwnership:
    """This process's share of the shards of a PostgreSQL store."""

    def __init__(self, dsn: str, description: str) -> None:
        self.dsn = dsn
        self.description = description
        self.owned: set[int] = set()
        self.member = _rng.randrange(1, 2**31)
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._window: OfflineWindow | None = None
        self._alone = True
        self._last_contact: float | None = None
        self._owner: ShardOwner | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    async def join(self) -> OfflineWindow:
        conn = await self._connect()
        try:
            self._window = await self._enter(conn)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        return self._window

    def alone(self) -> bool:
        return self._alone

    async def start(self, owner: ShardOwner) -> None:
        self._owner = owner
        await self._keep_share()
        self._task = asyncio.create_task(self._run(), name="serverlord-shards")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._lose_all()
        conn, self._conn = self._conn, None
        if conn is not None:
            # Ending the session gives back every lock it holds.
            try:
                await asyncio.wait_for(conn.close(), BALANCE_TIMEOUT)
            except (TimeoutError, *_LOST):
                conn.terminate()

    # Joining.

    async def _connect(self) -> asyncpg.Connection[asyncpg.Record]:
        try:
            conn: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(
                self.dsn, timeout=CONNECT_TIMEOUT, server_settings=_SESSION_SETTINGS
            )
        except _LOST as exc:
            raise StoreUnavailableError(
                f"cannot connect to {self.description}: {exc}"
            ) from exc
        conn.add_termination_listener(self._terminated)
        return conn

    async def _enter(self, conn: asyncpg.Connection[asyncpg.Record]) -> OfflineWindow:
        now = clock.now()
        async with conn.transaction():
            # Joins take turns, so the first process of a cluster records the
            # offline window before any other reads it.
            await conn.execute(Q["lock"], LOCK_SPACE, JOIN_LOCK)
            members = await conn.fetch(Q["advisory_locks"], [MEMBER_SPACE])
            await conn.execute(Q["session_lock"], MEMBER_SPACE, self.member)
            self._alone = not members
            if self._alone:
                window = await self._record_window(conn, now)
            else:
                window = await self._recorded_window(conn)
        await conn.add_listener(DEADLINES_CHANNEL, self._deadline_moved)
        await conn.add_listener(CHANGES_CHANNEL, self._checks_changed)
        self._last_contact = now
        log.info(
            "joined %s as shard member %d, %d other members",
            self.description,
            self.member,
            len(members),
            extra={"action": "shards_join", "members": len(members) + 1},
        )
        return window

    async def _record_window(
        self, conn: asyncpg.Connection[asyncpg.Record], now: float
    ) -> OfflineWindow:
        # Nobody watched since the last sign of life: the last heartbeat at a
        # first start, the last time this process reached the database after
        # it lost it (the heartbeat may have been written since).
        since = self._last_contact
        if since is None:
            since = await conn.fetchval(Q["get_meta"], "heartbeat")
        await conn.execute(Q["set_meta"], "offline_since", since or 0.0)
        await conn.execute(Q["set_meta"], "offline_until", now)
        return OfflineWindow(since, now)

    async def _recorded_window(
        self, conn: asyncpg.Connection[asyncpg.Record]
    ) -> OfflineWindow:
        since = await conn.fetchval(Q["get_meta"], "offline_since")
        until = await conn.fetchval(Q["get_meta"], "offline_until")
        if until is None:
            return OfflineWindow(None, 0.0)
        return OfflineWindow(since or None, until)

    # Keeping a fair share.

    async def _run(self) -> None:
        delay = RECONNECT_FIRST
        while True:
            if self._conn is None:
                try:
                    await self.join()
                except StoreError as exc:
                    log.warning(
                        "shards: %s; trying again in %.1f s",
                        exc,
                        delay,
                        extra={"action": "shards_reconnect"},
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX)
                    continue
                delay = RECONNECT_FIRST
            await self._keep_share()
            self._lost.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BALANCE_EVERY):
                    await self._lost.wait()

    async def _keep_share(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            async with asyncio.timeout(BALANCE_TIMEOUT):
                gained = await self._balance(conn)
        except _LOST as exc:
            self._drop(exc)
            return
        self._last_contact = clock.now()
        if gained:
            await self._gain(conn, gained)

    async def _balance(self, conn: asyncpg.Connection[asyncpg.Record]) -> list[int]:
        """Give back shards above the fair share, or take free ones up to it."""
        rows = await conn.fetch(Q["advisory_locks"], [MEMBER_SPACE, SHARD_SPACE])
        members = sum(1 for row in rows if row["space"] == MEMBER_SPACE)
        fair = math.ceil(SHARD_COUNT / max(1, members))

        if len(self.owned) > fair:
            extra = _rng.sample(sorted(self.owned), len(self.owned) - fair)
            self._lose(extra)
            await conn.execute(Q["unlock_shards"], SHARD_SPACE, extra)
            log.info(
                "gave back %d shards (%d members), sweeping %d",
                len(extra),
                members,
                len(self.owned),
                extra={"action": "shards_released", "count": len(extra)},
            )
            return []

        taken = {row["key"] for row in rows if row["space"] == SHARD_SPACE}
        free = [shard for shard in ALL_SHARDS if shard not in taken]
        wanted = min(fair - len(self.owned), len(free))
        if wanted <= 0:
            return []
        # Random picks keep processes that start together from all trying
        # the same shards.
        tried = _rng.sample(free, wanted)
        rows = await conn.fetch(Q["try_shards"], SHARD_SPACE, tried)
        got: list[int] = [row[0] for row in rows]
        self.owned.update(got)
        return got

    async def _gain(
        self, conn: asyncpg.Connection[asyncpg.Record], shards: list[int]
    ) -> None:
        assert self._owner is not None and self._window is not None
        try:
            await self._owner.gain(shards, self._window)
        except StoreError as exc:
            log.warning(
                "could not load the deadlines of %d shards: %s; giving them back",
                len(shards),
                exc,
                extra={"action": "shards_load_failed", "count": len(shards)},
            )
            self._lose(shards)
            with contextlib.suppress(*_LOST):
                async with asyncio.timeout(BALANCE_TIMEOUT):
                    await conn.execute(Q["unlock_shards"], SHARD_SPACE, shards)
            return
        log.info(
            "took %d shards, sweeping %d",
            len(shards),
            len(self.owned),
            extra={"action": "shards_taken", "count": len(shards)},
        )

    # Losing shards.

    def _lose(self, shards: list[int]) -> None:
        self.owned.difference_update(shards)
        if self._owner is not None and shards:
            self._owner.lose(shards)

    def _lose_all(self) -> None:
        self._lose(sorted(self.owned))

    def _drop(self, exc: BaseException) -> None:
        """The connection is gone or stuck: so are the locks it held."""
        count = len(self.owned)
        self._lose_all()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
        log.warning(
            "lost the shard connection to %s (%s); stopped sweeping %d shards",
            self.description,
            exc or type(exc).__name__,
            count,
            extra={"action": "shards_lost", "count": count},
        )

    def _terminated(self, conn: object) -> None:
        # Called when the connection closes, also when the server ends it:
        # its locks are free for others now, so stop at once.
        if conn is self._conn:
            self._drop(ConnectionError("the server closed it"))
            self._lost.set()

    # Notifications.

    def _deadline_moved(
        self, conn: object, pid: int, channel: str, payload: object
    ) -> None:
        try:
            shard_text, check_id, at_text = str(payload).split(" ")
            shard, at = int(shard_text), float(at_text)
        except ValueError:
            log.warning(
                "ignored a malformed deadline notification %r",
                payload,
                extra={"action": "notification_ignored"},
            )
            return
        if shard in self.owned and self._owner is not None:
            self._owner.deadline_moved(shard, check_id, at)

    def _checks_changed(
        self, conn: object, pid: int, channel: str, payload: object
    ) -> None:
        if self._owner is not None:
            self._owner.checks_changed()
