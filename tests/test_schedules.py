import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from serverlord.schedules import (
    MAX_PERIOD,
    MIN_PERIOD,
    Schedule,
    ScheduleError,
    check_seconds,
    preview,
)

NEW_YORK = ZoneInfo("America/New_York")
Y2K = datetime(2000, 1, 1, tzinfo=UTC)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def due_times(schedule: Schedule, after: datetime, n: int) -> list[datetime]:
    """The next `n` due times, by feeding each result back into next_due."""
    found = []
    for _ in range(n):
        due = schedule.next_due(after)
        assert due is not None
        found.append(due)
        after = due
    return found


@pytest.fixture
def process_in_new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield

    monkeypatch.undo()
    time.tzset()


# Daylight saving


def test_a_cron_time_skipped_in_spring_runs_at_the_end_of_the_gap() -> None:
    schedule = Schedule.cron("30 2 * * *", "America/New_York")
    start = datetime(2024, 3, 9, 0, 0, tzinfo=NEW_YORK)

    assert due_times(schedule, start, 3) == [
        utc(2024, 3, 9, 7, 30),
        utc(2024, 3, 10, 7, 0),
        utc(2024, 3, 11, 6, 30),
    ]


def test_a_cron_time_outside_the_gap_keeps_its_local_hour_in_spring() -> None:
    schedule = Schedule.cron("0 7 * * *", "America/New_York")
    start = datetime(2024, 3, 9, 0, 0, tzinfo=NEW_YORK)

    assert due_times(schedule, start, 2) == [
        utc(2024, 3, 9, 12, 0),
        utc(2024, 3, 10, 11, 0),
    ]


def test_a_cron_time_in_the_repeated_autumn_hour_runs_once() -> None:
    schedule = Schedule.cron("30 2 * * *", "Europe/Berlin")

    assert due_times(schedule, utc(2024, 10, 26, 1, 0), 2) == [
        utc(2024, 10, 27, 0, 30),
        utc(2024, 10, 28, 1, 30),
    ]


def test_it_is_never_due_before_after_in_the_second_pass_of_a_repeated_hour() -> None:
    schedule = Schedule.cron("30 2 * * *", "Europe/Berlin")
    # 02:15 local for the second time: 02:30 local has already been, at 00:30Z.
    second_pass = utc(2024, 10, 27, 1, 15)

    assert schedule.next_due(second_pass) == utc(2024, 10, 28, 1, 30)


def test_a_cron_schedule_with_an_hour_step_runs_in_both_passes_of_autumn() -> None:
    schedule = Schedule.cron("*/30 * * * *", "Europe/Berlin")

    assert due_times(schedule, utc(2024, 10, 27, 0, 10), 4) == [
        utc(2024, 10, 27, 0, 30),
        utc(2024, 10, 27, 1, 0),
        utc(2024, 10, 27, 1, 30),
        utc(2024, 10, 27, 2, 0),
    ]


def test_an_oncalendar_time_skipped_in_spring_does_not_run_that_day() -> None:
    # systemd's rule, unlike cron's: a local time that does not exist is skipped.
    schedule = Schedule.oncalendar("*-*-* 02:30", "America/New_York")

    assert schedule.next_due(utc(2024, 3, 9, 8, 0)) == utc(2024, 3, 11, 6, 30)


def test_an_oncalendar_time_in_the_repeated_autumn_hour_runs_once() -> None:
    schedule = Schedule.oncalendar("02:30", "Europe/Berlin")

    assert due_times(schedule, utc(2024, 10, 26, 1, 0), 2) == [
        utc(2024, 10, 27, 0, 30),
        utc(2024, 10, 28, 1, 30),
    ]


def test_an_oncalendar_schedule_is_not_due_in_the_second_pass_of_autumn() -> None:
    # The library walks wall-clock time, so the repeated hour is seen once: a
    # quarter-hourly check gets a longer gap (a late alert, never a false one).
    schedule = Schedule.oncalendar("*:0/15", "Europe/Berlin")

    assert due_times(schedule, utc(2024, 10, 27, 0, 40), 2) == [
        utc(2024, 10, 27, 0, 45),
        utc(2024, 10, 27, 2, 0),
    ]


