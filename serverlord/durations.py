"""Durations as people type them (`90s`, `5m`, `1h30m`, `2d`) and as we show them."""

from __future__ import annotations

import math
import re

__all__ = ["DurationError", "format_duration", "parse_duration"]

# Largest unit first: this order is also the only order accepted in text.
UNITS: dict[str, int] = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}

HINT = "use a number with s, m, h, d or w, like 90s, 5m, 1h30m or 2d"

# ASCII digits only: `\d` would also accept other scripts' digits.
_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_PART = re.compile(rf"({_NUMBER})([smhdw])")
_WITH_UNITS = re.compile(rf"(?:{_NUMBER}[smhdw])+")
_PLAIN = re.compile(_NUMBER)


class DurationError(ValueError):
    """A text that is not a duration, or a duration that cannot be shown."""


def parse_duration(text: str) -> float:
    """Seconds in `text`; a plain number is seconds, units run from w down to s."""
    stripped = text.strip()
    if not stripped:
        raise DurationError(f"a duration is needed: {HINT}")

    if stripped.startswith("-") and _looks_like_duration(stripped[1:]):
        raise DurationError(f'"{stripped}" is negative: a duration must be above 0')

    seconds = _plain_seconds(stripped)
    if seconds is None:
        seconds = _seconds_with_units(stripped)

    if seconds == 0:
        raise DurationError(f'"{stripped}" is zero: a duration must be above 0')
    if not math.isfinite(seconds):
        raise DurationError(f'"{stripped}" is too large to be a duration')
    return seconds


def _looks_like_duration(text: str) -> bool:
    return bool(_PLAIN.fullmatch(text) or _WITH_UNITS.fullmatch(text))


def _plain_seconds(text: str) -> float | None:
    if _PLAIN.fullmatch(text):
        return float(text)
    return None


def _seconds_with_units(text: str) -> float:
    if not _WITH_UNITS.fullmatch(text):
        raise DurationError(f'"{text}" is not a duration: {HINT}')

    order = list(UNITS)
    total = 0.0
    previous = -1
    for number, unit in _PART.findall(text):
        position = order.index(unit)
        if position == previous:
            raise DurationError(
                f'"{text}" repeats the unit {unit}: write each unit once, like 1h30m'
            )
        if position < previous:
            raise DurationError(
                f'"{text}" has its units out of order: put the largest first, '
                "like 1h30m"
            )

        previous = position
        total += float(number) * UNITS[unit]
    return total


def format_duration(seconds: float) -> str:
    """Compact text for `seconds`, exact to the millisecond: 90 gives `1m30s`."""
    if not math.isfinite(seconds):
        raise DurationError(f"{seconds} seconds cannot be shown as a duration")
    if seconds < 0:
        return "-" + format_duration(-seconds)

    # Whole milliseconds first, so 59.9996 becomes 1m and not 59.1000s.
    millis = round(seconds * 1000)
    whole, fraction = divmod(millis, 1000)

    parts = []
    for unit, size in UNITS.items():
        count, whole = divmod(whole, size)
        if unit == "s" and fraction:
            parts.append(f"{count}.{fraction:03d}".rstrip("0") + unit)
        elif count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
