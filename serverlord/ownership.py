"""Which shards this process sweeps, and what fell due while nobody watched.

Every check belongs to one of ``SHARD_COUNT`` shards, and each shard must be
swept by exactly one process. On SQLite there is only one server, so it owns
every shard (``SoleOwnership``). On PostgreSQL, processes share the shards
through advisory locks (``store.postgres_ownership``); both tell the server the
same things through the ``ShardOwner`` it gives them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from serverlord import clock
from serverlord.checks import SHARD_COUNT

ALL_SHARDS = range(SHARD_COUNT)


@dataclass(slots=True, frozen=True)
class OfflineWindow:
    """A time when no serverlord was watching: from ``since`` until ``until``.

    ``since`` is None when serverlord never ran on the store before. A check
    whose due time or deadline fell inside the window may have pinged while
    nobody listened: it is held back one grace period from ``until``.
    """

    since: float | None
    until: float

    def covers(self, due: float, deadline: float) -> bool:
        """Whether the check fell due, or its deadline fell, in the window.

        A window that lies wholly inside a grace period covers nothing: the
        job was late before serverlord went away, and its deadline is ahead.
        """
        return self._holds(due) or self._holds(deadline)

    def _holds(self, at: float) -> bool:
        return at < self.until and (self.since is None or at >= self.since)


class ShardOwner(Protocol):
    """What an ownership tells the server as shards come and go."""

    async def gain(self, shards: list[int], window: OfflineWindow) -> None:
        """Start sweeping these shards: load their deadlines (may raise
        StoreError, and the shards are then given back)."""
        ...

    def lose(self, shards: list[int]) -> None:
        """Stop sweeping these shards, at once."""
        ...

    def deadline_moved(self, shard: int, check_id: str, deadline: float) -> None:
        """Another process moved a check's deadline earlier."""
        ...

    def checks_changed(self) -> None:
        """Checks were added or edited: read the change feed now."""
        ...


class Ownership(Protocol):
    """How a process comes to own shards."""

    owned: set[int]

    async def join(self) -> OfflineWindow:
        """Become one of the processes sharing the store.

        Returns the window that the processes treat as offline: computed from
        the last heartbeat when this process is the only one, else the one
        the first of them recorded.
        """
        ...

    def alone(self) -> bool:
        """Whether no other process shared the store when this one joined."""
        ...

    async def start(self, owner: ShardOwner) -> None:
        """Take this process's first shards, then keep its share."""
        ...

    async def stop(self) -> None:
        """Give every shard back."""
        ...


class SoleOwnership:
    """The only server of an embedded store owns every shard."""

    def __init__(self, last_heartbeat: Callable[[], Awaitable[float | None]]) -> None:
        self.owned: set[int] = set()
        self._last_heartbeat = last_heartbeat
        self._window: OfflineWindow | None = None
        self._owner: ShardOwner | None = None

    async def join(self) -> OfflineWindow:
        since = await self._last_heartbeat()
        self._window = OfflineWindow(since, clock.now())
        return self._window

    def alone(self) -> bool:
        return True

    async def start(self, owner: ShardOwner) -> None:
        assert self._window is not None, "join() first"
        self._owner = owner
        await owner.gain(list(ALL_SHARDS), self._window)
        self.owned.update(ALL_SHARDS)

    async def stop(self) -> None:
        if self._owner is not None and self.owned:
            self._owner.lose(sorted(self.owned))
        self.owned.clear()
