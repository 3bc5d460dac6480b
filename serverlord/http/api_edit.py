"""What a create or update request of the management API does to a check.

The rules are Healthchecks': a schedule wins over a timeout, ``unique`` finds
the check to update instead of creating one, and ``channels`` names channels
of the check's project by id or name ("*" for all, "" for none).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from msgspec import UNSET

from serverlord import clock
from serverlord.channels import Channel
from serverlord.checks import DOWN, Check
from serverlord.http.api_schema import BadInput, CheckSpec
from serverlord.schedules import Schedule, ScheduleError, check_zone
from serverlord.store.base import ChannelNotFoundError

T = TypeVar("T")

CHANNEL_TRIES = 3
"""Times a write that links channels is made when channels keep vanishing."""

DEFAULT_TIMEOUT = 86400.0
DEFAULT_GRACE = 3600.0


def new_check(project: str, now: float | None = None) -> Check:
    """A check with Healthchecks' defaults: every day, an hour of grace."""
    return Check(
        id=str(uuid.uuid4()),
        name="",
        schedule=Schedule.simple(DEFAULT_TIMEOUT),
        grace=DEFAULT_GRACE,
        created=clock.now() if now is None else now,
        project=project,
    )


def apply_spec(check: Check, spec: CheckSpec, now: float) -> None:
    """Change the check as the spec says; BadInput (and no change) if it can't."""
    check.schedule = _schedule(check, spec)
    if spec.name is not UNSET:
        check.name = spec.name
    if spec.slug is not UNSET:
        check.slug = spec.slug
    if spec.tags is not UNSET:
        check.tags = " ".join(spec.tags.split())
    if spec.desc is not UNSET:
        check.desc = spec.desc
    if spec.manual_resume is not UNSET:
        check.manual_resume = spec.manual_resume
    if spec.grace is not UNSET:
        check.grace = spec.grace
    if spec.max_runtime is not UNSET:
        check.max_runtime = spec.max_runtime or None
    if spec.failure_threshold is not UNSET:
        check.failure_threshold = spec.failure_threshold
    if spec.recovery_threshold is not UNSET:
        check.recovery_threshold = spec.recovery_threshold
    if spec.reminder_every is not UNSET:
        every = check.reminder_every = spec.reminder_every or None
        check.next_reminder = None
        if every is not None and check.status == DOWN:
            check.next_reminder = now + every


def _schedule(check: Check, spec: CheckSpec) -> Schedule:
    current = check.schedule
    try:
        if spec.tz is not UNSET:
            check_zone(spec.tz)
        if spec.schedule is not UNSET:
            tz = spec.tz if spec.tz is not UNSET else current.tz
            return Schedule.parse(spec.schedule, tz)
        if spec.timeout is not UNSET:
            return Schedule.simple(spec.timeout)
        if spec.tz is not UNSET and current.expression is not None:
            return Schedule.parse(current.expression, spec.tz)
    except ScheduleError as exc:
        if exc.field == "tz":
            raise BadInput("json validation error: tz is not a valid timezone") from exc
        raise BadInput(
            "json validation error: "
            "schedule is not a valid cron or OnCalendar expression"
        ) from exc
    return current


def find_unique(checks: list[Check], spec: CheckSpec) -> Check | None:
    """The first check that matches the spec on every field of ``unique``."""
    if spec.unique is UNSET or not spec.unique:
        return None
    wanted = {}
    for field in spec.unique:
        value = getattr(spec, field)
        if value is UNSET:
            return None
        wanted[field] = " ".join(value.split()) if field == "tags" else value
    for check in checks:
        if all(_value(check, field) == value for field, value in wanted.items()):
            return check
    return None


def _value(check: Check, field: str) -> object:
    if field == "timeout":
        return check.schedule.timeout
    return getattr(check, field)


def resolve_channels(text: str, channels: list[Channel]) -> list[str]:
    """Channel ids from "*", "" or a list of ids and names, as Healthchecks."""
    if text == "*":
        return [channel.id for channel in channels]
    if text == "":
        return []
    found: dict[str, None] = {}
    for part in text.split(","):
        if part == "":
            raise BadInput("empty channel identifier")
        matches = [c for c in channels if part in (c.id, c.name)]
        if not matches:
            raise BadInput(f"invalid channel identifier: {part}")
        if len(matches) > 1:
            raise BadInput(f"non-unique channel identifier: {part}")
        found[matches[0].id] = None
    return list(found)


async def linking_channels(
    write: Callable[[], Awaitable[T]], *, read_again: bool = True
) -> T:
    """Run ``write``, which reads the channels it links and writes with them.

    With ``read_again`` (the channels meant are those there at the write: "*"
    or a slug's first ping), one removed by another process in between makes
    it read and write again, up to ``CHANNEL_TRIES`` times; else that is the
    caller's error.
    """
    for _ in range(CHANNEL_TRIES - 1):
        try:
            return await write()
        except ChannelNotFoundError:
            if not read_again:
                raise
    return await write()
