"""Checks as the TUI shows them: plain data and text, no Textual.

Every function that depends on the time takes ``now`` (seconds since the
epoch), so that the table and its tests agree on one clock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from serverlord.durations import format_duration
from serverlord.schedules import Schedule

HISTORY = 16
"""Durations kept per check for the sparkline."""
SPARKS = "▁▂▃▄▅▆▇█"
NEVER = "—"

STATUS_STYLES = {
    "down": "bold white on red",
    "grace": "bold black on yellow",
    "started": "bold cyan",
    "new": "blue",
    "up": "green",
    "paused": "dim",
}
"""Colour of each status; the word is always shown beside it."""
STATUS_ORDER = tuple(STATUS_STYLES)
"""Worst first: the order of the status sort and of the header's counts."""

SORTS = ("status", "name", "last ping", "next due")


@dataclass
class CheckRow:
    """One check as the API showed it, kept up to date by live events."""

    key: str
    """The uuid, or the unique_key a read-only API key sees."""
    name: str
    tags: str = ""
    status: str = "new"
    started: bool = False
    last_ping: float | None = None
    next_ping: float | None = None
    last_duration: float | None = None
    timeout: float | None = None
    schedule: str | None = None
    tz: str = "UTC"
    grace: float = 0.0
    n_pings: int = 0
    before_start: str | None = None
    """The status the server keeps while a run is open (shown as ``started``)."""
    late: float | None = None
    """How late the last ping came against the due time known before it."""
    durations: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    data: dict[str, Any] = field(default_factory=dict)
    """The API's JSON of the check, for the details screen and the edit form."""

    @property
    def read_only(self) -> bool:
        return "uuid" not in self.data


def row_from_api(data: dict[str, Any]) -> CheckRow:
    row = CheckRow(key=str(data.get("uuid") or data.get("unique_key")), name="")
    update_row(row, data)
    if row.last_duration is not None:
        row.durations.append(row.last_duration)
    return row


def update_row(row: CheckRow, data: dict[str, Any]) -> None:
    """Take the check's JSON as the API shows it now (after an edit, say)."""
    row.data = data
    row.name = data.get("name", "")
    row.tags = data.get("tags", "")
    row.status = data.get("status", "new")
    row.before_start = None
    row.started = bool(data.get("started"))
    row.last_ping = parse_time(data.get("last_ping"))
    row.next_ping = parse_time(data.get("next_ping"))
    row.last_duration = data.get("last_duration")
    row.timeout = data.get("timeout")
    row.schedule = data.get("schedule")
    row.tz = data.get("tz") or "UTC"
    row.grace = float(data.get("grace") or 0)
    row.n_pings = int(data.get("n_pings") or 0)


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text).timestamp()


def status_at(row: CheckRow, now: float) -> str:
    """The status word at ``now``: the stored one, late once the due time passed.

    The server's flip event turns a late check down; until it comes the check
    shows ``grace``, as the API itself says between due time and grace end.
    """
    if row.status == "up" and row.next_ping is not None and now >= row.next_ping:
        return "grace"
    return row.status


def schedule_words(row: CheckRow) -> str:
    """The schedule in words: ``every 5m`` or ``cron 0 3 * * * Europe/Riga``."""
    return _schedule_words(row.schedule, row.tz, row.timeout)


@lru_cache(maxsize=4096)
def _schedule_words(expression: str | None, tz: str, timeout: float | None) -> str:
    # Cached: a row's cells are made again at each of its pings.
    if expression:
        kind = "cron" if len(expression.split()) == 5 else "oncalendar"
        if kind == "cron":
            expression = " ".join(expression.split())
        return Schedule(kind=kind, expression=expression, tz=tz).describe()
    if timeout:
        return Schedule(kind="simple", timeout=timeout).describe()
    return NEVER


def short_duration(seconds: float) -> str:
    """A duration for a narrow column: ``850ms``, ``12.3s``, ``4m10s``, ``2h5m``."""
    if not math.isfinite(seconds):
        return NEVER
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole >= 86400:
        # Days and hours are enough for a glance.
        whole -= whole % 3600
    elif whole >= 3600:
        whole -= whole % 60
    return format_duration(whole)


def ago(moment: float | None, now: float) -> str:
    """How long ago ``moment`` was, in whole units: ``45s ago``, ``3h ago``."""
    if moment is None:
        return "never"
    elapsed = max(0.0, now - moment)
    return f"{_coarse(elapsed)} ago"


def countdown(due: float | None, now: float) -> str:
    """Time left until ``due``: ``in 4m12s``, or ``overdue 30s``."""
    if due is None:
        return NEVER
    left = due - now
    if left >= 0:
        return f"in {_clock(left)}"
    return f"overdue {_clock(-left)}"


def lateness(late: float | None) -> str:
    if late is None:
        return NEVER
    if late <= 0:
        return "on time"
    return f"+{_clock(late)}"


