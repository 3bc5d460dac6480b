"""Checks, their status rules and the flips between statuses.

A check stores one of four statuses: new, up, down or paused. Two more are
derived when it is read: ``grace`` (late, not yet down) and ``started`` (a run
is open). Every time is a float of seconds since the epoch, in UTC.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from serverlord.schedules import Schedule

SHARD_COUNT = 1024
"""Checks are spread over this many shards by a hash of their id, fixed forever."""

NEW, UP, DOWN, PAUSED = "new", "up", "down", "paused"
GRACE, STARTED = "grace", "started"

# Reasons a flip gives for a status change.
MISSED = "missed"
MISSED_OFFLINE = "missed_offline"
FAILURE = "failure"
EXIT_STATUS = "exit_status"
RUN_TOO_LONG = "run_too_long"
SUCCESS = "success"
PAUSE = "pause"
RESUME = "resume"


def shard_of(check_id: str) -> int:
    """The check's shard: stable across processes, restarts and machines."""
    return zlib.crc32(uuid.UUID(check_id).bytes) % SHARD_COUNT


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass(slots=True)
class Check:
    id: str
    name: str
    schedule: Schedule
    grace: float
    slug: str = ""
    tags: str = ""
    desc: str = ""
    max_runtime: float | None = None
    manual_resume: bool = False
    status: str = NEW
    n_pings: int = 0
    last_ping: float | None = None
    last_start: float | None = None
    last_start_rid: str | None = None
    last_duration: float | None = None
    created: float = 0.0
    version: int = 0
    shard: int = field(init=False)

    def __post_init__(self) -> None:
        self.shard = shard_of(self.id)

    @property
    def run_limit(self) -> float:
        """How long a started run may last before the check is down."""
        return self.max_runtime if self.max_runtime is not None else self.grace

    def tag_list(self) -> list[str]:
        return self.tags.split()


@dataclass(slots=True, frozen=True)
class Deadline:
    """When a check goes down if nothing else happens, and why."""

    at: float
    reason: str


@dataclass(slots=True)
class Flip:
    check_id: str
    shard: int
    at: float
    """When the status changed: for a missed ping, the deadline, not the sweep."""
    detected: float
    old_status: str
    new_status: str
    reason: str
    exit_status: int | None = None
    offline_from: float | None = None
    offline_until: float | None = None
    id: int | None = None


def next_due(check: Check) -> float | None:
    """The time the next ping is due after the last one, or None."""
    if check.last_ping is None:
        return None
    schedule = check.schedule
    if schedule.kind == "simple":
        assert schedule.timeout is not None
        return check.last_ping + schedule.timeout
    due = schedule.next_due(to_datetime(check.last_ping))
    return None if due is None else due.timestamp()


def deadline_of(check: Check) -> Deadline | None:
    """The earliest moment the check goes down unless a ping arrives first."""
    if check.status == DOWN:
        return None

    candidates = []
    if check.last_start is not None:
        candidates.append(Deadline(check.last_start + check.run_limit, RUN_TOO_LONG))
    if check.status == UP:
        due = next_due(check)
        if due is not None:
            candidates.append(Deadline(due + check.grace, MISSED))
    return min(candidates, key=lambda d: d.at, default=None)


def status_at(check: Check, now: float, *, with_started: bool = True) -> str:
    """The status as people see it at ``now``, derived from the stored one."""
    if check.last_start is not None:
        if now >= check.last_start + check.run_limit:
            return DOWN
        if with_started:
            return STARTED
    if check.status in (NEW, PAUSED, DOWN):
        return check.status

    due = next_due(check)
    if due is None:
        return UP
    if now >= due + check.grace:
        return DOWN
    if now >= due:
        return GRACE
    return UP


def flip_down(check: Check, deadline: Deadline, detected: float) -> Flip:
    """Mark the check down because its deadline passed; the caller stores both."""
    flip = Flip(
        check_id=check.id,
        shard=check.shard,
        at=deadline.at,
        detected=detected,
        old_status=check.status,
        new_status=DOWN,
        reason=deadline.reason,
    )
    check.status = DOWN
    if deadline.reason == RUN_TOO_LONG:
        check.last_start = None
        check.last_start_rid = None
    return flip


def pause(check: Check, now: float) -> Flip | None:
    """Pause the check: it ends an open run and has no deadline until a ping."""
    check.last_start = None
    check.last_start_rid = None
    if check.status == PAUSED:
        return None
    flip = Flip(check.id, check.shard, now, now, check.status, PAUSED, PAUSE)
    check.status = PAUSED
    return flip


class NotPausedError(Exception):
    """Resume was asked of a check that is not paused."""


def resume(check: Check, now: float) -> Flip:
    """Resume a paused check: it starts again as new, waiting for a first ping."""
    if check.status != PAUSED:
        raise NotPausedError(check.id)
    flip = Flip(check.id, check.shard, now, now, PAUSED, NEW, RESUME)
    check.status = NEW
    check.last_ping = None
    check.last_start = None
    check.last_start_rid = None
    return flip


def reason_text(flip: Flip) -> str:
    """The reason of a flip in words, for the CLI, logs and alerts."""
    if flip.reason == EXIT_STATUS:
        return f"exit status {flip.exit_status}"
    if flip.reason == MISSED_OFFLINE:
        return f"missed while serverlord was offline {_window(flip)}"
    text = {
        MISSED: "missed deadline",
        FAILURE: "failure ping",
        RUN_TOO_LONG: "run too long",
        SUCCESS: "success ping",
        PAUSE: "paused",
        RESUME: "resumed",
    }.get(flip.reason, flip.reason)
    if flip.offline_until is not None:
        text += f" (serverlord was offline {_window(flip)})"
    return text


def _window(flip: Flip) -> str:
    since = "?" if flip.offline_from is None else _iso(flip.offline_from)
    until = "?" if flip.offline_until is None else _iso(flip.offline_until)
    return f"from {since} to {until}"


def _iso(ts: float) -> str:
    return to_datetime(ts).isoformat(timespec="seconds")
