"""The details of one check: configuration, ping URL, pings, flips, durations."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Label, Sparkline, Static

from serverlord.durations import format_duration
from serverlord.tui.client import ClientError, WrongKey
from serverlord.tui.model import (
    NEVER,
    STATUS_STYLES,
    CheckRow,
    body_preview,
    parse_time,
    schedule_words,
    short_duration,
    status_at,
)

if TYPE_CHECKING:
    from serverlord.tui.app import ServerlordApp

BODIES = 10
"""Ping bodies fetched for a preview: the newest ones."""
RELOAD_PAUSE = 0.5
"""Seconds to wait after a live event before fetching again: a burst is one."""


class DetailsScreen(Screen[None]):
    DEFAULT_CSS = """
    DetailsScreen Label.section { text-style: bold; margin-top: 1; }
    DetailsScreen #config { padding: 0 1; }
    DetailsScreen Sparkline { height: 4; margin: 0 1; }
    DetailsScreen DataTable { height: auto; max-height: 14; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("q", "app.quit", "quit"),
    ]

    def __init__(self, row: CheckRow) -> None:
        super().__init__()
        self.row = row
        self._reload: Timer | None = None
        self._parts: tuple[Widget, ...] = ()

    @property
    def lord(self) -> ServerlordApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="config")
            yield Label("Durations, oldest to newest", classes="section")
            yield Sparkline([], id="chart")
            yield Static(id="chart-range")
            yield Label("Recent pings", classes="section")
            yield Static(id="pings-note")
            yield DataTable(id="pings", cursor_type="row")
            yield Label("Flips", classes="section")
            yield DataTable(id="flips", cursor_type="row")
            yield Label("Notifications", classes="section")
            yield Static(id="notifications-note")
            yield DataTable(id="notifications", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        pings = self.query_one("#pings", DataTable)
        pings.add_columns("#", "Kind", "Time", "Exit", "Duration", "Body")
        flips = self.query_one("#flips", DataTable)
        flips.add_columns("Time", "From", "To", "Reason")
        sent = self.query_one("#notifications", DataTable)
        sent.add_columns("Time", "Alert", "Channel", "Result", "Latency", "Error")
        self.query_one("#pings-note", Static).display = False
        self.query_one("#notifications-note", Static).display = False
        self._parts = tuple(self.query("VerticalScroll > *"))
        self.show_config(self.row.data)
        self.load()

    def _gone(self) -> bool:
        # Esc may close the screen while a part is still on its way: the
        # widgets go first, and what comes late finds nothing to fill.
        return not all(part.is_attached for part in self._parts)

    def changed(self) -> None:
        """A live event about this check: fetch again, once per burst."""
        self.show_config(self.row.data)
        if self._reload is not None:
            self._reload.stop()
        self._reload = self.set_timer(RELOAD_PAUSE, self.load)

    @work(exclusive=True, group="details")
    async def load(self) -> None:
        # Each part on its own: one the server refuses leaves the others shown.
        client = self.lord.client
        key = self.row.key
        problems: list[str] = []
        try:
            self.show_config(await client.check(key))
        except ClientError as exc:
            problems.append(f"the check: {exc}")
        try:
            self.show_flips(await client.flips(key))
        except ClientError as exc:
            problems.append(f"flips: {exc}")
        note = ""
        try:
            pings = await client.pings(key)
            bodies = {}
            for ping in pings[:BODIES]:
                if ping.get("body_url"):
                    bodies[ping["n"]] = await client.body(ping["body_url"])
        except WrongKey as exc:
            if self.row.read_only:
                # The server shows pings (and their bodies) to read-write keys only.
                note = (
                    "Pings need a read-write API key: this one is read-only "
                    f"(the server said: {exc})."
                )
            else:
                problems.append(f"pings: {exc}")
        except ClientError as exc:
            problems.append(f"pings: {exc}")
        else:
            self.show_pings(pings, bodies)
        self._note("#pings-note", note)
        note = ""
        try:
            self.show_notifications(await client.notifications(key))
        except WrongKey as exc:
            if not self.row.read_only:
                problems.append(f"notifications: {exc}")
            note = "Notifications need a read-write API key: this one is read-only."
        except ClientError as exc:
            problems.append(f"notifications: {exc}")
        self._note("#notifications-note", note)
        if problems:
            self.lord.report(
                f"Cannot show all of “{self.row.name}”: " + "; ".join(problems),
                "tui_details_failed",
            )

    def show_config(self, data: dict[str, Any]) -> None:
        if self._gone():
            return
        row = self.row
        status = status_at(row, self.lord.clock())
        text = Text.assemble(
            (f" {status} ", STATUS_STYLES[status]), " ", (row.name, "bold"), "\n"
        )
        fields = [
            ("schedule", schedule_words(row)),
            ("grace", format_duration(row.grace)),
            ("max run time", _seconds(data.get("max_runtime"))),
            ("tags", row.tags or NEVER),
            ("thresholds", f"down after {data.get('failure_threshold', 1)} failed, "
             f"up after {data.get('recovery_threshold', 1)} good"),
            ("channels", data.get("channels") or NEVER),
            ("pings", str(data.get("n_pings", row.n_pings))),
            ("ping URL", data.get("ping_url") or "(hidden from a read-only key)"),
            ("description", data.get("desc") or NEVER),
        ]  # fmt: skip
        for name, value in fields:
            text.append(f"{name:>13}  ", style="dim")
            text.append(f"{value}\n")
        self.query_one("#config", Static).update(text)

    def show_pings(self, pings: list[dict[str, Any]], bodies: dict[int, bytes]) -> None:
        if self._gone():
            return
        table = self.query_one("#pings", DataTable)
        table.clear()
        for ping in pings[:100]:
            duration = ping.get("duration")
            exit_status = ping.get("exitstatus")
            table.add_row(
                str(ping["n"]),
                Text(str(ping["type"])),
                _when(ping["date"]),
                NEVER if exit_status is None else str(exit_status),
                NEVER if duration is None else short_duration(duration),
                Text(body_preview(bodies.get(ping["n"], b"")), style="dim"),
            )
        durations = [p["duration"] for p in reversed(pings) if p.get("duration")]
        chart = self.query_one("#chart", Sparkline)
        chart.data = durations
        # With no run to draw, Textual's sparkline would fill its area.
        chart.display = bool(durations)
        span = (
            f"{short_duration(min(durations))} to {short_duration(max(durations))} "
            f"over {len(durations)} runs"
            if durations
            else "no run with a start and an end yet"
        )
        self.query_one("#chart-range", Static).update(Text(f" {span}", style="dim"))

    def _note(self, widget: str, note: str) -> None:
        if self._gone():
            return
        shown = self.query_one(widget, Static)
        shown.update(Text(note, style="italic"))
        shown.display = bool(note)

    def show_notifications(self, attempts: list[dict[str, Any]]) -> None:
        if self._gone():
            return
        table = self.query_one("#notifications", DataTable)
        table.clear()
        for attempt in attempts:
            ok = bool(attempt["ok"])
            latency = attempt.get("latency")
            table.add_row(
                _when(attempt["at"]),
                Text(str(attempt["kind"])),
                Text(str(attempt["channel_name"] or attempt["channel"])),
                Text(
                    "sent" if ok else str(attempt["state"]),
                    style="green" if ok else "red",
                ),
                f"{float(latency) * 1000:.0f} ms" if latency is not None else NEVER,
                Text(body_preview(str(attempt["error"] or "").encode(), 120)),
            )

    def show_flips(self, flips: list[dict[str, Any]]) -> None:
        if self._gone():
            return
        table = self.query_one("#flips", DataTable)
        table.clear()
        for flip in flips[:100]:
            table.add_row(
                _when(flip["timestamp"]),
                flip["old_status"],
                Text(
                    flip["new_status"], style=STATUS_STYLES.get(flip["new_status"], "")
                ),
                Text(str(flip["reason"])),
            )


def _when(text: str) -> str:
    moment = parse_time(text)
    if moment is None:
        return NEVER
    return datetime.fromtimestamp(moment).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: Any) -> str:
    return format_duration(float(value)) if value else NEVER
