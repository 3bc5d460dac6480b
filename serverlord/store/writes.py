"""What a write decides, whatever the backend runs it on.

A backend loads rows, calls these functions on the checks and deliveries it
loaded, and stores what they return in the same transaction. Nothing here
touches a database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from serverlord import alerts, clock
from serverlord import checks as rules
from serverlord.channels import (
    DOWN_ALERT,
    FAILED,
    PENDING,
    REMINDER,
    SENT,
    UP_ALERT,
    AttemptResult,
    Digests,
)
from serverlord.checks import Check, Deadline, Flip, deadline_of
from serverlord.store.base import PINGS_KEPT, ConflictError, Due

PRUNE_EVERY = 20
"""Pings of a check are pruned every this many pings, not on each one."""


def prune_below(n: int) -> int | None:
    """After the check's ``n``-th ping, drop its pings numbered up to this."""
    return n - PINGS_KEPT if n % PRUNE_EVERY == 0 else None


@dataclass(slots=True)
class Confirmed:
    """A due check after its deadline was confirmed to have passed."""

    flip: Flip | None
    remind: bool
    """Whether a reminder is owed (the check is still down)."""


def confirm_due(check: Check, item: Due, now: float) -> Confirmed | None:
    """Pass the check's deadline if it has passed; None if a ping moved it.

    On a result the check changed and must be saved with a compare-and-set.
    """
    deadline = deadline_of(check)
    if deadline is None or not _passed(deadline.at, item, now):
        return None
    now = max(now, deadline.at)

    if item.not_before is not None:
        deadline = Deadline(max(deadline.at, item.not_before), deadline.reason)
    flip = rules.pass_deadline(check, deadline, now)
    if flip is not None and item.offline_until is not None:
        flip.offline_from = item.offline_from
        flip.offline_until = item.offline_until
        if deadline.reason == rules.MISSED:
            flip.reason = rules.MISSED_OFFLINE
    remind = flip is None and deadline.reason == rules.REMINDER
    return Confirmed(flip, remind)


def _passed(at: float, item: Due, now: float) -> bool:
    if item.seen is not None and at <= item.seen:
        # No ping moved it past the deadline the sweeper timed on the
        # monotonic clock: its time has run out, whatever steps the system
        # clock took meanwhile.
        return True
    return clock.moved_on(at) <= now


def next_deadline(check: Check) -> float | None:
    """When the check must be confirmed next: its deadline, moved on by any
    step forward of the system clock that jumped over it."""
    deadline = deadline_of(check)
    return None if deadline is None else clock.moved_on(deadline.at)


def alert_message(
    check: Check, flip: Flip, last_body: bytes | None, now: float
) -> tuple[str, str, str] | None:
    """The (kind, title, body) people get for a flip, or None for a quiet one."""
    if not rules.is_alert(flip):
        return None
    title, body = alerts.compose(check, flip, last_body, now)
    kind = DOWN_ALERT if flip.new_status == rules.DOWN else UP_ALERT
    return kind, title, body


def drops_reminders(flip: Flip) -> bool:
    """Whether the flip makes the check's pending reminders stale: it is up,
    paused or new again, so no one must be told it is still down."""
    return flip.new_status != rules.DOWN


def reminder_message(
    check: Check, last_body: bytes | None, now: float
) -> tuple[str, str, str]:
    """The (kind, title, body) reminding people that the check is still down."""
    down_since = check.down_since if check.down_since is not None else now
    title, body = alerts.compose_reminder(check, down_since, last_body, now)
    return REMINDER, title, body


def change_state(check: Check, change: Callable[[Check], Flip | None]) -> Flip | None:
    """Pause or resume the check in place; a refused change is a conflict."""
    try:
        return change(check)
    except rules.NotPausedError as exc:
        raise ConflictError("check is not paused") from exc


CLAIM_WINDOW = 500
"""Due deliveries a claim looks at, earliest first, when not in a storm."""
STORM_WINDOW = 2000
"""The most it looks at to fill digests: bounds the work of one claim."""


def claim_window(limit: int, digests: Digests | None) -> int:
    """How many of the earliest due deliveries a claim of ``limit`` messages
    chooses from."""
    if digests is None:
        return CLAIM_WINDOW
    return max(CLAIM_WINDOW, min(STORM_WINDOW, limit * digests.per_digest))


def digest_params(digests: Digests | None) -> tuple[int, int]:
    """The (storm_at, per_digest) of a claim; without digests no channel is
    ever in a storm."""
    if digests is None:
        return 2**62, 1
    return max(1, digests.storm_at), max(1, digests.per_digest)


def attempt_state(result: AttemptResult) -> tuple[str, float, float | None]:
    """A delivery's (state, next attempt, finished) after an attempt."""
    if result.ok:
        state = SENT
    elif result.next_attempt is None:
        state = FAILED
    else:
        state = PENDING
    finished = None if state == PENDING else result.at
    next_attempt = result.next_attempt if result.next_attempt is not None else result.at
    return state, next_attempt, finished
