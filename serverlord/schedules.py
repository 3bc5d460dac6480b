"""When a check is next due: a plain period, a cron line or a systemd OnCalendar.

A `Schedule` built through its constructors (`simple`, `cron`, `oncalendar`,
`parse`) has been validated. Building the dataclass directly skips the checks
that depend on the current time, so a schedule read back from the store still
loads after its last slot has passed: its `next_due` is then None.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError
from oncalendar import OnCalendar, OnCalendarError

from serverlord.durations import format_duration

__all__ = [
    "MAX_EXPRESSION_LENGTH",
    "MAX_GRACE",
    "MAX_PERIOD",
    "MIN_GRACE",
    "MIN_PERIOD",
    "Schedule",
    "ScheduleError",
    "check_seconds",
    "check_zone",
    "preview",
]

MIN_PERIOD = 1.0
MAX_PERIOD = 365 * 86400.0
MIN_GRACE = MIN_PERIOD
MAX_GRACE = MAX_PERIOD

# format_duration would show the upper bound as 52w1d; people think "a year".
_MIN_TEXT = "1s"
_MAX_TEXT = "365d"

# Long enough for any sensible set of OnCalendar lines; each line costs a
# parse on every next_due call.
MAX_EXPRESSION_LENGTH = 1000
MAX_ONCALENDAR_LINES = 10
"""Each OnCalendar line is its own iterator: many lines make every due time dear."""

KINDS = ("simple", "cron", "oncalendar")
_KIND_WORDS = {"cron": "cron", "oncalendar": "OnCalendar"}

# Any fixed instant will do for checking that a cron line parses.
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class ScheduleError(ValueError):
    """A schedule field that cannot be used; `field` names it, `reason` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class _BadExpression(Exception):
    """The schedule libraries refused an expression; the text is their reason."""


def check_seconds(field: str, value: float) -> float:
    """`value` as a period, grace or run time in seconds, if within the bounds."""
    if not math.isfinite(value):
        raise ScheduleError(field, f"{value} is not a number of seconds")

    if value < MIN_PERIOD:
        shown = format_duration(value)
        raise ScheduleError(field, f"{shown} is too small (at least {_MIN_TEXT})")
    if value > MAX_PERIOD:
        shown = format_duration(value)
        raise ScheduleError(field, f"{shown} is too large (at most {_MAX_TEXT})")
    return float(value)


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    # "localtime" is the host's own zone under a file name: a check set to it
    # would change meaning when the server moves.
    return frozenset(available_timezones() - {"localtime"})


