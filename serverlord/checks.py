"""Checks, their status rules and the flips between statuses.

A check stores one of four statuses: new, up, down or paused. Two more are
derived when it is read: ``grace`` (late, not yet down) and ``started`` (a run
is open). Every time is a float of seconds since the epoch, in UTC.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

from serverlord import clock
from serverlord.accounts import DEFAULT_PROJECT
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
REMINDER = "reminder"


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
    failure_threshold: int = 1
    """Consecutive failed or missed runs it takes to go down."""
    recovery_threshold: int = 1
    """Consecutive successes it takes to come back up."""
    reminder_every: float | None = None
    """Remind people this often while the check stays down."""
    fail_streak: int = 0
    ok_streak: int = 0
    missed: int = 0
    """Slots missed since the last ping, while under the failure threshold."""
    down_since: float | None = None
    next_reminder: float | None = None
    shard: int = -1
    """Worked out from the id unless given (a stored row already knows it)."""
    project: str = DEFAULT_PROJECT

    def __post_init__(self) -> None:
        if self.shard < 0:
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
    """The time the next ping is due, or None.

    That is the first schedule slot after the last ping, or a later one when
    slots were missed under the failure threshold. A paused check is due
    never, until it is resumed.
    """
    if check.last_ping is None or check.status == PAUSED:
        return None
    schedule = check.schedule
    if schedule.kind == "simple":
        assert schedule.timeout is not None
        return check.last_ping + schedule.timeout * (check.missed + 1)
    due = check.last_ping
    for _ in range(check.missed + 1):
        slot = _slot_after(schedule, due)
        if slot is None:
            return None
        due = slot
    return due


# The last answer for each schedule, as (after, slot): the first slot after any
# time in [after, slot) is that same slot. Pings of a check, and checks sharing
# an expression, mostly ask within such a window, so a costly expression is
# worked out about once per slot instead of once per ping.
_SLOTS: dict[tuple[str, str | None, str], tuple[float, float]] = {}
_SLOTS_KEPT = 100_000


def _slot_after(schedule: Schedule, after: float) -> float | None:
    key = (schedule.kind, schedule.expression, schedule.tz)
    known = _SLOTS.get(key)
    if known is not None and known[0] <= after < known[1]:
        return known[1]

    slot = schedule.next_due(to_datetime(after))
    if slot is None:
        return None
    if len(_SLOTS) >= _SLOTS_KEPT:
        _SLOTS.clear()
    _SLOTS[key] = (after, slot.timestamp())
    return slot.timestamp()


def deadline_of(check: Check) -> Deadline | None:
    """The earliest moment the check goes down unless a ping arrives first.

    A check that is down already has a deadline only for its next reminder.
    """
    if check.status == DOWN:
        if check.next_reminder is None:
            return None
        return Deadline(check.next_reminder, REMINDER)

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
    # A step forward of the system clock does not bring deadlines nearer
    # (see serverlord.clock): what people see agrees with the sweeper.
    if check.last_start is not None:
        if now >= clock.moved_on(check.last_start + check.run_limit):
            return DOWN
        if with_started:
            return STARTED
    if check.status in (NEW, PAUSED, DOWN):
        return check.status

    due = next_due(check)
    if due is None:
        return UP
    if now >= clock.moved_on(due + check.grace):
        return DOWN
    if now >= clock.moved_on(due):
        return GRACE
    return UP


def pass_deadline(check: Check, deadline: Deadline, detected: float) -> Flip | None:
    """Apply a deadline that passed; return the flip if the check goes down.

    A missed slot or an overlong run counts as a failed run; under the failure
    threshold the check stays as it is and waits for its next slot.
    """
    if deadline.reason == REMINDER:
        assert check.reminder_every is not None
        while check.next_reminder is not None and check.next_reminder <= detected:
            check.next_reminder += check.reminder_every
        return None

    if deadline.reason == RUN_TOO_LONG:
        check.last_start = None
        check.last_start_rid = None
    else:
        check.missed += 1
    check.ok_streak = 0
    check.fail_streak += 1
    if check.fail_streak < check.failure_threshold:
        return None

    flip = Flip(
        check_id=check.id,
        shard=check.shard,
        at=deadline.at,
        detected=detected,
        old_status=check.status,
        new_status=DOWN,
        reason=deadline.reason,
    )
    go_down(check, flip.at)
    return flip


def go_down(check: Check, at: float) -> None:
    """Mark the check down from ``at`` and plan its first reminder."""
    check.status = DOWN
    check.down_since = at
    check.missed = 0
    if check.reminder_every is not None:
        check.next_reminder = at + check.reminder_every


def pause(check: Check, now: float) -> Flip | None:
    """Pause the check: it ends an open run and has no deadline until a ping."""
    check.last_start = None
    check.last_start_rid = None
    check.next_reminder = None
    if check.status == PAUSED:
        return None
    flip = Flip(check.id, check.shard, now, now, check.status, PAUSED, PAUSE)
    check.status = PAUSED
    reset_streaks(check)
    return flip


def reset_streaks(check: Check) -> None:
    check.fail_streak = 0
    check.ok_streak = 0
    check.missed = 0


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
    reset_streaks(check)
    return flip


def is_alert(flip: Flip) -> bool:
    """Whether people hear of this flip: going down, or back up from down."""
    if flip.new_status == DOWN:
        return True
    return flip.new_status == UP and flip.old_status == DOWN


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
        REMINDER: "still down",
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