@pytest.mark.usefixtures("process_in_new_york")
def test_a_simple_schedule_ignores_the_process_time_zone() -> None:
    assert time.strftime("%Z", time.localtime(0)) in ("EST", "EDT")
    schedule = Schedule.simple(15 * 60)
    grace = timedelta(minutes=5)
    pinged = utc(2023, 11, 5, 5, 45)

    due = schedule.next_due(pinged)

    assert due == utc(2023, 11, 5, 6, 0)
    assert due is not None
    assert due + grace == utc(2023, 11, 5, 6, 5)


@pytest.mark.usefixtures("process_in_new_york")
def test_a_simple_schedule_adds_real_time_to_a_local_ping_time() -> None:
    # 01:45 EDT, the first of the two 01:45s of that night.
    pinged = datetime(2023, 11, 5, 1, 45, tzinfo=NEW_YORK)

    assert Schedule.simple(15 * 60).next_due(pinged) == utc(2023, 11, 5, 6, 0)


@pytest.mark.usefixtures("process_in_new_york")
def test_a_cron_schedule_ignores_the_process_time_zone() -> None:
    schedule = Schedule.cron("0 0 * * *")

    assert schedule.next_due(Y2K) == utc(2000, 1, 2)


# Next due time


def test_a_daily_cron_schedule_is_due_the_next_midnight() -> None:
    assert Schedule.cron("0 0 * * *").next_due(Y2K) == utc(2000, 1, 2)


def test_a_daily_oncalendar_schedule_is_due_the_next_midnight() -> None:
    assert Schedule.oncalendar("00:00").next_due(Y2K) == utc(2000, 1, 2)


def test_an_hourly_cron_schedule_is_due_the_next_hour() -> None:
    assert Schedule.cron("0 * * * *").next_due(Y2K) == utc(2000, 1, 1, 1, 0)


def test_a_simple_schedule_is_due_one_period_after() -> None:
    assert Schedule.simple(90).next_due(Y2K) == utc(2000, 1, 1, 0, 1, 30)


def test_the_next_due_time_is_strictly_after_a_slot() -> None:
    schedule = Schedule.cron("0 * * * *")

    assert schedule.next_due(utc(2000, 1, 1, 1, 0)) == utc(2000, 1, 1, 2, 0)


def test_a_slot_a_fraction_of_a_second_later_is_next() -> None:
    schedule = Schedule.cron("0 * * * *")
    just_before = utc(2000, 1, 1, 0, 59, 59) + timedelta(microseconds=500_000)

    assert schedule.next_due(just_before) == utc(2000, 1, 1, 1, 0)


def test_the_next_due_time_is_in_utc_whatever_the_zone_of_after() -> None:
    after = Y2K.astimezone(ZoneInfo("Asia/Tokyo"))

    due = Schedule.cron("0 0 * * *", "Europe/Riga").next_due(after)

    assert due == utc(2000, 1, 1, 22, 0)
    assert due is not None
    assert due.tzinfo is UTC


def test_a_zone_inside_an_oncalendar_expression_wins() -> None:
    schedule = Schedule.oncalendar("00:00 Europe/Riga")

    assert schedule.next_due(utc(2024, 1, 1)) == utc(2024, 1, 1, 22, 0)


def test_several_oncalendar_lines_give_the_earliest_slot() -> None:
    schedule = Schedule.oncalendar("Mon 02:00\n*-*-01 05:00")

    # 2024-01-01 was a Monday and the first of the month.
    assert due_times(schedule, utc(2024, 1, 1), 2) == [
        utc(2024, 1, 1, 2, 0),
        utc(2024, 1, 1, 5, 0),
    ]


def test_it_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        Schedule.cron("0 0 * * *").next_due(datetime(2000, 1, 1))


