"""What every store offers the server and the CLI, whatever its backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from serverlord.channels import AttemptResult, Channel, Delivery, Digests
from serverlord.checks import Check, Flip
from serverlord.ownership import Ownership
from serverlord.pings import Ping
from serverlord.store.projects import ProjectStore
from serverlord.store.queries import Migration

PINGS_KEPT = 1000
"""How many recent pings a check keeps; older ones are pruned as new ones come."""

CommitObserver = Callable[[int, float, bool], None]
"""Told of each group commit: operations in it, seconds it took, whether it
committed. Called on the thread that writes, so it must be quick."""


class StoreError(Exception):
    """The root of the store's errors."""


class CheckNotFoundError(StoreError):
    """No check has the given id."""


class StoreUnavailableError(StoreError):
    """The database refused a write (disk full, locked, gone): try again later."""


class ChannelNotFoundError(StoreError):
    """No channel has the given id."""


class ConflictError(StoreError):
    """A check changed under a compare-and-set; nothing was written."""


class SchemaBehindError(StoreError):
    """The database lacks migrations this serverlord needs, and migrating on open
    is off."""


class SchemaAheadError(StoreError):
    """The database was migrated by a newer serverlord than this one."""


def refuse_newer(version: int, migrations: list[Migration]) -> None:
    """Refuse a database whose schema has migrations this serverlord lacks.

    An older binary would read and write tables it does not understand.
    """
    known = max((number for number, _, _ in migrations), default=0)
    if version > known:
        raise SchemaAheadError(
            f"its schema is newer than this serverlord (migration {version:04d}; "
            f"this one knows up to {known:04d}): run the newer serverlord, or "
            "restore a backup taken before it migrated"
        )


class DatabaseUrlError(StoreError):
    """The database URL cannot be used as it is written."""


def schema_behind(pending: list[Migration]) -> SchemaBehindError:
    names = ", ".join(f"{number:04d}_{name}" for number, name, _ in pending)
    return SchemaBehindError(
        f"its schema is behind this serverlord (not applied: {names}): run "
        "`serverlord db migrate`, or let it migrate on start with "
        "--auto-migrate true"
    )


@dataclass(slots=True, frozen=True)
class PingOutcome:
    """What a committed ping did: its check's new deadline and any flip."""

    check_id: str
    shard: int
    deadline: float | None
    flip: Flip | None
    notify: bool = False
    """Whether deliveries were written for the notifier."""


@dataclass(slots=True, frozen=True)
class Due:
    """A check whose deadline a sweeper saw pass, to confirm against the store."""

    check_id: str
    not_before: float | None = None
    offline_from: float | None = None
    offline_until: float | None = None
    seen: float | None = None
    """The deadline the sweeper timed on the monotonic clock (None when it was
    asked to confirm the check, not timing a deadline): a stored deadline at
    or before it has passed, even when a step back of the system clock put
    ``now`` behind it."""


@dataclass(slots=True, frozen=True)
class SweepOutcome:
    """The confirmed state of a due check: flipped, rescheduled or idle."""

    check_id: str
    shard: int
    deadline: float | None
    flip: Flip | None
    notify: bool = False