def check_zone(name: str) -> str:
    """``name`` if it is a known IANA time zone, else ScheduleError."""
    _zone(name)
    return name


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    if name not in _known_zones():
        raise ScheduleError("tz", f'"{name}" is not a known IANA time zone')
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class Schedule:
    """How often a check must ping: every `timeout` seconds, or by `expression`."""

    kind: str
    """One of "simple", "cron" or "oncalendar"."""
    timeout: float | None = None
    """Seconds between pings, for a simple schedule only."""
    expression: str | None = None
    """The cron line or OnCalendar text, for those kinds only."""
    tz: str = "UTC"
    """IANA time zone the expression is read in."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown schedule kind {self.kind!r}")

        simple = self.kind == "simple"
        if simple != (self.timeout is not None):
            raise ValueError("a timeout belongs to simple schedules, and only them")
        if simple == (self.expression is not None):
            raise ValueError("an expression belongs to cron and OnCalendar only")

    @classmethod
    def simple(cls, period_seconds: float) -> Schedule:
        """Due `period_seconds` after each ping."""
        return cls(kind="simple", timeout=check_seconds("timeout", period_seconds))

    @classmethod
    def cron(
        cls, expression: str, tz: str = "UTC", *, now: datetime | None = None
    ) -> Schedule:
        """Due at each slot of a 5-field cron line, read in zone `tz`."""
        return cls._validated("cron", expression, tz, now, "cron")

    @classmethod
    def oncalendar(
        cls, expression: str, tz: str = "UTC", *, now: datetime | None = None
    ) -> Schedule:
        """Due at each slot of a systemd OnCalendar expression (one per line)."""
        return cls._validated("oncalendar", expression, tz, now, "OnCalendar")

    @classmethod
    def parse(
        cls, expression: str, tz: str = "UTC", *, now: datetime | None = None
    ) -> Schedule:
        """A cron line if `expression` is one line of 5 fields, else OnCalendar."""
        text = expression.strip()
        fields = text.split()
        one_line = "\n" not in text
        _zone(tz)

        if one_line and len(fields) == 5:
            return cls._validated("cron", text, tz, now, "cron or OnCalendar")

        # One OnCalendar line has at most 4 fields (weekday, date, time, zone),
        # so a longer line was meant as cron.
        if one_line and len(fields) > 4:
            raise _invalid(text, "cron or OnCalendar", "cron needs 5 fields")
        return cls._validated("oncalendar", text, tz, now, "cron or OnCalendar")

    @classmethod
    def _validated(
        cls, kind: str, expression: str, tz: str, now: datetime | None, words: str
    ) -> Schedule:
        text = expression.strip()
        if kind == "cron":
            # Tabs and runs of spaces mean nothing to cron; store one form.
            text = " ".join(text.split())

        _zone(tz)
        lines = len(text.splitlines())
        if kind == "oncalendar" and lines > MAX_ONCALENDAR_LINES:
            raise ScheduleError(
                "schedule",
                f"{lines} OnCalendar lines are too many "
                f"(at most {MAX_ONCALENDAR_LINES})",
            )
        if len(text) > MAX_EXPRESSION_LENGTH:
            raise ScheduleError(
                "schedule",
                f"{len(text)} characters is too long (at most {MAX_EXPRESSION_LENGTH})",
            )

        now = now or datetime.now(UTC)
        _require_aware(now)

        schedule = cls(kind=kind, expression=text, tz=tz)
        try:
            due = schedule._next_slot(now)
        except _BadExpression as error:
            raise _invalid(text, words, str(error)) from error

        if due is None:
            raise ScheduleError("schedule", f'"{text}" never fires')
        return schedule

    def next_due(self, after: datetime) -> datetime | None:
        """First due time strictly after `after`, in UTC; None if none is left."""
        _require_aware(after)
        if self.timeout is not None:
            return _shifted(after, self.timeout)

        try:
            return self._next_slot(after)
        except _BadExpression as error:
            words = _KIND_WORDS[self.kind]
            raise _invalid(self.expression or "", words, str(error)) from error

    def describe(self) -> str:
        """The schedule in words for people, like `every 5m`."""
        if self.timeout is not None:
            return f"every {format_duration(self.timeout)}"

        lines = (self.expression or "").splitlines()
        text = "; ".join(line.strip() for line in lines)
        return f"{_KIND_WORDS[self.kind]} {text} {self.tz}"

    def _next_slot(self, after: datetime) -> datetime | None:
        try:
            after_utc = after.astimezone(UTC)
            start = after_utc.astimezone(_zone(self.tz))
            # The libraries walk wall-clock time, so when `after` falls in the
            # second pass of a repeated autumn hour they may first hand back
            # slots from the first pass; skip those. Compare in UTC: aware
            # datetimes sharing one zone object compare by wall time.
            for slot in self._slots(start):
                slot_utc = slot.astimezone(UTC)
                if slot_utc > after_utc:
                    return slot_utc
        except OverflowError:
            # Near year 9999 the libraries step past datetime.max: no slot.
            pass
        return None

    def _slots(self, start: datetime) -> Iterator[datetime]:
        text = self.expression or ""
        if self.kind == "oncalendar":
            try:
                return OnCalendar(text, start)
            except OnCalendarError as error:
                raise _BadExpression(_lower_first(str(error))) from error

        fields = text.split()
        if len(fields) != 5:
            raise _BadExpression("cron needs 5 fields")
        try:
            return CronSim(text, start)
        except CronSimError as error:
            if _days_never_match(fields):
                return iter(())
            raise _BadExpression(_lower_first(str(error))) from error


def preview(schedule: Schedule, after: datetime, n: int) -> list[datetime]:
    """The next `n` due times after `after` (UTC), fewer if the schedule ends."""
    due_times: list[datetime] = []
    cursor = after
    while len(due_times) < n:
        due = schedule.next_due(cursor)
        if due is None:
            break

        due_times.append(due)
        cursor = due
    return due_times


def _shifted(after: datetime, seconds: float) -> datetime | None:
    # Add in UTC: adding to an aware local time would add wall-clock time,
    # which is off by an hour across a daylight-saving change.
    try:
        return after.astimezone(UTC) + timedelta(seconds=seconds)
    except OverflowError:
        return None


def _require_aware(moment: datetime) -> None:
    # A naive time would be read in the process's own zone, which the server
    # must never depend on.
    if moment.tzinfo is None:
        raise ValueError("schedules need aware datetimes, not naive ones")


def _days_never_match(fields: list[str]) -> bool:
    """True when a cron line is valid field by field but its days never occur.

    cronsim refuses lines like `0 0 30 2 *` with the same error as a bad
    day-of-month, so tell them apart by checking the day and the month alone.
    """
    minute, hour, day, month, weekday = fields
    any_day = [minute, hour, "*", month, weekday]
    any_month = [minute, hour, day, "*", weekday]
    return _cron_parses(any_day) and _cron_parses(any_month)


def _cron_parses(fields: list[str]) -> bool:
    try:
        CronSim(" ".join(fields), _EPOCH)
    except CronSimError:
        return False
    return True


def _invalid(text: str, words: str, reason: str) -> ScheduleError:
    return ScheduleError(
        "schedule", f'"{text}" is not a valid {words} expression ({reason})'
    )


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