@pytest.mark.parametrize(
    "schedule",
    [Schedule.simple(60), Schedule.cron("0 0 * * *"), Schedule.oncalendar("00:00")],
    ids=["simple", "cron", "oncalendar"],
)
@pytest.mark.parametrize(
    "after",
    [
        datetime.max.replace(tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
        datetime.min.replace(tzinfo=timezone(timedelta(hours=9))),
    ],
    ids=["max", "last-minute", "min-east-of-utc"],
)
def test_a_far_date_has_no_next_due_time_instead_of_an_error(
    schedule: Schedule, after: datetime
) -> None:
    assert schedule.next_due(after) is None


def test_an_oncalendar_schedule_stops_after_its_last_year() -> None:
    schedule = Schedule.oncalendar("00:00")

    assert schedule.next_due(utc(2199, 12, 31, 1, 0)) is None


# A date already past


def test_it_refuses_to_create_an_oncalendar_schedule_whose_date_has_passed() -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule.oncalendar("2001-01-01 00:00")

    assert str(caught.value) == 'schedule: "2001-01-01 00:00" never fires'
    assert caught.value.field == "schedule"


def test_a_stored_oncalendar_schedule_whose_date_has_passed_is_never_due() -> None:
    stored = Schedule(kind="oncalendar", expression="2001-01-01 00:00", tz="UTC")

    assert stored.next_due(utc(2020, 1, 1)) is None
    assert preview(stored, utc(2020, 1, 1), 3) == []


def test_a_one_off_oncalendar_date_is_due_once_when_created_before_it() -> None:
    created = utc(2000, 6, 1)

    schedule = Schedule.oncalendar("2001-01-01 00:00", now=created)

    assert preview(schedule, created, 3) == [utc(2001, 1, 1)]


# Bad input


def test_it_refuses_a_cron_expression_with_six_fields() -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule.cron("0 0 * * * *")

    assert str(caught.value) == (
        'schedule: "0 0 * * * *" is not a valid cron expression (cron needs 5 fields)'
    )
    assert caught.value.field == "schedule"


def test_parse_refuses_six_fields_as_neither_cron_nor_oncalendar() -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule.parse("0 0 * * * *", "UTC")

    assert str(caught.value) == (
        'schedule: "0 0 * * * *" is not a valid cron or OnCalendar expression '
        "(cron needs 5 fields)"
    )


def test_parse_refuses_a_bad_expression_with_the_oncalendar_reason() -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule.parse("bad-expression", "UTC")

    assert str(caught.value) == (
        'schedule: "bad-expression" is not a valid cron or OnCalendar expression '
        "(bad day-of-week)"
    )


def test_it_refuses_a_cron_field_out_of_range() -> None:
    with pytest.raises(ScheduleError, match=r"\(bad day-of-month\)"):
        Schedule.cron("0 0 32 * *")


def test_it_refuses_a_bad_month_rather_than_saying_it_never_fires() -> None:
    with pytest.raises(ScheduleError, match=r"is not a valid cron expression"):
        Schedule.cron("0 0 30 13 *")


def test_it_refuses_a_cron_day_that_no_month_has_as_never_firing() -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule.cron("0 0 30 2 *")

    assert str(caught.value) == 'schedule: "0 0 30 2 *" never fires'


def test_parse_refuses_a_cron_day_that_no_month_has_as_never_firing() -> None:
    with pytest.raises(ScheduleError, match="never fires"):
        Schedule.parse("0 0 31 4,6 *", "UTC")


def test_a_stored_cron_schedule_on_a_day_no_month_has_is_never_due() -> None:
    stored = Schedule(kind="cron", expression="0 0 30 2 *")

    assert stored.next_due(Y2K) is None


def test_a_cron_day_that_no_month_has_fires_when_the_weekday_also_counts() -> None:
    # With both day fields restricted, cron fires on either: every Monday here.
    schedule = Schedule.cron("0 0 30 2 1")

    assert schedule.next_due(utc(2024, 2, 1)) == utc(2024, 2, 5)


def test_it_accepts_february_29_which_comes_every_four_years() -> None:
    schedule = Schedule.cron("0 0 29 2 *")

    assert schedule.next_due(utc(2021, 1, 1)) == utc(2024, 2, 29)


def test_it_refuses_a_bad_oncalendar_expression() -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule.oncalendar("Mon *-*-* 25:00")

    assert str(caught.value) == (
        'schedule: "Mon *-*-* 25:00" is not a valid OnCalendar expression (bad hour)'
    )


def test_it_refuses_a_cron_line_given_as_oncalendar() -> None:
    with pytest.raises(ScheduleError, match="not a valid OnCalendar expression"):
        Schedule.oncalendar("0 3 * * *")


@pytest.mark.parametrize("expression", ["", "   "])
def test_it_refuses_an_empty_expression(expression: str) -> None:
    with pytest.raises(ScheduleError, match="not a valid cron or OnCalendar"):
        Schedule.parse(expression, "UTC")


def test_it_refuses_an_expression_too_long_to_evaluate_cheaply() -> None:
    expression = "Mon,Tue,Wed,Thu,Fri,Sat,Sun " + ",".join(["02:00"] * 200)

    with pytest.raises(ScheduleError, match=r"characters is too long"):
        Schedule.oncalendar(expression)


def test_it_refuses_an_unknown_time_zone() -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule.cron("0 0 * * *", "Mars/Base")

    assert str(caught.value) == 'tz: "Mars/Base" is not a known IANA time zone'
    assert caught.value.field == "tz"


@pytest.mark.parametrize("tz", ["", "localtime", "../etc/passwd", "europe/riga"])
def test_it_refuses_names_that_are_not_iana_time_zones(tz: str) -> None:
    with pytest.raises(ScheduleError, match="not a known IANA time zone"):
        Schedule.parse("00:00", tz)


def test_parse_checks_the_time_zone_before_the_expression() -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule.parse("bad-expression", "Mars/Base")

    assert caught.value.field == "tz"


def test_a_stored_schedule_with_an_unknown_time_zone_fails_on_the_tz_field() -> None:
    stored = Schedule(kind="cron", expression="0 0 * * *", tz="Mars/Base")

    with pytest.raises(ScheduleError) as caught:
        stored.next_due(Y2K)

    assert caught.value.field == "tz"


def test_a_stored_bad_expression_fails_with_a_schedule_error() -> None:
    stored = Schedule(kind="cron", expression="0 0 * * * *")

    with pytest.raises(ScheduleError, match="cron needs 5 fields"):
        stored.next_due(Y2K)


@pytest.mark.parametrize(
    ("period", "message"),
    [
        (0, "timeout: 0s is too small (at least 1s)"),
        (0.5, "timeout: 0.5s is too small (at least 1s)"),
        (-60, "timeout: -1m is too small (at least 1s)"),
        (365 * 86400 + 1, "timeout: 52w1d1s is too large (at most 365d)"),
        (math.nan, "timeout: nan is not a number of seconds"),
        (math.inf, "timeout: inf is not a number of seconds"),
    ],
)
def test_it_refuses_a_period_out_of_bounds(period: float, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule.simple(period)

    assert str(caught.value) == message
    assert caught.value.field == "timeout"


def test_it_accepts_periods_at_both_bounds() -> None:
    assert Schedule.simple(MIN_PERIOD).timeout == 1.0
    assert Schedule.simple(MAX_PERIOD).timeout == 365 * 86400.0


def test_check_seconds_names_the_field_it_checks() -> None:
    with pytest.raises(ScheduleError) as caught:
        check_seconds("grace", 0.5)

    assert caught.value.field == "grace"
    assert str(caught.value) == "grace: 0.5s is too small (at least 1s)"


def test_check_seconds_returns_the_value_as_a_float() -> None:
    checked = check_seconds("grace", 300)

    assert checked == 300.0
    assert isinstance(checked, float)


def test_its_error_is_a_value_error() -> None:
    assert issubclass(ScheduleError, ValueError)


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "weekly", "timeout": 60.0},
        {"kind": "simple"},
        {"kind": "simple", "timeout": 60.0, "expression": "0 0 * * *"},
        {"kind": "cron"},
        {"kind": "cron", "expression": "0 0 * * *", "timeout": 60.0},
    ],
)
def test_it_refuses_fields_that_do_not_fit_together(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Schedule(**fields)  # type: ignore[arg-type]


# Parse


def test_parse_reads_one_line_of_five_fields_as_cron() -> None:
    schedule = Schedule.parse(" 0 3 * * * ", "Europe/Riga")

    assert schedule == Schedule(kind="cron", expression="0 3 * * *", tz="Europe/Riga")


def test_it_stores_a_cron_line_with_single_spaces() -> None:
    assert Schedule.cron("0\t3  * * *").expression == "0 3 * * *"


def test_parse_reads_anything_else_as_oncalendar() -> None:
    schedule = Schedule.parse("Mon *-*-* 02:00", "UTC")

    assert schedule.kind == "oncalendar"
    assert schedule.expression == "Mon *-*-* 02:00"


def test_parse_reads_oncalendar_lines_with_five_fields_in_all_as_oncalendar() -> None:
    schedule = Schedule.parse("Mon 02:00\nTue *-*-* 03:00", "UTC")

    assert schedule.kind == "oncalendar"


def test_a_created_schedule_equals_the_one_the_store_rebuilds() -> None:
    created = Schedule.oncalendar("Mon 02:00", "Europe/Riga")

    rebuilt = Schedule(
        kind=created.kind,
        timeout=created.timeout,
        expression=created.expression,
        tz=created.tz,
    )

    assert rebuilt == created
    assert hash(rebuilt) == hash(created)


# Describe and preview


def test_it_describes_a_simple_schedule_by_its_period() -> None:
    assert Schedule.simple(300).describe() == "every 5m"


def test_it_describes_a_cron_schedule_with_its_zone() -> None:
    schedule = Schedule.cron("0 3 * * *", "Europe/Riga")

    assert schedule.describe() == "cron 0 3 * * * Europe/Riga"


def test_it_describes_an_oncalendar_schedule_with_its_zone() -> None:
    schedule = Schedule.oncalendar("Mon *-*-* 02:00")

    assert schedule.describe() == "OnCalendar Mon *-*-* 02:00 UTC"


def test_it_describes_several_oncalendar_lines_on_one_line() -> None:
    schedule = Schedule.oncalendar("Mon 02:00\nTue 03:00")

    assert schedule.describe() == "OnCalendar Mon 02:00; Tue 03:00 UTC"


def test_preview_lists_the_next_due_times() -> None:
    schedule = Schedule.cron("0 */6 * * *")

    assert preview(schedule, Y2K, 3) == [
        utc(2000, 1, 1, 6, 0),
        utc(2000, 1, 1, 12, 0),
        utc(2000, 1, 1, 18, 0),
    ]


def test_preview_of_nothing_is_empty() -> None:
    assert preview(Schedule.simple(60), Y2K, 0) == []


def test_preview_agrees_with_next_due_across_a_daylight_saving_change() -> None:
    schedule = Schedule.cron("30 2 * * *", "America/New_York")
    start = datetime(2024, 3, 9, 0, 0, tzinfo=NEW_YORK)

    assert preview(schedule, start, 3) == due_times(schedule, start, 3)


def test_it_refuses_more_oncalendar_lines_than_the_limit() -> None:
    from serverlord.schedules import MAX_ONCALENDAR_LINES

    text = "\n".join(["Mon *-*-* 00:00"] * (MAX_ONCALENDAR_LINES + 1))
    with pytest.raises(ScheduleError, match="too many"):
        Schedule.oncalendar(text)
