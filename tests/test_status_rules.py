"""Status rules, deadlines and what a ping does, at explicit times.

Cases T1-T12 and the run-id rules (P18-P22) of the behaviour cases, on the
pure functions of serverlord.checks and serverlord.pings: no store, no clock.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from serverlord.checks import (
    DOWN,
    EXIT_STATUS,
    FAILURE,
    GRACE,
    MISSED,
    NEW,
    PAUSED,
    RUN_TOO_LONG,
    STARTED,
    SUCCESS,
    UP,
    Check,
    Deadline,
    deadline_of,
    next_due,
    pass_deadline,
    status_at,
)
from serverlord.pings import FAIL, IGNORED, LOG, START, SUCCESS_KIND, Ping, apply_ping
from serverlord.render import check_json
from serverlord.schedules import Schedule

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp()
RID = "6f2a1c3e-9b7d-4e21-8a55-0c4d2b1e7f90"
OTHER_RID = "0b9e4f6a-2c1d-4a8e-9f3b-7d5c6e1a2b30"


def utc(day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(2000, 1, day, hour, minute, tzinfo=UTC).timestamp()


def a_check(**fields: Any) -> Check:
    """A simple check, period 1 day, grace 1 hour, unless told otherwise."""
    fields.setdefault("schedule", Schedule.simple(DAY))
    fields.setdefault("grace", HOUR)
    return Check(id=str(uuid.uuid4()), name="backup", **fields)


def a_ping(check: Check, kind: str, at: float, **fields: Any) -> Ping:
    return Ping(check_id=check.id, received=at, kind=kind, **fields)


# Status and schedules


def test_a_check_without_pings_is_new_with_no_next_alert() -> None:
    check = a_check()

    assert status_at(check, NOW) == NEW
    assert status_at(check, NOW + 400 * DAY) == NEW
    assert next_due(check) is None
    assert deadline_of(check) is None


def test_an_up_check_late_by_less_than_its_grace_is_in_grace() -> None:
    check = a_check(status=UP, last_ping=NOW - DAY - 30 * MINUTE)

    assert status_at(check, NOW) == GRACE


def test_an_up_check_late_by_more_than_its_grace_is_down() -> None:
    check = a_check(status=UP, last_ping=NOW - 2 * DAY)

    assert status_at(check, NOW) == DOWN


def test_an_up_check_is_up_until_due_grace_at_due_and_down_after_grace() -> None:
    check = a_check(status=UP, last_ping=NOW)

    assert status_at(check, NOW + DAY - 1) == UP
    assert status_at(check, NOW + DAY) == GRACE
    assert status_at(check, NOW + DAY + HOUR - 1) == GRACE
    assert status_at(check, NOW + DAY + HOUR) == DOWN
    assert deadline_of(check) == Deadline(NOW + DAY + HOUR, MISSED)


def test_a_paused_check_stays_paused_with_no_next_alert() -> None:
    check = a_check(status=PAUSED, last_ping=NOW - 30 * DAY)

    assert status_at(check, NOW) == PAUSED
    assert deadline_of(check) is None


def test_a_stored_down_stays_down_until_a_new_success_ping() -> None:
    check = a_check(status=DOWN, last_ping=NOW - MINUTE)

    assert status_at(check, NOW) == DOWN
    assert deadline_of(check) is None

    for kind in (START, LOG, FAIL):
        assert apply_ping(check, a_ping(check, kind, NOW)) is None
        assert check.status == DOWN

    flip = apply_ping(check, a_ping(check, SUCCESS_KIND, NOW + 1))
    assert flip is not None
    assert (flip.old_status, flip.new_status, flip.reason) == (DOWN, UP, SUCCESS)
    assert status_at(check, NOW + 2) == UP


@pytest.mark.parametrize(
    "schedule",
    [
        Schedule(kind="cron", expression="0 0 * * *"),
        Schedule(kind="oncalendar", expression="00:00"),
    ],
    ids=["cron", "oncalendar"],
)
def test_a_daily_midnight_schedule_is_late_at_midnight_and_down_an_hour_on(
    schedule: Schedule,
) -> None:
    check = a_check(schedule=schedule, status=UP, last_ping=utc(1))

    assert next_due(check) == utc(2)
    assert status_at(check, utc(1, 23, 59)) == UP
    assert status_at(check, utc(2)) == GRACE
    assert status_at(check, utc(2, 0, 59)) == GRACE
    assert status_at(check, utc(2, 1)) == DOWN
    assert deadline_of(check) == Deadline(utc(2, 1), MISSED)


def test_a_schedule_with_no_next_slot_is_never_due() -> None:
    schedule = Schedule(kind="oncalendar", expression="2001-01-01 12:00")
    last_ping = datetime(2010, 1, 1, tzinfo=UTC).timestamp()
    check = a_check(schedule=schedule, status=UP, last_ping=last_ping)

    assert next_due(check) is None
    assert status_at(check, NOW) == UP
    assert deadline_of(check) is None


def test_an_hourly_cron_check_shows_its_next_ping_in_the_api() -> None:
    schedule = Schedule(kind="cron", expression="0 * * * *")
    check = a_check(schedule=schedule, status=UP, last_ping=utc(1))

    data = check_json(check, "http://127.0.0.1:8000", now=utc(1, 0, 5))

    assert data["next_ping"] == "2000-01-01T01:00:00+00:00"
    assert data["schedule"] == "0 * * * *"
    assert data["tz"] == "UTC"
    assert data["status"] == UP


@pytest.mark.parametrize("status", [NEW, UP, DOWN, PAUSED])
def test_a_check_with_a_run_started_5_minutes_ago_shows_started(
    status: str,
) -> None:
    check = a_check(status=status, last_ping=NOW - HOUR, last_start=NOW - 5 * MINUTE)
    if status == NEW:
        check.last_ping = None

    assert status_at(check, NOW) == STARTED
    data = check_json(check, "http://127.0.0.1:8000", now=NOW)
    assert data["status"] == STARTED
    assert data["started"] is True


@pytest.mark.parametrize("status", [NEW, UP, PAUSED])
def test_a_run_that_outlives_its_grace_is_down(status: str) -> None:
    last_ping = None if status == NEW else NOW - HOUR
    check = a_check(status=status, last_ping=last_ping, last_start=NOW - 2 * HOUR)

    assert status_at(check, NOW) == DOWN
    assert status_at(check, NOW, with_started=False) == DOWN
    assert deadline_of(check) == Deadline(NOW - HOUR, RUN_TOO_LONG)

    flip = pass_deadline(check, Deadline(NOW - HOUR, RUN_TOO_LONG), NOW)
    assert flip is not None
    assert (flip.old_status, flip.new_status) == (status, DOWN)
    assert (flip.at, flip.detected, flip.reason) == (NOW - HOUR, NOW, RUN_TOO_LONG)
    assert check.last_start is None
    assert deadline_of(check) is None


def test_a_run_that_outlives_its_max_runtime_is_down_before_its_grace() -> None:
    check = a_check(status=UP, last_ping=NOW, last_start=NOW, max_runtime=10 * MINUTE)

    assert status_at(check, NOW + 9 * MINUTE) == STARTED
    assert status_at(check, NOW + 10 * MINUTE) == DOWN
    assert deadline_of(check) == Deadline(NOW + 10 * MINUTE, RUN_TOO_LONG)


def test_a_run_may_outlast_its_grace_when_its_max_runtime_is_longer() -> None:
    check = a_check(status=UP, last_ping=NOW, last_start=NOW, max_runtime=3 * HOUR)

    assert status_at(check, NOW + 2 * HOUR) == STARTED
    assert deadline_of(check) == Deadline(NOW + 3 * HOUR, RUN_TOO_LONG)


def test_the_earlier_of_a_missed_ping_and_a_long_run_is_the_deadline() -> None:
    check = a_check(status=UP, last_ping=NOW - DAY, last_start=NOW - 10 * MINUTE)

    assert deadline_of(check) == Deadline(NOW + 50 * MINUTE, RUN_TOO_LONG)

    check.last_start = NOW - 5 * MINUTE
    check.last_ping = NOW - DAY - 58 * MINUTE
    assert deadline_of(check) == Deadline(NOW + 2 * MINUTE, MISSED)


def test_a_down_check_with_a_run_gives_no_second_down_alert() -> None:
    check = a_check(status=DOWN, last_ping=NOW - DAY, last_start=NOW - 10 * MINUTE)

    assert status_at(check, NOW) == STARTED
    assert deadline_of(check) is None
    check.last_start = NOW - 2 * HOUR
    assert status_at(check, NOW) == DOWN
    assert deadline_of(check) is None


# What a ping does


def test_a_success_ping_makes_a_new_check_up_and_sets_its_deadline() -> None:
    check = a_check()

    flip = apply_ping(check, a_ping(check, SUCCESS_KIND, NOW))

    assert flip is not None
    assert (flip.old_status, flip.new_status, flip.reason) == (NEW, UP, SUCCESS)
    assert flip.at == flip.detected == NOW
    assert (check.status, check.n_pings, check.last_ping) == (UP, 1, NOW)
    assert deadline_of(check) == Deadline(NOW + DAY + HOUR, MISSED)


def test_a_second_success_ping_makes_no_flip_and_moves_the_deadline() -> None:
    check = a_check(status=UP, last_ping=NOW - HOUR, n_pings=7)

    ping = a_ping(check, SUCCESS_KIND, NOW)
    assert apply_ping(check, ping) is None

    assert ping.n == check.n_pings == 8
    assert deadline_of(check) == Deadline(NOW + DAY + HOUR, MISSED)


def test_a_fail_ping_makes_the_check_down_at_once() -> None:
    check = a_check(status=UP, last_ping=NOW - HOUR)

    flip = apply_ping(check, a_ping(check, FAIL, NOW))

    assert flip is not None
    assert (flip.old_status, flip.new_status, flip.reason) == (UP, DOWN, FAILURE)
    assert flip.exit_status is None
    assert check.last_ping == NOW
    assert deadline_of(check) is None


def test_a_nonzero_exit_status_flip_names_the_exit_status() -> None:
    check = a_check()

    flip = apply_ping(check, a_ping(check, FAIL, NOW, exit_status=3))

    assert flip is not None
    assert (flip.new_status, flip.reason, flip.exit_status) == (DOWN, EXIT_STATUS, 3)


def test_a_log_ping_counts_but_changes_nothing_else() -> None:
    check = a_check(status=UP, last_ping=NOW - HOUR, last_start=NOW - MINUTE)

    assert apply_ping(check, a_ping(check, LOG, NOW)) is None

    assert (check.status, check.n_pings) == (UP, 1)
    assert (check.last_ping, check.last_start) == (NOW - HOUR, NOW - MINUTE)


def test_a_ping_resumes_a_paused_check() -> None:
    check = a_check(status=PAUSED, last_ping=NOW - 30 * DAY)

    flip = apply_ping(check, a_ping(check, SUCCESS_KIND, NOW))

    assert flip is not None
    assert (flip.old_status, flip.new_status) == (PAUSED, UP)


def test_a_ping_to_a_paused_check_with_manual_resume_is_ignored() -> None:
    check = a_check(status=PAUSED, manual_resume=True, last_ping=NOW - DAY)

    for kind in (SUCCESS_KIND, FAIL, START):
        ping = a_ping(check, kind, NOW)
        assert apply_ping(check, ping) is None
        assert ping.kind == IGNORED

    assert (check.status, check.last_ping, check.last_start) == (
        PAUSED,
        NOW - DAY,
        None,
    )
    assert check.n_pings == 3
    assert deadline_of(check) is None


def test_a_start_ping_opens_a_run_and_keeps_the_last_ping() -> None:
    check = a_check(status=UP, last_ping=NOW - 2 * HOUR)

    assert apply_ping(check, a_ping(check, START, NOW, rid=RID)) is None

    assert (check.last_start, check.last_start_rid) == (NOW, RID)
    assert check.last_ping == NOW - 2 * HOUR
    assert check.status == UP
    assert status_at(check, NOW + 1) == STARTED


# Run ids and durations


def started(rid: str | None) -> Check:
    """An up check whose run began 10 s before NOW."""
    return a_check(
        status=UP, last_ping=NOW - HOUR, last_start=NOW - 10, last_start_rid=rid
    )


def test_a_success_after_a_start_without_run_ids_records_the_duration() -> None:
    check = started(None)
    ping = a_ping(check, SUCCESS_KIND, NOW)

    apply_ping(check, ping)

    assert ping.duration == check.last_duration == 10
    assert (check.last_start, check.last_start_rid) == (None, None)


def test_a_success_with_the_run_id_of_the_start_records_the_duration() -> None:
    check = started(RID)
    ping = a_ping(check, SUCCESS_KIND, NOW, rid=RID)

    apply_ping(check, ping)

    assert ping.duration == check.last_duration == 10
    assert (check.last_start, check.last_start_rid) == (None, None)


def test_a_failure_with_the_run_id_of_the_start_records_the_duration() -> None:
    check = started(RID)
    ping = a_ping(check, FAIL, NOW, rid=RID)

    apply_ping(check, ping)

    assert ping.duration == check.last_duration == 10
    assert check.last_start is None
    assert check.status == DOWN


def test_a_success_with_another_run_id_leaves_the_run_open() -> None:
    check = started(RID)
    ping = a_ping(check, SUCCESS_KIND, NOW, rid=OTHER_RID)

    apply_ping(check, ping)

    assert check.last_ping == NOW
    assert (check.last_start, check.last_start_rid) == (NOW - 10, RID)
    assert ping.duration is None
    assert check.last_duration is None
    assert status_at(check, NOW + 1) == STARTED


def test_a_success_without_run_id_closes_a_run_that_has_one() -> None:
    check = started(RID)
    ping = a_ping(check, SUCCESS_KIND, NOW)

    apply_ping(check, ping)

    assert (check.last_start, check.last_start_rid) == (None, None)
    assert ping.duration is None
    assert check.last_duration is None


def test_a_failure_with_another_run_id_closes_the_run_anyway() -> None:
    check = started(RID)
    ping = a_ping(check, FAIL, NOW, rid=OTHER_RID)

    apply_ping(check, ping)

    assert (check.last_start, check.last_start_rid) == (None, None)
    assert ping.duration is None
    assert check.last_duration is None
    assert check.status == DOWN


def test_a_failure_without_run_id_closes_a_run_that_has_one() -> None:
    check = started(RID)
    ping = a_ping(check, FAIL, NOW)

    apply_ping(check, ping)

    assert check.last_start is None
    assert ping.duration is None


def test_a_new_start_replaces_an_open_run() -> None:
    check = started(RID)

    apply_ping(check, a_ping(check, START, NOW, rid=OTHER_RID))

    assert (check.last_start, check.last_start_rid) == (NOW, OTHER_RID)
    assert deadline_of(check) == Deadline(NOW + HOUR, RUN_TOO_LONG)


def test_a_duration_is_kept_when_a_later_success_has_none() -> None:
    check = started(None)
    apply_ping(check, a_ping(check, SUCCESS_KIND, NOW))

    later = a_ping(check, SUCCESS_KIND, NOW + DAY)
    apply_ping(check, later)

    assert later.duration is None
    assert check.last_duration == 10


def test_next_due_is_the_same_for_every_ping_within_one_slot() -> None:
    check = a_check(
        schedule=Schedule.cron("0 * * * *"), status=UP, last_ping=utc(1, 0, 5)
    )
    first = next_due(check)
    check.last_ping = utc(1, 0, 30)
    assert next_due(check) == first == utc(1, 1)
    check.last_ping = utc(1, 1)
    assert next_due(check) == utc(1, 2)
    check.last_ping = utc(1, 0, 59)
    assert next_due(check) == utc(1, 1)
