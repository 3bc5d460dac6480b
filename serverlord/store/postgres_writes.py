"""The writes of the PostgreSQL store, run by its writer inside a batch.

Pings and sweeps touch many checks at once: their checks are read and locked
with one statement, changed in memory by the domain rules, and written back
with one statement per table. The other operations are single-row writes.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from serverlord import checks as rules
from serverlord.channels import AttemptResult, Delivery, Digests
from serverlord.checks import Check, Flip, deadline_of, shard_of
from serverlord.pings import Ping, apply_ping
from serverlord.store.base import (
    ChannelNotFoundError,
    CheckNotFoundError,
    ConflictError,
    Due,
    PingOutcome,
    SweepOutcome,
)
from serverlord.store.queries import load_queries
from serverlord.store.rows import (
    check_to_row,
    checks_from_rows,
    delivery_from_row,
    flip_to_params,
    ping_to_params,
    state_params,
)
from serverlord.store.writes import (
    alert_message,
    attempt_state,
    change_state,
    claim_window,
    confirm_due,
    digest_params,
    drops_reminders,
    next_deadline,
    prune_below,
    reminder_message,
)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = (
        asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
    )

Q = load_queries("postgres")

LOCK_SPACE = 0x534C4F52
"""First key of serverlord's advisory locks ("SLOR"); the second names the lock."""
CHANGES_LOCK = 2
"""Key of the lock that orders the change feed (see ``insert_change``)."""
SHARD_SPACE = LOCK_SPACE + 1
"""First key of the lock that owns a shard; the second is the shard."""
DEADLINES_CHANNEL = "serverlord_deadlines"
"""Told of each deadline that moved earlier: "<shard> <check id> <deadline>"."""
CHANGES_CHANNEL = "serverlord_changes"
"""Told that the change feed has new rows."""
NO_CHECK_SHARD = 0
"""The shard of a delivery that belongs to no check, like a channel test."""

_CHECK_COLUMNS = (
    "shard", "id", "name", "slug", "tags", "desc", "kind", "timeout",
    "schedule", "tz", "grace", "max_runtime", "manual_resume", "status",
    "n_pings", "last_ping", "last_start", "last_start_rid", "last_duration",
    "deadline", "created", "failure_threshold", "recovery_threshold",
    "reminder_every", "fail_streak", "ok_streak", "missed", "down_since",
    "next_reminder", "project",
)  # fmt: skip
"""The parameters of ``insert_check``, in order."""

_CONFIG_COLUMNS = (
    "shard", "id", "name", "slug", "tags", "desc", "kind", "timeout",
    "schedule", "tz", "grace", "max_runtime", "manual_resume",
    "failure_threshold", "recovery_threshold", "reminder_every",
    "next_reminder", "deadline", "version",
)  # fmt: skip
"""The parameters of ``update_check_config``, in order."""


def shard_or_none(check_id: str) -> int | None:
    """The check's shard, or None for an id that no check can have."""
    try:
        return shard_of(check_id)
    except ValueError:
        return None


def row_count(status: str) -> int:
    """The rows an INSERT, UPDATE or DELETE touched, from its status line."""
    return int(status.rsplit(" ", 1)[-1])


def columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows turned into one list per column, for the unnest of a statement."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


@dataclass(slots=True)
class _Message:
    """An alert or reminder owed to the channels of a check."""

    check: Check
    """The check as it was when the message was owed."""
    flip: Flip | None
    now: float
    last_body: bytes | None = None
    body_known: bool = False
    sent: bool = False
    """Whether deliveries were written (the check has channels)."""
    targets: list[str] = field(default_factory=list)
    """The channels it goes to."""


