"""The shapes of the management API: what it reads and what it answers.

Field names, types and error texts follow Healthchecks.io's API v3, so that its
clients work unchanged; serverlord's own fields are optional additions. The
structs here also make the OpenAPI document the server serves.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from serverlord.schedules import MAX_EXPRESSION_LENGTH, MAX_PERIOD, MIN_PERIOD

NAME_LIMIT = 100
SLUG_PATTERN = "^[a-z0-9-_]*$"
PRINTABLE = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
"""No control characters: names and tags reach terminals, and escape
sequences must not."""
NO_NUL = "^[^\\x00]*$"
"""Text may hold line breaks, never NUL: PostgreSQL cannot store it."""
TAGS_LIMIT = 500
DESC_LIMIT = 10_000
KEYWORDS_LIMIT = 200
THRESHOLD_LIMIT = 1000
MIN_REMINDER = 60.0

Seconds = Annotated[float, Meta(ge=MIN_PERIOD, le=MAX_PERIOD)]
OptionalSeconds = Annotated[float, Meta(ge=0, le=MAX_PERIOD)]
Threshold = Annotated[int, Meta(ge=1, le=THRESHOLD_LIMIT)]
Keywords = Annotated[str, Meta(max_length=KEYWORDS_LIMIT)]
UniqueField = Literal["name", "slug", "tags", "timeout", "grace"]


class CheckSpec(msgspec.Struct, kw_only=True):
    """A check to create or the fields of one to change; all are optional."""

    api_key: str | UnsetType = UNSET
    name: Annotated[str, Meta(max_length=NAME_LIMIT, pattern=PRINTABLE)] | UnsetType = (
        UNSET
    )
    slug: (
        Annotated[str, Meta(max_length=NAME_LIMIT, pattern=SLUG_PATTERN)] | UnsetType
    ) = UNSET
    tags: Annotated[str, Meta(max_length=TAGS_LIMIT, pattern=PRINTABLE)] | UnsetType = (
        UNSET
    )
    desc: Annotated[str, Meta(max_length=DESC_LIMIT, pattern=NO_NUL)] | UnsetType = (
        UNSET
    )
    timeout: Seconds | UnsetType = UNSET
    grace: Seconds | UnsetType = UNSET
    schedule: Annotated[str, Meta(max_length=MAX_EXPRESSION_LENGTH)] | UnsetType = UNSET
    tz: Annotated[str, Meta(max_length=64)] | UnsetType = UNSET
    manual_resume: bool | UnsetType = UNSET
    methods: Literal[""] | UnsetType = UNSET
    """Only "" (any method): serverlord does not limit ping methods."""
    channels: str | UnsetType = UNSET
    unique: list[UniqueField] | UnsetType = UNSET
    # Healthchecks' e-mail filters: accepted and validated, but serverlord takes
    # no pings by e-mail, so they are not kept.
    subject: Keywords | UnsetType = UNSET
    subject_fail: Keywords | UnsetType = UNSET
    start_kw: Keywords | UnsetType = UNSET
    success_kw: Keywords | UnsetType = UNSET
    failure_kw: Keywords | UnsetType = UNSET
    filter_subject: bool | UnsetType = UNSET
    filter_body: bool | UnsetType = UNSET
    # serverlord's own.
    max_runtime: OptionalSeconds | UnsetType = UNSET
    """Longest a started run may take, in seconds; 0 means the grace time."""
    failure_threshold: Threshold | UnsetType = UNSET
    recovery_threshold: Threshold | UnsetType = UNSET
    reminder_every: OptionalSeconds | UnsetType = UNSET
    """Remind every this many seconds while down (at least 60); 0 means never."""


class CheckOut(msgspec.Struct, kw_only=True):
    """A check as Healthchecks' API v3 shows it, with serverlord's additions.

    A read-only key sees ``unique_key`` instead of the uuid and the URLs.
    """

    name: str
    slug: str
    tags: str
    desc: str
    grace: float
    n_pings: int
    status: Literal["new", "up", "grace", "down", "paused", "started"]
    started: bool
    last_ping: str | None
    next_ping: str | None
    manual_resume: bool
    methods: str
    subject: str
    subject_fail: str
    start_kw: str
    success_kw: str
    failure_kw: str
    filter_subject: bool
    filter_body: bool
    last_duration: float | UnsetType = UNSET
    unique_key: str | UnsetType = UNSET
    uuid: str | UnsetType = UNSET
    ping_url: str | UnsetType = UNSET
    update_url: str | UnsetType = UNSET
    pause_url: str | UnsetType = UNSET
    resume_url: str | UnsetType = UNSET
    channels: str | UnsetType = UNSET
    timeout: float | UnsetType = UNSET
    schedule: str | UnsetType = UNSET
    tz: str | UnsetType = UNSET
    max_runtime: float | None
    failure_threshold: int
    recovery_threshold: int
    reminder_every: float | None


class CheckList(msgspec.Struct):
    checks: list[CheckOut]


class PingOut(msgspec.Struct, kw_only=True):
    type: Literal["success", "start", "fail", "log", "ign"]
    date: str
    n: int
    scheme: str
    remote_addr: str
    method: str
    ua: str
    rid: str | None
    duration: float | UnsetType = UNSET
    body_url: str | None
    exitstatus: int | None


class PingList(msgspec.Struct):
    pings: list[PingOut]


class FlipOut(msgspec.Struct, kw_only=True):
    timestamp: str
    up: Literal[0, 1]
    old_status: str
    new_status: str
    reason: str


class FlipList(msgspec.Struct):
    flips: list[FlipOut]


class NotificationOut(msgspec.Struct, kw_only=True):
    """One attempt to deliver a check's alert (serverlord's own addition)."""

    at: str
    ok: bool
    state: str
    kind: str
    channel: str
    channel_name: str
    latency: float | None
    error: str | None
    flip_id: int | None


class NotificationList(msgspec.Struct):
    notifications: list[NotificationOut]


class ChannelOut(msgspec.Struct):
    id: str
    name: str
    kind: str


class ChannelList(msgspec.Struct):
    channels: list[ChannelOut]


class BadgeUrls(msgspec.Struct):
    svg: str
    svg3: str
    json: str
    json3: str
    shields: str
    shields3: str


class BadgeList(msgspec.Struct):
    badges: dict[str, BadgeUrls]


class ErrorOut(msgspec.Struct):
    error: str


class BadInput(ValueError):
    """A request the API refuses with 400; the message is its ``error``."""


# How Healthchecks words each kind of validation error.
_WORDS = (
    ("of length <=", "is too long"),
    ("matching regex", "does not match pattern"),
    ("Invalid enum value", "has unexpected value"),
    ("Expected `str`, got", "is not a string"),
    ("Expected `int`, got", "is not a number"),
    ("Expected `float`, got", "is not a number"),
    ("Expected `bool`, got", "is not a boolean"),
    ("Expected `array`, got", "is not an array"),
    (">=", "is too small"),
    ("<=", "is too large"),
)
_AT = re.compile(r" - at `\$\.(\w+)(\[\d+\])?`$")


def validation_text(exc: msgspec.ValidationError) -> str:
    """msgspec's error as Healthchecks says it: ``json validation error: ...``."""
    message = str(exc)
    found = _AT.search(message)
    if found is None:
        return "json validation error: value is not an object"
    subject = found[1] if found[2] is None else f"an item in '{found[1]}'"
    words = next((w for key, w in _WORDS if key in message), "is not valid")
    return f"json validation error: {subject} {words}"


def parse_spec(document: dict[str, Any]) -> CheckSpec:
    try:
        spec = msgspec.convert(document, CheckSpec)
    except msgspec.ValidationError as exc:
        raise BadInput(validation_text(exc)) from exc
    if spec.reminder_every not in (UNSET, 0) and spec.reminder_every < MIN_REMINDER:
        raise BadInput("json validation error: reminder_every is too small")
    if spec.max_runtime not in (UNSET, 0) and spec.max_runtime < MIN_PERIOD:
        raise BadInput("json validation error: max_runtime is too small")
    return spec
