"""Failure and recovery thresholds and reminders, on the pure rules."""

from __future__ import annotations

import uuid
from typing import Any

from serverlord.checks import (
    DOWN,
    MISSED,
    REMINDER,
    UP,
    Check,
    Deadline,
    deadline_of,
    is_alert,
    next_due,
    pass_deadline,
    pause,
)
from serverlord.pings import FAIL, SUCCESS_KIND, Ping, apply_ping
from serverlord.schedules import Schedule

MINUTE = 60.0
HOUR = 3600.0
NOW = 1_700_000_000.0


def a_check(**fields: Any) -> Check:
    fields.setdefault("schedule", Schedule.simple(HOUR))
    fields.setdefault("grace", MINUTE)
    return Check(id=str(uuid.uuid4()), name="backup", **fields)


def ping(check: Check, kind: str, at: float) -> Any:
    return apply_ping(check, Ping(check_id=check.id, received=at, kind=kind))


def pass_due(check: Check, now: float) -> Any:
    deadline = deadline_of(check)
    assert deadline is not None and deadline.at <= now
    return pass_deadline(check, deadline, now)


def test_a_failure_under_the_threshold_keeps_the_check_up() -> None:
    check = a_check(status=UP, last_ping=NOW - MINUTE, failure_threshold=3)

    assert ping(check, FAIL, NOW) is None
    assert ping(check, FAIL, NOW + 1) is None
    flip = ping(check, FAIL, NOW + 2)

    assert check.status == DOWN
    assert flip is not None and flip.new_status == DOWN and is_alert(flip)


def test_a_success_resets_the_failure_streak() -> None:
    check = a_check(status=UP, last_ping=NOW - MINUTE, failure_threshold=2)

    assert ping(check, FAIL, NOW) is None
    assert ping(check, SUCCESS_KIND, NOW + 1) is None
    assert ping(check, FAIL, NOW + 2) is None

    assert check.status == UP


def test_missed_slots_under_the_threshold_move_the_deadline_to_the_next_slot() -> None:
    check = a_check(status=UP, last_ping=NOW, failure_threshold=2)
    first = deadline_of(check)
    assert first == Deadline(NOW + HOUR + MINUTE, MISSED)

    assert pass_due(check, NOW + HOUR + MINUTE) is None

    assert check.status == UP and check.missed == 1
    assert next_due(check) == NOW + 2 * HOUR
    assert deadline_of(check) == Deadline(NOW + 2 * HOUR + MINUTE, MISSED)
    flip = pass_due(check, NOW + 2 * HOUR + MINUTE)
    assert flip is not None and flip.at == NOW + 2 * HOUR + MINUTE
    assert check.status == DOWN and check.down_since == flip.at


def test_a_missed_slot_and_a_failure_count_together() -> None:
    check = a_check(status=UP, last_ping=NOW, failure_threshold=2)

    assert pass_due(check, NOW + HOUR + MINUTE) is None
    flip = ping(check, FAIL, NOW + HOUR + 2 * MINUTE)

    assert flip is not None and check.status == DOWN


def test_recovery_needs_the_recovery_threshold_of_successes_in_a_row() -> None:
    check = a_check(status=DOWN, last_ping=NOW, recovery_threshold=3)

    assert ping(check, SUCCESS_KIND, NOW + 1) is None
    assert ping(check, SUCCESS_KIND, NOW + 2) is None
    assert check.status == DOWN
    flip = ping(check, SUCCESS_KIND, NOW + 3)

    assert flip is not None and flip.new_status == UP and is_alert(flip)


def test_a_failure_during_recovery_starts_the_count_again() -> None:
    check = a_check(status=DOWN, last_ping=NOW, recovery_threshold=2)

    assert ping(check, SUCCESS_KIND, NOW + 1) is None
    assert ping(check, FAIL, NOW + 2) is None
    assert ping(check, SUCCESS_KIND, NOW + 3) is None
    assert ping(check, SUCCESS_KIND, NOW + 4) is not None


def test_a_down_check_with_reminders_has_a_reminder_deadline() -> None:
    check = a_check(status=UP, last_ping=NOW, reminder_every=HOUR)

    flip = pass_due(check, NOW + HOUR + MINUTE)

    assert flip is not None
    assert deadline_of(check) == Deadline(flip.at + HOUR, REMINDER)


def test_a_passed_reminder_plans_the_next_and_flips_nothing() -> None:
    check = a_check(status=UP, last_ping=NOW, reminder_every=HOUR)
    down = pass_due(check, NOW + HOUR + MINUTE)

    assert pass_due(check, down.at + HOUR) is None
    assert check.status == DOWN
    assert deadline_of(check) == Deadline(down.at + 2 * HOUR, REMINDER)


def test_reminders_stop_when_the_check_comes_back_up() -> None:
    check = a_check(status=UP, last_ping=NOW, reminder_every=HOUR)
    pass_due(check, NOW + HOUR + MINUTE)

    ping(check, SUCCESS_KIND, NOW + 2 * HOUR)

    assert check.next_reminder is None
    assert deadline_of(check) == Deadline(NOW + 3 * HOUR + MINUTE, MISSED)


def test_reminders_stop_when_the_check_is_paused() -> None:
    check = a_check(status=UP, last_ping=NOW, reminder_every=HOUR)
    pass_due(check, NOW + HOUR + MINUTE)

    pause(check, NOW + 2 * HOUR)

    assert check.next_reminder is None and deadline_of(check) is None


def test_new_to_up_and_paused_to_up_are_not_alerts() -> None:
    new = a_check()
    paused = a_check(status="paused", last_ping=NOW - HOUR)

    assert not is_alert(ping(new, SUCCESS_KIND, NOW))
    assert not is_alert(ping(paused, SUCCESS_KIND, NOW))
