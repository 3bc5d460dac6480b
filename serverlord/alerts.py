"""What alerts say: a short title and plain ``Label: value`` lines.

The text must read well in a chat and in an e-mail, and it quotes things
people typed or scripts printed (check names, ping bodies), which may hold any
character at all: those are made printable here, and nothing here raises.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass

from serverlord.checks import DOWN, MISSED_OFFLINE, UP, Check, Flip, reason_text
from serverlord.durations import format_duration
from serverlord.render import iso as _iso
from serverlord.render import safe_text
from serverlord.schedules import Schedule

__all__ = [
    "EXCERPT_CHARS",
    "Digest",
    "compose",
    "compose_digests",
    "compose_reminder",
    "compose_test",
]

EXCERPT_CHARS = 200
"""How much of the last ping's body an alert quotes, in characters."""

EXCERPT_LINES = 10
NAME_CHARS = 100

DIGEST_LINE_CHARS = 100
"""Longest line of a digest: 40 of them fit the 4,000 characters chat services
show in full."""

# Enough bytes for EXCERPT_CHARS characters of up to four bytes, plus some.
_EXCERPT_BYTES = EXCERPT_CHARS * 5

# An escape like \x1b that a cut left unfinished at the end of a text.
_CUT_ESCAPE = re.compile(r"\\x[0-9a-f]{0,3}$")

# A wave of checks falling due together writes thousands of alerts in one
# sweep that share their times, schedules and durations: the pure parts are
# remembered, which makes composing an alert several times cheaper.
_CACHED = 4096
iso = functools.lru_cache(_CACHED)(_iso)
_duration = functools.lru_cache(_CACHED)(format_duration)


def compose(
    check: Check, flip: Flip, last_body: bytes | None, now: float
) -> tuple[str, str]:
    """The title and body announcing ``flip`` of ``check``."""
    name = _name(check)
    lines = [
        f"Check: {name}",
        f"Status: {flip.new_status} (was {flip.old_status})",
        f"Reason: {_line(reason_text(flip))}",
    ]

    if flip.new_status == UP:
        down_since = getattr(check, "down_since", None)
        down_for = None if down_since is None else flip.at - down_since
        if down_since is not None and down_for is not None and down_for >= 0:
            title = f"UP: {name} after {_rough(down_for)} down"
            lines.append(f"Down for: {_rough(down_for)} (since {iso(down_since)})")
        else:
            title = f"UP: {name}"
        lines.append(f"Up since: {iso(flip.at)}")
    else:
        title = f"{_line(flip.new_status.upper())}: {name} ({_title_reason(flip)})"
        if flip.new_status == DOWN:
            lines.append(f"Down since: {iso(flip.at)}")

    lines += _about(check, now)
    lines.append(f"Flip: #{flip.id}" if flip.id is not None else "Flip: not stored")
    lines.append(f"Check id: {_line(check.id)}")
    lines += _excerpt(last_body)
    return title, "\n".join(lines)


def compose_reminder(
    check: Check, down_since: float, last_body: bytes | None, now: float
) -> tuple[str, str]:
    """The title and body reminding people that ``check`` is still down."""
    name = _name(check)
    down_for = max(0.0, now - down_since)
    title = f"STILL DOWN: {name} (down for {_rough(down_for)})"
    lines = [
        f"Check: {name}",
        f"Status: {DOWN}",
        f"Down for: {_rough(down_for)} (since {iso(down_since)})",
    ]
    lines += _about(check, now)
    every = getattr(check, "reminder_every", None)
    if every:
        lines.append(f"Reminders: every {_rough(every)} while down")
    lines.append(f"Check id: {_line(check.id)}")
    lines += _excerpt(last_body)
    return title, "\n".join(lines)


def compose_test(channel_name: str, now: float) -> tuple[str, str]:
    """A test message for the channel named ``channel_name``."""
    name = _cut(_line(channel_name), NAME_CHARS)
    title = f"TEST: serverlord to {name}" if name else "TEST: serverlord"
    lines = [
        f"Channel: {name or '(no name)'}",
        f"Sent: {iso(now)}",
        "If you can read this, serverlord's alerts reach you here.",
    ]
    return title, "\n".join(lines)


@dataclass(slots=True, frozen=True)
class Digest:
    """One message that lists many alerts, one line each."""

    title: str
    body: str
    members: list[int]
    """Which of the alerts given to ``compose_digests`` it lists, by position."""


@dataclass(slots=True, frozen=True)
class Listed:
    """An alert as a digest lists it: its own title and what identifies it."""

    kind: str
    title: str
    flip_id: int | None
    check_id: str | None


_DIGEST_HEAD = "Many alerts fell due at once; this message lists {count}, one a line."
_KIND_WORDS = {"down": "down", "up": "up", "reminder": "still down"}


