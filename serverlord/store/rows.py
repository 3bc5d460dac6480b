"""Conversions between checks, pings, flips and the rows that store them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from operator import itemgetter
from typing import Any, Protocol

from serverlord.channels import Channel, Delivery
from serverlord.checks import Check, Deadline, Flip, deadline_of
from serverlord.pings import Ping
from serverlord.schedules import Schedule


class Row(Protocol):
    """A database row read by column name or position (sqlite3.Row,
    asyncpg.Record)."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def keys(self) -> Any: ...


class CheckReader:
    """Builds checks from the rows of a query, field by field by position.

    Looking each of a check's thirty columns up by name cost more than the
    rest of reading it; the positions are found once per set of columns. The
    fields come from ``Check`` itself: each is the column of its name, but
    the schedule, which is built from four.
    """

    SCHEDULE = ("kind", "timeout", "schedule", "tz")

    def __init__(self, columns: Sequence[str]) -> None:
        at = {name: i for i, name in enumerate(columns)}
        names = [field.name for field in dataclasses.fields(Check)]
        self._schedule_at = names.index("schedule")
        self._manual_at = names.index("manual_resume")
        del names[self._schedule_at]
        self._schedule = itemgetter(*(at[name] for name in self.SCHEDULE))
        self._fields = itemgetter(*(at[name] for name in names))

    def __call__(self, row: Sequence[Any] | Row) -> Check:
        values = list(self._fields(row))
        # Stored schedules were validated when they were saved: build them
        # directly instead of parsing them again on every ping.
        values.insert(self._schedule_at, Schedule(*self._schedule(row)))
        values[self._manual_at] = bool(values[self._manual_at])
        return Check(*values)


_readers: dict[tuple[str, ...], CheckReader] = {}


def check_reader(columns: Sequence[str]) -> CheckReader:
    """The reader of rows with these columns (one per query, kept)."""
    key = tuple(columns)
    reader = _readers.get(key)
    if reader is None:
        reader = _readers[key] = CheckReader(key)
    return reader


def check_from_row(row: Row) -> Check:
    return check_reader(row.keys())(row)


def checks_from_rows(rows: Sequence[Row]) -> list[Check]:
    if not rows:
        return []
    read = check_reader(rows[0].keys())
    return [read(row) for row in rows]


def check_to_row(check: Check) -> dict[str, Any]:
    deadline: Deadline | None = deadline_of(check)
    return {
        "id": check.id,
        "shard": check.shard,
        "name": check.name,
        "slug": check.slug,
        "tags": check.tags,
        "desc": check.desc,
        "kind": check.schedule.kind,
        "timeout": check.schedule.timeout,
        "schedule": check.schedule.expression,
        "tz": check.schedule.tz,
        "grace": check.grace,
        "max_runtime": check.max_runtime,
        "manual_resume": int(check.manual_resume),
        "status": check.status,
        "n_pings": check.n_pings,
        "last_ping": check.last_ping,
        "last_start": check.last_start,
        "last_start_rid": check.last_start_rid,
        "last_duration": check.last_duration,
        "deadline": None if deadline is None else deadline.at,
        "created": check.created,
        "version": check.version,
        "failure_threshold": check.failure_threshold,
        "recovery_threshold": check.recovery_threshold,
        "reminder_every": check.reminder_every,
        "fail_streak": check.fail_streak,
        "ok_streak": check.ok_streak,
        "missed": check.missed,
        "down_since": check.down_since,
        "next_reminder": check.next_reminder,
        "project": check.project,
    }


def state_params(check: Check) -> tuple[Any, ...]:
    """The columns a ping or a sweep changes, for ``update_check_state``."""
    deadline = deadline_of(check)
    return (
        check.status,
        check.n_pings,
        check.last_ping,
        check.last_start,
        check.last_start_rid,
        check.last_duration,
        None if deadline is None else deadline.at,
        check.fail_streak,
        check.ok_streak,
        check.missed,
        check.down_since,
        check.next_reminder,
        check.id,
        check.version,
    )


def channel_from_row(row: Row) -> Channel:
    return Channel(
        id=row["id"],
        name=row["name"],
        url=row["url"],
        kind=row["kind"],
        masked_url=row["masked_url"],
        created=row["created"],
        last_attempt=row["last_attempt"],
        last_ok=None if row["last_ok"] is None else bool(row["last_ok"]),
        last_error=row["last_error"],
        project=row["project"],
    )


def delivery_from_row(row: Row) -> Delivery:
    return Delivery(
        id=row["id"],
        flip_id=row["flip_id"],
        check_id=row["check_id"],
        channel_id=row["channel_id"],
        channel_url=row["url"],
        kind=row["kind"],
        title=row["title"],
        body=row["body"],
        attempts=row["attempts"],
        created=row["created"],
    )


def ping_to_params(ping: Ping, shard: int) -> tuple[Any, ...]:
    return (
        ping.check_id,
        shard,
        ping.n,
        ping.received,
        ping.kind,
        ping.exit_status,
        ping.method,
        ping.remote_addr,
        ping.user_agent,
        ping.rid,
        ping.duration,
        ping.body,
    )


def ping_from_row(row: Row) -> Ping:
    return Ping(
        check_id=row["check_id"],
        received=row["received"],
        kind=row["kind"],
        method=row["method"],
        exit_status=row["exit_status"],
        remote_addr=row["remote_addr"],
        user_agent=row["user_agent"],
        rid=row["rid"],
        body=bytes(row["body"]),
        duration=row["duration"],
        n=row["n"],
    )


def flip_to_params(flip: Flip) -> tuple[Any, ...]:
    return (
        flip.check_id,
        flip.shard,
        flip.at,
        flip.detected,
        flip.old_status,
        flip.new_status,
        flip.reason,
        flip.exit_status,
        flip.offline_from,
        flip.offline_until,
    )


def flip_from_row(row: Row) -> Flip:
    return Flip(
        check_id=row["check_id"],
        shard=row["shard"],
        at=row["at"],
        detected=row["detected"],
        old_status=row["old_status"],
        new_status=row["new_status"],
        reason=row["reason"],
        exit_status=row["exit_status"],
        offline_from=row["offline_from"],
        offline_until=row["offline_until"],
        id=row["id"],
    )