class Store(ProjectStore, Protocol):
    """The contract both backends pass; every method is safe to call at once."""

    description: str

    async def open(self) -> None: ...

    def lock_for_server(self) -> None:
        """Claim the store for one server process where the backend needs it."""
        ...

    async def close(self) -> None: ...

    def observe_commits(self, observer: CommitObserver | None) -> None:
        """Have ``observer`` told of every group commit from now on."""
        ...

    async def record_ping(self, ping: Ping) -> PingOutcome: ...

    async def sweep(self, due: list[Due], now: float) -> list[SweepOutcome]: ...

    async def add_check(self, check: Check) -> None: ...

    async def add_checks(self, checks: list[Check], channel_ids: list[str]) -> None:
        """Add many checks in one transaction, each linked to these channels:
        all or none (ConflictError when one exists, ChannelNotFoundError)."""
        ...

    async def update_check(
        self, check: Check, channel_ids: list[str] | None = None
    ) -> None:
        """Save the check's configuration (ConflictError if its version moved)
        and, given ``channel_ids``, link exactly those: both or neither."""
        ...

    async def delete_check(self, check_id: str) -> None: ...

    async def pause_check(self, check_id: str, now: float) -> Check: ...

    async def resume_check(self, check_id: str, now: float) -> Check: ...

    async def get_check(self, check_id: str) -> Check | None: ...

    async def list_checks(self) -> list[Check]: ...

    async def count_checks(self) -> int: ...

    async def count_by_status(self) -> dict[str, int]:
        """How many checks have each stored status (new, up, down, paused)."""
        ...

    async def recent_pings(self, check_id: str, limit: int) -> list[Ping]: ...

    async def recent_flips(self, check_id: str, limit: int) -> list[Flip]: ...

    async def load_deadlines(
        self, shards: list[int] | None = None
    ) -> list[tuple[str, int, float, float]]:
        """The pending deadlines of these shards (None: all) as (check id,
        shard, deadline, grace)."""
        ...

    def ownership(self) -> Ownership:
        """How a server on this store comes to own shards to sweep."""
        ...

    async def changes_since(self, cursor: int) -> tuple[int, list[str]]: ...

    async def last_change(self) -> int: ...

    async def heartbeat(self, now: float) -> None: ...

    async def last_heartbeat(self) -> float | None: ...

    # Channels and the outbox of deliveries.

    async def add_channel(self, channel: Channel) -> None: ...

    async def get_channel(self, channel_id: str) -> Channel | None: ...

    async def list_channels(self) -> list[Channel]: ...

    async def delete_channel(self, channel_id: str) -> None: ...

    async def set_check_channels(self, check_id: str, channel_ids: list[str]) -> None:
        """Link exactly these channels to the check (ChannelNotFoundError if any
        is unknown; nothing changes then)."""
        ...

    async def check_channels(self, check_id: str) -> list[str]: ...

    async def enqueue(self, deliveries: list[Delivery]) -> list[int]:
        """Add deliveries that belong to no flip (a channel test); return ids."""
        ...

    async def claim_deliveries(
        self,
        now: float,
        limit: int,
        lease: float,
        crowded: list[str] = [],  # noqa: B006 - read only
        per_channel: int = 8,
        digests: Digests | None = None,
    ) -> list[Delivery]:
        """Take the due deliveries of up to ``limit`` messages, each held for
        ``lease`` seconds.

        A message is one delivery, or under ``digests`` up to ``per_digest``
        deliveries of a channel in a storm. Two callers never get the same
        delivery. None goes to a ``crowded`` channel, at most ``per_channel``
        messages go to any other, and one waits while an earlier delivery of
        its check to the same channel is unfinished, so a channel hears of a
        check's flips in order. Alerts go before reminders.
        """
        ...

    async def finish_attempt(self, delivery: Delivery, result: AttemptResult) -> None:
        """Record an attempt; sent, failed for good, or pending again."""
        ...

    async def finish_attempts(
        self, deliveries: list[Delivery], result: AttemptResult
    ) -> None:
        """Record one attempt that carried all ``deliveries`` (a digest), in
        one write."""
        ...

    async def note_channel_result(self, channel_id: str, result: AttemptResult) -> None:
        """Remember a channel's latest result (of a test message, say)."""
        ...

    async def next_delivery_at(self) -> float | None:
        """When the earliest pending delivery falls due, if any."""
        ...

    async def release_claims(self) -> int:
        """Make deliveries claimed by a dead process pending again."""
        ...

    async def recent_attempts(
        self, check_id: str, limit: int
    ) -> list[dict[str, object]]:
        """The latest delivery attempts for a check's alerts, newest first."""
        ...