@dataclass(slots=True)
class _Batch:
    """What a batch of pings or a sweep writes, gathered to write at once."""

    saved: dict[str, Check] = field(default_factory=dict)
    pings: list[tuple[Any, ...]] = field(default_factory=list)
    prunes: dict[tuple[int, str], int] = field(default_factory=dict)
    flips: list[Flip] = field(default_factory=list)
    messages: list[_Message] = field(default_factory=list)
    stale_reminders: dict[str, int] = field(default_factory=dict)
    """Checks whose pending reminders are dropped, with their shards."""
    moved: list[str] = field(default_factory=list)
    """Deadlines moved earlier, for the owners of their shards to hear of."""

    def note_deadline(
        self, check: Check, before: float | None, after: float | None
    ) -> None:
        # The owner of the shard may be another process: a deadline that
        # moved later it finds when the old one fires, an earlier one it must
        # be told of, or it would notice too late.
        if after is not None and (before is None or after < before):
            self.moved.append(f"{check.shard} {check.id} {after!r}")

    def add_ping(self, check: Check, ping: Ping) -> None:
        self.pings.append(ping_to_params(ping, check.shard))
        below = prune_below(ping.n)
        if below is not None:
            self.prunes[check.shard, check.id] = below

    def add_flip(self, check: Check, flip: Flip, now: float) -> _Message | None:
        self.flips.append(flip)
        if drops_reminders(flip):
            self.stale_reminders[check.id] = check.shard
        if not rules.is_alert(flip):
            return None
        message = _Message(copy.copy(check), flip, now)
        self.messages.append(message)
        return message

    async def write(self, conn: Connection) -> None:
        await _save_states(conn, list(self.saved.values()))
        if self.pings:
            await conn.execute(Q["insert_pings"], *columns(self.pings, 12))
        if self.prunes:
            keys = list(self.prunes)
            await conn.execute(
                Q["prune_pings"],
                [shard for shard, _ in keys],
                [check_id for _, check_id in keys],
                list(self.prunes.values()),
            )
        await _insert_flips(conn, self.flips)
        if self.stale_reminders:
            stale = self.stale_reminders
            await conn.execute(Q["drop_reminders"], list(stale.values()), list(stale))
        await _deliver(conn, self.messages)
        if self.moved:
            channels = [DEADLINES_CHANNEL] * len(self.moved)
            await conn.execute(Q["notify"], channels, self.moved)


async def _lock_checks(conn: Connection, check_ids: list[str]) -> dict[str, Check]:
    """The checks of these ids, locked until the batch commits."""
    wanted: dict[str, int] = {}
    for check_id in check_ids:
        if check_id not in wanted:
            shard = shard_or_none(check_id)
            if shard is not None:
                wanted[check_id] = shard
    if not wanted:
        return {}
    rows = await conn.fetch(Q["lock_checks"], list(wanted.values()), list(wanted))
    return {check.id: check for check in checks_from_rows(rows)}


async def _save_states(conn: Connection, checks: list[Check]) -> None:
    if not checks:
        return
    rows = [(check.shard, *state_params(check)) for check in checks]
    saved = await conn.fetch(Q["save_states"], *columns(rows, 15))
    if len(saved) != len(checks):
        # Every check saved here was read under a row lock in this transaction.
        raise RuntimeError("a locked check changed its version")
    for check in checks:
        check.version += 1


async def _insert_flips(conn: Connection, flips: list[Flip]) -> None:
    if not flips:
        return
    rows = await conn.fetch(
        Q["insert_flips"], *columns([flip_to_params(f) for f in flips], 10)
    )
    # Ids grow in the order the rows were inserted, which is the flips' order.
    for flip, flip_id in zip(flips, sorted(row[0] for row in rows), strict=True):
        flip.id = flip_id


async def _deliver(conn: Connection, messages: list[_Message]) -> None:
    """Write one delivery per channel of each message's check."""
    if not messages:
        return
    keys = {m.check.id: m.check.shard for m in messages}
    rows = await conn.fetch(Q["channels_of_checks"], list(keys.values()), list(keys))
    channels: dict[str, list[str]] = {}
    for row in rows:
        channels.setdefault(row[0], []).append(row[1])
    for message in messages:
        message.targets = channels.get(message.check.id, [])
    await _skip_pending_reminders(conn, messages)
    owed = [m for m in messages if m.targets]

    unknown = {m.check.id: m.check.shard for m in owed if not m.body_known}
    if unknown:
        rows = await conn.fetch(Q["last_bodies"], list(unknown.values()), list(unknown))
        bodies = {row[0]: bytes(row[1]) for row in rows}
        for message in owed:
            if not message.body_known:
                message.last_body = bodies.get(message.check.id)

    deliveries = []
    for message in owed:
        check = message.check
        kind, title, body = _compose(message)
        flip_id = None if message.flip is None else message.flip.id
        for channel_id in message.targets:
            owed_to = (flip_id, check.id, check.shard, channel_id, kind, title, body)
            deliveries.append((*owed_to, message.now))
        message.sent = True
    if deliveries:
        await conn.fetch(Q["insert_deliveries"], *columns(deliveries, 8))


def _compose(message: _Message) -> tuple[str, str, str]:
    if message.flip is None:
        return reminder_message(message.check, message.last_body, message.now)
    composed = alert_message(
        message.check, message.flip, message.last_body, message.now
    )
    assert composed is not None, "only alerts are queued as messages"
    return composed


async def _skip_pending_reminders(conn: Connection, messages: list[_Message]) -> None:
    # One reminder waiting per channel is enough: a channel that is down must
    # not come back to a pile of them.
    reminders = {m.check.id: m.check.shard for m in messages if m.flip is None}
    if not reminders:
        return
    rows = await conn.fetch(
        Q["pending_reminders"], list(reminders.values()), list(reminders)
    )
    waiting = {(row[0], row[1]) for row in rows}
    for message in messages:
        if message.flip is None:
            check_id = message.check.id
            message.targets = [
                channel_id
                for channel_id in message.targets
                if (check_id, channel_id) not in waiting
            ]


