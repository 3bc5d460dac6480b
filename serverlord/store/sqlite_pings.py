"""Pings recorded on the SQLite writer, one by one or a run of them together.

Every function here runs on the writer thread inside the batch's transaction
(see ``sqlite_writer``); a flip writes its deliveries in that same transaction.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from serverlord.checks import Check, Flip
from serverlord.pings import Ping, apply_ping
from serverlord.store import writes
from serverlord.store.base import CheckNotFoundError, ConflictError, PingOutcome
from serverlord.store.queries import load_queries
from serverlord.store.rows import (
    check_from_row,
    flip_to_params,
    ping_to_params,
    state_params,
)
from serverlord.store.sqlite_reads import CheckCache

Q = load_queries("sqlite")


def load_check(conn: sqlite3.Connection, check_id: str) -> Check:
    row = conn.execute(Q["get_check"], (check_id,)).fetchone()
    if row is None:
        raise CheckNotFoundError(check_id)
    return check_from_row(row)


def save_state(conn: sqlite3.Connection, check: Check) -> float | None:
    params = state_params(check)
    cursor = conn.execute(Q["update_check_state"], params)
    if cursor.rowcount != 1:
        raise ConflictError(check.id)
    check.version += 1
    deadline: float | None = params[6]
    return deadline


def insert_flip(conn: sqlite3.Connection, flip: Flip) -> None:
    flip.id = conn.execute(Q["insert_flip"], flip_to_params(flip)).fetchone()[0]


def record_ping(conn: sqlite3.Connection, ping: Ping) -> PingOutcome:
    check = load_check(conn, ping.check_id)
    flip = apply_ping(check, ping)
    deadline = save_state(conn, check)
    conn.execute(Q["insert_ping"], ping_to_params(ping, check.shard))
    below = writes.prune_below(ping.n)
    if below is not None:
        conn.execute(Q["prune_pings"], (check.id, below))
    notify = False
    if flip is not None:
        insert_flip(conn, flip)
        notify = enqueue_alerts(conn, check, flip, ping.received)
    return PingOutcome(check.id, check.shard, deadline, flip, notify)


class PingWrite:
    """The operation of one ping. The writer spots these in a batch and
    writes the pings next to each other together (``record_ping_run``)."""

    __slots__ = ("ping",)

    def __init__(self, ping: Ping) -> None:
        self.ping = ping

    def __call__(self, conn: sqlite3.Connection) -> PingOutcome:
        return record_ping(conn, self.ping)


def ping_run_length(batch: list[tuple[Any, Any]], start: int) -> int:
    """How many operations from ``start`` on are pings, one after another."""
    end = start
    while end < len(batch) and type(batch[end][0]) is PingWrite:
        end += 1
    return end - start


def record_ping_run(
    conn: sqlite3.Connection, run: list[tuple[Any, Any]], cache: CheckCache
) -> list[tuple[Any, Any, BaseException | None]]:
    """Record pings that follow each other in a batch with a few statements.

    Their checks are read with one query; each ping is applied in its turn
    to its check in memory, so that two pings of one check see each other,
    as they would one by one; each check's final state is written once and
    the ping rows with one statement. The result is what ``record_ping``
    gives for each in turn (but a check's version, raised once), for about
    a sixth less of the writer's time per ping. Checks come from the
    writer's cache when their row has not changed since.
    """
    pings: list[Ping] = [op.ping for op, _ in run]
    checks = cache.read(conn, list(dict.fromkeys(p.check_id for p in pings)))
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
            insert_flip(conn, flip)
            notify = enqueue_alerts(conn, check, flip, ping.received)
        outcome = PingOutcome(check.id, check.shard, params[6], flip, notify)
        outcomes.append((future, outcome, None))

    saved = conn.executemany(Q["update_check_state"], list(states.values())).rowcount
    if saved != len(states):
        # Nothing else writes between the read above and this update.
        raise ConflictError(f"{len(states) - saved} checks changed under a ping")
    for check_id in states:
        checks[check_id].version += 1
    conn.executemany(Q["insert_ping"], rows)
    conn.executemany(Q["prune_pings"], prunes)
    return outcomes


def enqueue_alerts(
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