def compose_digests(alerts: list[Listed], max_chars: int) -> list[Digest]:
    """Messages listing every alert once, in order, each body within
    ``max_chars`` characters (one alert a message when a line would not fit).

    Each line carries the alert's ``Flip: #N`` (a reminder's check id), so a
    receiver can tell alerts it already has from new ones.
    """
    lines = [_digest_line(alert) for alert in alerts]
    head_chars = len(_DIGEST_HEAD) + 10
    digests: list[Digest] = []
    members: list[int] = []
    used = head_chars
    for i, line in enumerate(lines):
        if members and used + len(line) + 1 > max_chars:
            digests.append(_digest(alerts, lines, members))
            members, used = [], head_chars
        members.append(i)
        used += len(line) + 1
    if members:
        digests.append(_digest(alerts, lines, members))
    return digests


def _digest(alerts: list[Listed], lines: list[str], members: list[int]) -> Digest:
    counts: dict[str, int] = {}
    for i in members:
        word = _KIND_WORDS.get(alerts[i].kind, alerts[i].kind)
        counts[word] = counts.get(word, 0) + 1
    tally = ", ".join(f"{n} {word}" for word, n in counts.items())
    title = f"{len(members)} ALERTS: {tally}"
    body = [_DIGEST_HEAD.format(count=len(members)), *(lines[i] for i in members)]
    return Digest(title, "\n".join(body), members)


def _digest_line(alert: Listed) -> str:
    if alert.flip_id is not None:
        mark = f"Flip: #{alert.flip_id}"
    else:
        mark = f"Check id: {_line(alert.check_id or '?')}"
    room = max(DIGEST_LINE_CHARS - len(mark) - 5, 20)
    return f"- {_cut(_line(alert.title), room)} | {mark}"


def _about(check: Check, now: float) -> list[str]:
    """The lines every alert of a check carries: last ping and schedule."""
    last = (
        f"{iso(check.last_ping)} ({_ago(check.last_ping, now)})"
        if check.last_ping is not None
        else "never"
    )
    return [
        f"Last ping: {last}",
        f"Schedule: {_schedule(check)}, grace {_rough(check.grace)}",
    ]


def _schedule(check: Check) -> str:
    # A schedule read from a damaged row should not cost the whole alert.
    try:
        return _describe(check.schedule)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        return f"unknown ({type(exc).__name__})"


@functools.lru_cache(_CACHED)
def _describe(schedule: Schedule) -> str:
    return _line(schedule.describe())


def _title_reason(flip: Flip) -> str:
    """The reason, short enough for a title: no offline window."""
    if flip.reason == MISSED_OFFLINE:
        return "missed while serverlord was offline"
    if flip.offline_until is not None:
        flip = dataclasses.replace(flip, offline_from=None, offline_until=None)
    return _line(reason_text(flip))


def _excerpt(body: bytes | None) -> list[str]:
    """The start of the last ping's body, quoted as indented lines."""
    if body is None:
        return []
    text = safe_text(body[:_EXCERPT_BYTES].replace(b"\r\n", b"\n"))
    cut = len(body) > _EXCERPT_BYTES or len(text) > EXCERPT_CHARS
    text = _CUT_ESCAPE.sub("", text[:EXCERPT_CHARS]) if cut else text

    lines = [line.rstrip() for line in text.split("\n")]
    lines = [line for line in lines if line]
    if len(lines) > EXCERPT_LINES:
        lines, cut = lines[:EXCERPT_LINES], True
    if not lines:
        return [f"Last ping body: {'(empty)' if not body else '(blank)'}"]

    quoted = [f"  {line}" for line in lines]
    if cut:
        quoted.append(f"  ... ({len(body)} bytes in all)")
    return ["", "Last ping body:", *quoted]


def _name(check: Check) -> str:
    return _cut(_line(check.name), NAME_CHARS) or _line(check.id)


def _line(text: str) -> str:
    """Any text as one printable line."""
    if text.isprintable():
        # Nearly every text: no surrogate, control character or line break
        # to replace (none of them is printable).
        return text.strip()
    encoded = text.encode("utf-8", "replace")
    return safe_text(encoded).replace("\n", "\\x0a").replace("\t", " ").strip()


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return _CUT_ESCAPE.sub("", text[: limit - 3]) + "..."


def _ago(ts: float, now: float) -> str:
    """How long before the alert was raised, as roughly as a reader needs it.

    Relative to the alert, not to the reading: a retried message may arrive
    long after it was written.
    """
    delta = now - ts
    if delta < 0:
        return f"{_rough(-delta)} after the alert was raised"
    if delta < 1:
        return "as the alert was raised"
    return f"{_rough(delta)} before the alert was raised"


def _rough(seconds: float) -> str:
    """A duration to two units at most: 1h30m, 2d4h, 45s."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 60:
        return _duration(round(seconds) or round(seconds, 3))
    unit = 1 if seconds < 3600 else 60 if seconds < 86400 else 3600
    return _duration(round(seconds / unit) * unit)
