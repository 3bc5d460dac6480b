"""The cells of a check's row in the main table."""

from __future__ import annotations

from rich.text import Text

from serverlord.tui.model import (
    NEVER,
    STATUS_STYLES,
    CheckRow,
    ago,
    countdown,
    lateness,
    schedule_words,
    short_duration,
    sparkline,
    status_at,
)

COLUMNS = (
    ("status", "Status", 9),
    ("name", "Name", 26),
    ("last", "Last ping", 10),
    ("next", "Next due", 14),
    ("duration", "Duration", 8),
    ("schedule", "Schedule", 28),
    ("tags", "Tags", 14),
    ("recent", "Recent", 16),
    ("late", "Late", 8),
)
"""(key, label, width) of each column: what changes as pings come first, so
that a terminal 80 columns wide shows it; the rest is a scroll away."""
TICKING = ("status", "last", "next")
"""The columns that change with the clock alone."""


class NameCell(Text):
    """The name cell, which knows its check: DataTable's sort sees cells only."""

    def __init__(self, row: CheckRow) -> None:
        super().__init__(row.name, no_wrap=True, overflow="ellipsis")
        self.check_key = row.key


def cells(row: CheckRow, now: float) -> dict[str, str | Text]:
    """The cells of a row by column key (``in_order`` lines them up)."""
    return {
        "status": status_cell(row, now),
        "name": NameCell(row),
        "tags": Text(row.tags, style="italic", no_wrap=True, overflow="ellipsis"),
        "schedule": Text(schedule_words(row), no_wrap=True, overflow="ellipsis"),
        **ticking_cells(row, now),
        "duration": (
            NEVER if row.last_duration is None else short_duration(row.last_duration)
        ),
        "recent": Text(sparkline(row.durations), style="cyan"),
        "late": lateness(row.late),
    }


def in_order(shown: dict[str, str | Text]) -> list[str | Text]:
    return [shown[key] for key, _, _ in COLUMNS]


def ticking_cells(row: CheckRow, now: float) -> dict[str, str | Text]:
    return {
        "status": status_cell(row, now),
        "last": ago(row.last_ping, now),
        "next": countdown(row.next_ping, now),
    }


def status_cell(row: CheckRow, now: float) -> Text:
    status = status_at(row, now)
    return Text(f" {status} ", style=STATUS_STYLES[status])