async def record_pings(
    conn: Connection, pings: list[Ping]
) -> list[PingOutcome | CheckNotFoundError]:
    """Apply pings in order, one statement per table for all of them."""
    checks = await _lock_checks(conn, [ping.check_id for ping in pings])
    batch = _Batch()
    applied: list[tuple[Check, float | None, Flip | None, _Message | None] | None]
    applied = []
    for ping in pings:
        check = checks.get(ping.check_id)
        if check is None:
            applied.append(None)
            continue
        before = deadline_of(check)
        flip = apply_ping(check, ping)
        batch.saved[check.id] = check
        batch.add_ping(check, ping)
        message = None
        if flip is not None:
            message = batch.add_flip(check, flip, ping.received)
            if message is not None:
                # The ping that flipped the check is its latest one.
                message.last_body, message.body_known = ping.body, True
        deadline = deadline_of(check)
        at = None if deadline is None else deadline.at
        batch.note_deadline(check, None if before is None else before.at, at)
        applied.append((check, at, flip, message))
    await batch.write(conn)

    results: list[PingOutcome | CheckNotFoundError] = []
    for ping, done in zip(pings, applied, strict=True):
        if done is None:
            results.append(CheckNotFoundError(ping.check_id))
            continue
        check, at, flip, message = done
        notify = message is not None and message.sent
        results.append(PingOutcome(check.id, check.shard, at, flip, notify))
    return results


async def sweep(conn: Connection, due: list[Due], now: float) -> list[SweepOutcome]:
    """Confirm due checks: flip those whose deadline really passed."""
    checks = await _lock_checks(conn, [item.check_id for item in due])
    batch = _Batch()
    confirmed: list[tuple[Check, float | None, Flip | None, _Message | None]] = []
    for item in due:
        check = checks.get(item.check_id)
        if check is None:
            continue
        result = confirm_due(check, item, now)
        message = None
        if result is not None:
            batch.saved[check.id] = check
            if result.flip is not None:
                message = batch.add_flip(check, result.flip, now)
            elif result.remind:
                message = _Message(copy.copy(check), None, now)
                batch.messages.append(message)
        at = next_deadline(check)
        flip = None if result is None else result.flip
        confirmed.append((check, at, flip, message))
    await batch.write(conn)

    return [
        SweepOutcome(
            check.id, check.shard, at, flip, message is not None and message.sent
        )
        for check, at, flip, message in confirmed
    ]


async def _insert_change(conn: Connection, check: Check | str) -> None:
    await _insert_changes(conn, [check if isinstance(check, str) else check.id])


async def _insert_changes(conn: Connection, check_ids: list[str]) -> None:
    # Ids of the change feed come from a sequence, and a reader that saw id 6
    # must never find a 5 committed later: the lock makes writers of changes
    # commit in the order of their ids.
    await conn.execute(Q["lock"], LOCK_SPACE, CHANGES_LOCK)
    changes = [(shard_of(check_id), check_id) for check_id in check_ids]
    await conn.executemany(Q["insert_change"], changes)
    await conn.execute(Q["notify"], [CHANGES_CHANNEL], [""])


async def add_checks(
    conn: Connection, checks: list[Check], channel_ids: list[str]
) -> None:
    await _require_channels(conn, channel_ids)
    rows = []
    for check in checks:
        row = check_to_row(check)
        row["manual_resume"] = check.manual_resume
        rows.append([row[column] for column in _CHECK_COLUMNS])
    wanted = list(dict.fromkeys(channel_ids))

    async def write() -> None:
        await conn.executemany(Q["insert_check"], rows)
        await _insert_changes(conn, [check.id for check in checks])
        if wanted:
            links = [(check.shard, check.id, wanted) for check in checks]
            await conn.executemany(Q["link_channels"], links)

    await _all_or_nothing(conn, write, channel_ids)


async def update_check(
    conn: Connection, check: Check, channel_ids: list[str] | None = None
) -> None:
    row = check_to_row(check)
    row["manual_resume"] = check.manual_resume

    async def write() -> None:
        status = await conn.execute(
            Q["update_check_config"], *(row[c] for c in _CONFIG_COLUMNS)
        )
        if row_count(status) != 1:
            raise ConflictError(check.id)
        await _insert_change(conn, check)
        if channel_ids is not None:
            await link(conn, check.id, channel_ids)

    await _all_or_nothing(conn, write, channel_ids or [])