def sparkline(values: Iterable[float]) -> str:
    """A bar per value, scaled from the smallest to the largest."""
    numbers = [v for v in values if math.isfinite(v)]
    if not numbers:
        return ""
    low, high = min(numbers), max(numbers)
    span = high - low
    top = len(SPARKS) - 1
    return "".join(
        SPARKS[round((v - low) / span * top) if span else top // 2] for v in numbers
    )


def _coarse(seconds: float) -> str:
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _clock(seconds: float) -> str:
    whole = int(seconds)
    if whole >= 86400:
        return f"{whole // 86400}d{whole % 86400 // 3600}h"
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    if whole >= 60:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole}s"


def apply_ping(row: CheckRow, event: dict[str, Any]) -> None:
    """A ping event: its time, duration, and how late it came."""
    received = parse_time(event.get("date"))
    kind = event.get("type")
    if received is None or kind in ("log", "ign"):
        return
    row.n_pings = max(row.n_pings, int(event.get("n") or 0))
    if kind == "start":
        row.started = True
        if row.status not in ("paused", "started"):
            row.before_start = row.status
            row.status = "started"
        return

    if row.next_ping is not None:
        row.late = received - row.next_ping
    row.last_ping = received
    row.started = False
    duration = event.get("duration")
    if isinstance(duration, int | float):
        row.last_duration = float(duration)
        row.durations.append(float(duration))
    row.status = status_after(row, kind == "fail" or _failed_exit(event))
    row.before_start = None
    row.next_ping = next_due(row, received)


def _failed_exit(event: dict[str, Any]) -> bool:
    code = event.get("exitstatus")
    return isinstance(code, int) and code != 0


def status_after(row: CheckRow, failed: bool) -> str:
    """The status an ending ping leaves, by the server's rules (pings.py).

    A run that was open shows ``started``; the server's own status stays what
    it was before the start. A failure turns the check down once
    ``failure_threshold`` failures came in a row; a success turns it up, but a
    down check only after ``recovery_threshold`` successes. The counts of
    failures and successes in a row are the server's: where they decide, the
    status stays as it was and the server's flip event brings the change.
    """
    status = row.status
    if status == "started":
        status = row.before_start or "new"
    if failed:
        if status == "down" or _threshold(row, "failure_threshold") <= 1:
            return "down"
        return status
    if status == "down" and _threshold(row, "recovery_threshold") > 1:
        return status
    return "up"


def _threshold(row: CheckRow, name: str) -> int:
    value = row.data.get(name)
    return value if isinstance(value, int) else 1


def next_due(row: CheckRow, after: float) -> float | None:
    """When the next ping is due after one at ``after``, by the row's schedule."""
    if row.status in ("paused", "new"):
        return None
    moment = datetime.fromtimestamp(after, UTC)
    if row.schedule:
        kind = "cron" if len(row.schedule.split()) == 5 else "oncalendar"
        schedule = Schedule(kind=kind, expression=row.schedule, tz=row.tz)
    elif row.timeout:
        schedule = Schedule(kind="simple", timeout=row.timeout)
    else:
        return None
    due = schedule.next_due(moment)
    return None if due is None else due.timestamp()


def apply_flip(row: CheckRow, event: dict[str, Any]) -> None:
    status = event.get("new_status")
    if isinstance(status, str) and status in STATUS_STYLES:
        row.status = status
        row.before_start = None
        if status != "started":
            row.started = False


def matches(row: CheckRow, query: str, now: float) -> bool:
    """Whether every word of ``query`` is in the name or a tag, or, for a status
    word (``down``, ``up``...), is the check's status."""
    tags = row.tags.lower().split()
    status = status_at(row, now)
    name = row.name.lower()
    for word in query.lower().split():
        if word in STATUS_STYLES:
            found = word == status
        else:
            found = word in name or any(word in tag for tag in tags)
        if not found:
            return False
    return True


def sort_key(sort: str, now: float) -> Any:
    """A key function over rows for one of ``SORTS``."""
    if sort == "name":
        return lambda row: (row.name.lower(), row.key)
    if sort == "last ping":
        # Most recent first; never pinged last.
        return lambda row: (-(row.last_ping or -math.inf), row.name.lower())
    if sort == "next due":
        return lambda row: (row.next_ping or math.inf, row.name.lower())
    return lambda row: (
        STATUS_ORDER.index(status_at(row, now)),
        row.name.lower(),
    )


def counts(rows: Iterable[CheckRow], now: float) -> dict[str, int]:
    """How many checks have each status, worst first, zeros left out."""
    found = dict.fromkeys(STATUS_ORDER, 0)
    for row in rows:
        found[status_at(row, now)] += 1
    return {status: n for status, n in found.items() if n}


def body_preview(body: bytes, limit: int = 80) -> str:
    """The start of a ping body as one safe line: control characters, escape
    sequences and bytes that are not UTF-8 are shown as escapes, never sent to
    the terminal.
    """
    text = body[: limit * 4].decode("utf-8", errors="backslashreplace")
    shown = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
