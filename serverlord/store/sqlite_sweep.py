"""A sweep on SQLite: many due checks confirmed with a few statements.

Runs on the writer thread inside the batch's transaction, like every write.
All due checks are read with one query and confirmed in memory; states,
flips and deliveries are written with one ``executemany`` each, and the
channels, pending reminders and last ping bodies of the checks that owe a
message are read with one query each. A wave of many thousands of checks
falling due at once costs a few statements per sweep, not a dozen per check.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

from serverlord import checks as rules
from serverlord.checks import Check, Flip
from serverlord.store import writes
from serverlord.store.base import Due, SweepOutcome
from serverlord.store.queries import load_queries
from serverlord.store.rows import flip_to_params, state_params
from serverlord.store.sqlite_reads import CheckCache

Q = load_queries("sqlite")


@dataclass(slots=True)
class _Owed:
    """An alert or reminder owed to the channels of one check."""

    check: Check
    flip: Flip | None
    """The flip it announces; None for a reminder."""
    channels: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Confirmed:
    """What confirming one due check decided."""

    check: Check
    deadline: float | None
    flip: Flip | None = None
    owed: _Owed | None = None


def sweep(
    conn: sqlite3.Connection, due: list[Due], now: float, cache: CheckCache
) -> list[SweepOutcome]:
    """Confirm due checks: flip those whose deadline really passed."""
    # Checks that fell silent are seldom read again soon: only those the
    # cache holds already are taken from it.
    checks = cache.read(conn, [item.check_id for item in due], keep=False)
    saved: dict[str, Check] = {}
    confirmed = []
    for item in due:
        check = checks.get(item.check_id)
        if check is not None:
            confirmed.append(_confirm(check, item, now, saved))

    _save_states(conn, list(saved.values()))
    flips = [done.flip for done in confirmed if done.flip is not None]
    _insert_flips(conn, flips)
    _drop_stale_reminders(conn, flips)
    owed = [done.owed for done in confirmed if done.owed is not None]
    _deliver(conn, owed, now)

    return [
        SweepOutcome(
            done.check.id,
            done.check.shard,
            done.deadline,
            done.flip,
            done.owed is not None and bool(done.owed.channels),
        )
        for done in confirmed
    ]


def _confirm(
    check: Check, item: Due, now: float, saved: dict[str, Check]
) -> _Confirmed:
    result = writes.confirm_due(check, item, now)
    at = writes.next_deadline(check)
    if result is None:
        # A ping moved the deadline since the sweeper saw it: reschedule.
        return _Confirmed(check, at)

    saved[check.id] = check
    if result.flip is not None:
        flip = result.flip
        owed = _Owed(check, flip) if rules.is_alert(flip) else None
        return _Confirmed(check, at, flip, owed)
    if result.remind:
        return _Confirmed(check, at, None, _Owed(check, None))
    return _Confirmed(check, at)


def _save_states(conn: sqlite3.Connection, checks: list[Check]) -> None:
    """Write the checks back, each with a compare-and-set on its version."""
    if not checks:
        return
    cursor = conn.executemany(Q["update_check_state"], map(state_params, checks))
    if cursor.rowcount != len(checks):
        # Every check was read in this transaction by the only writer: a
        # version that moved is a bug, and the writer undoes the whole batch.
        raise RuntimeError("a check changed its version within a transaction")
    for check in checks:
        check.version += 1


def _insert_flips(conn: sqlite3.Connection, flips: list[Flip]) -> None:
    if not flips:
        return
    last = conn.execute(Q["last_flip_id"]).fetchone()[0]
    conn.executemany(Q["add_flip"], map(flip_to_params, flips))
    # The only writer inserted them in this order: the ids above the last
    # one before them are theirs, in the same order.
    ids = [row[0] for row in conn.execute(Q["flip_ids_after"], (last,))]
    for flip, flip_id in zip(flips, ids, strict=True):
        flip.id = flip_id


def _drop_stale_reminders(conn: sqlite3.Connection, flips: list[Flip]) -> None:
    stale = [(flip.check_id,) for flip in flips if writes.drops_reminders(flip)]
    if stale:
        conn.executemany(Q["drop_reminders"], stale)


def _deliver(conn: sqlite3.Connection, owed: list[_Owed], now: float) -> None:
    """Write one delivery per linked channel of each message owed."""
    if not owed:
        return
    channels = _channels_of(conn, [message.check.id for message in owed])
    for message in owed:
        message.channels = channels.get(message.check.id, [])
    _skip_pending_reminders(conn, [m for m in owed if m.flip is None])

    sent = [message for message in owed if message.channels]
    bodies = _last_bodies(conn, [message.check.id for message in sent])
    conn.executemany(Q["add_delivery"], _deliveries(sent, bodies, now))


def _channels_of(
    conn: sqlite3.Connection, check_ids: list[str]
) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for check_id, channel_id in conn.execute(
        Q["channels_of_checks"], (json.dumps(check_ids),)
    ):
        found.setdefault(check_id, []).append(channel_id)
    return found


def _skip_pending_reminders(conn: sqlite3.Connection, reminders: list[_Owed]) -> None:
    # One reminder waiting per channel is enough: a channel that is down must
    # not come back to a pile of them.
    if not reminders:
        return
    ids = json.dumps([message.check.id for message in reminders])
    rows = conn.execute(Q["pending_reminders"], (ids,))
    waiting = {(row[0], row[1]) for row in rows}
    for message in reminders:
        check_id = message.check.id
        message.channels = [
            channel_id
            for channel_id in message.channels
            if (check_id, channel_id) not in waiting
        ]


def _last_bodies(
    conn: sqlite3.Connection, check_ids: list[str]
) -> dict[str, bytes | None]:
    if not check_ids:
        return {}
    rows = conn.execute(Q["last_bodies"], (json.dumps(check_ids),))
    return {row[0]: None if row[1] is None else bytes(row[1]) for row in rows}


def _deliveries(
    sent: list[_Owed], bodies: dict[str, bytes | None], now: float
) -> Iterable[tuple[object, ...]]:
    for message in sent:
        check, flip = message.check, message.flip
        last_body = bodies.get(check.id)
        if flip is None:
            kind, title, body = writes.reminder_message(check, last_body, now)
        else:
            composed = writes.alert_message(check, flip, last_body, now)
            assert composed is not None, "only alerts are owed for flips"
            kind, title, body = composed
        flip_id = None if flip is None else flip.id
        for channel_id in message.channels:
            owed_to = (flip_id, check.id, check.shard, channel_id, kind, title, body)
            yield (*owed_to, now, now)