async def _all_or_nothing(
    conn: Connection, write: Callable[[], Awaitable[None]], channel_ids: list[str]
) -> None:
    """Run ``write`` under a savepoint, so that nothing of it stays when it
    fails: a check that exists already is a conflict, and a channel removed
    by another transaction since it was looked up is not found."""
    try:
        async with conn.transaction():
            await write()
    except asyncpg.UniqueViolationError as exc:
        raise ConflictError(str(exc)) from exc
    except asyncpg.ForeignKeyViolationError:
        await _require_channels(conn, channel_ids)  # names the missing one
        raise


async def delete_check(conn: Connection, check_id: str) -> None:
    shard = shard_or_none(check_id)
    if shard is None:
        raise CheckNotFoundError(check_id)
    if row_count(await conn.execute(Q["delete_check"], shard, check_id)) != 1:
        raise CheckNotFoundError(check_id)
    await _insert_change(conn, check_id)


async def _change(
    conn: Connection, check_id: str, change: Callable[[Check], Flip | None]
) -> Check:
    check = (await _lock_checks(conn, [check_id])).get(check_id)
    if check is None:
        raise CheckNotFoundError(check_id)
    flip = change_state(check, change)
    batch = _Batch(saved={check.id: check})
    if flip is not None:
        # Pausing and resuming are done by people, who need no alert of it.
        batch.flips.append(flip)
    if check.status == rules.PAUSED:
        batch.stale_reminders[check.id] = check.shard
    await batch.write(conn)
    await _insert_change(conn, check)
    return check


async def pause(conn: Connection, check_id: str, now: float) -> Check:
    return await _change(conn, check_id, lambda check: rules.pause(check, now))


async def resume(conn: Connection, check_id: str, now: float) -> Check:
    return await _change(conn, check_id, lambda check: rules.resume(check, now))


async def delete_channel(conn: Connection, channel_id: str) -> None:
    if row_count(await conn.execute(Q["delete_channel"], channel_id)) != 1:
        raise ChannelNotFoundError(channel_id)


async def _require_channels(conn: Connection, channel_ids: list[str]) -> None:
    known = {row[0] for row in await conn.fetch(Q["known_channels"], channel_ids)}
    for channel_id in channel_ids:
        if channel_id not in known:
            raise ChannelNotFoundError(channel_id)


async def link(conn: Connection, check_id: str, channel_ids: list[str]) -> None:
    check = (await _lock_checks(conn, [check_id])).get(check_id)
    if check is None:
        raise CheckNotFoundError(check_id)
    await _require_channels(conn, channel_ids)
    await conn.execute(Q["unlink_channels"], check.shard, check.id)
    wanted = list(dict.fromkeys(channel_ids))
    await conn.execute(Q["link_channels"], check.shard, check.id, wanted)


def _delivery_shard(check_id: str | None) -> int:
    shard = None if check_id is None else shard_or_none(check_id)
    return NO_CHECK_SHARD if shard is None else shard


async def insert_deliveries(conn: Connection, deliveries: list[Delivery]) -> list[int]:
    await _require_channels(conn, [item.channel_id for item in deliveries])
    rows = [
        (
            item.flip_id,
            item.check_id,
            _delivery_shard(item.check_id),
            item.channel_id,
            item.kind,
            item.title,
            item.body,
            item.created,
        )
        for item in deliveries
    ]
    if not rows:
        return []
    inserted = await conn.fetch(Q["insert_deliveries"], *columns(rows, 8))
    ids = sorted(row[0] for row in inserted)
    for item, delivery_id in zip(deliveries, ids, strict=True):
        item.id = delivery_id
    return ids


async def claim(
    conn: Connection,
    now: float,
    limit: int,
    lease: float,
    crowded: list[str],
    per_channel: int,
    digests: Digests | None,
) -> list[Delivery]:
    # Claims of a notifier that died mid-send run out with their lease.
    await conn.execute(Q["expired_claims"], now)
    rows = await conn.fetch(
        Q["claim_deliveries"],
        now + lease,
        now,
        limit,
        crowded,
        per_channel,
        *digest_params(digests),
        claim_window(limit, digests),
    )
    rows.sort(key=lambda row: (row["next_attempt"], row["id"]))
    return [delivery_from_row(row) for row in rows]


async def finish(
    conn: Connection, deliveries: list[Delivery], result: AttemptResult
) -> None:
    state, next_attempt, finished = attempt_state(result)
    shards = [_delivery_shard(d.check_id) for d in deliveries]
    ids = [d.id for d in deliveries]
    # Those no longer claimed lost their channel or check while being sent.
    done = await conn.fetch(
        Q["finish_deliveries"], shards, ids, state, next_attempt, finished
    )
    if not done:
        return
    await conn.execute(
        Q["insert_attempts"],
        [row["shard"] for row in done],
        [row["id"] for row in done],
        result.at,
        result.ok,
        result.error,
        result.latency,
    )
    channels = sorted({row["channel_id"] for row in done})
    await conn.execute(
        Q["channel_results"], channels, result.at, result.ok, result.error
    )
