"""The new-check and edit form's rules, checked as the user types.

The same validation as ``serverlord check add`` and the server: a schedule is
a duration (``5m``: a ping every five minutes), a cron line or an OnCalendar
expression; time zone, grace and max run time are checked by
``serverlord.schedules`` and ``serverlord.durations``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from serverlord.durations import DurationError, format_duration, parse_duration
from serverlord.schedules import Schedule, ScheduleError, check_seconds, check_zone
from serverlord.schedules import preview as schedule_preview

FIELDS = ("name", "tags", "schedule", "tz", "grace", "max_runtime")
PREVIEWED = 5
NAME_LIMIT = 100


@dataclass
class Checked:
    """What the form's fields make: the API fields, or a problem per field."""

    fields: dict[str, Any] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    due: list[datetime] = field(default_factory=list)
    """The next due times, for the preview (after a ping now, for a period)."""
    zone: str = "UTC"
    """The check's time zone, the preview's: the form's if it is a known one."""

    @property
    def ok(self) -> bool:
        return not self.problems


def form_values(data: dict[str, Any] | None) -> dict[str, str]:
    """The form's texts for a check as the API shows it; defaults for a new one."""
    if data is None:
        return {"name": "", "tags": "", "schedule": "1d", "tz": "UTC",
                "grace": "1h", "max_runtime": ""}  # fmt: skip
    if data.get("schedule"):
        schedule = str(data["schedule"])
    else:
        schedule = format_duration(float(data.get("timeout") or 86400))
    runtime = data.get("max_runtime")
    return {
        "name": data.get("name", ""),
        "tags": data.get("tags", ""),
        "schedule": schedule,
        "tz": data.get("tz") or "UTC",
        "grace": format_duration(float(data.get("grace") or 3600)),
        "max_runtime": format_duration(runtime) if runtime else "",
    }


def check_form(values: dict[str, str], now: datetime | None = None) -> Checked:
    now = now or datetime.now(UTC)
    checked = Checked()

    name = values.get("name", "").strip()
    if not name:
        checked.problems["name"] = "a name is needed"
    elif len(name) > NAME_LIMIT:
        checked.problems["name"] = f"at most {NAME_LIMIT} characters"
    elif not name.isprintable():
        checked.problems["name"] = "no control characters"
    checked.fields["name"] = name
    checked.fields["tags"] = " ".join(values.get("tags", "").split())

    tz = values.get("tz", "").strip() or "UTC"
    try:
        check_zone(tz)
    except ScheduleError as exc:
        checked.problems["tz"] = exc.reason
    else:
        checked.zone = tz
    _schedule(values.get("schedule", ""), tz, now, checked)

    for name, required in (("grace", True), ("max_runtime", False)):
        text = values.get(name, "").strip()
        if not text and not required:
            checked.fields[name] = 0
            continue
        try:
            checked.fields[name] = check_seconds(name, parse_duration(text))
        except (DurationError, ScheduleError) as exc:
            checked.problems[name] = getattr(exc, "reason", str(exc))
    return checked


def _schedule(text: str, tz: str, now: datetime, checked: Checked) -> None:
    text = text.strip()
    if not text:
        checked.problems["schedule"] = "a period (like 5m) or a cron line is needed"
        return
    try:
        period = parse_duration(text)
    except DurationError:
        period = None

    try:
        if period is not None:
            schedule = Schedule.simple(period)
            checked.fields["timeout"] = schedule.timeout
        else:
            schedule = Schedule.parse(
                text, tz if "tz" not in checked.problems else "UTC", now=now
            )
            checked.fields["schedule"] = schedule.expression
            checked.fields["tz"] = tz
    except ScheduleError as exc:
        checked.problems["schedule"] = exc.reason
        return
    checked.due = schedule_preview(schedule, now, PREVIEWED)
