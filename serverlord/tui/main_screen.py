"""The main screen: a header, a trouble banner, a filter and the checks table."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Input, Static

from serverlord.tui.client import ClientError, WrongKey
from serverlord.tui.dialogs import Confirm, Help
from serverlord.tui.model import (
    SORTS,
    STATUS_STYLES,
    CheckRow,
    counts,
    matches,
    sort_key,
)
from serverlord.tui.table import COLUMNS, NameCell, cells, in_order, ticking_cells

if TYPE_CHECKING:
    from serverlord.tui.app import ServerlordApp

STATE_PAUSE = 0.2
"""Seconds the header waits to recount after a flip: counting 10,000 rows at
each flip of a burst would hold the screen."""
FILTER_PAUSE = 0.25
"""Seconds of no typing before the filter applies: each rebuilds the table."""


class MainScreen(Screen[None]):
    DEFAULT_CSS = """
    #summary { height: 1; background: $panel; padding: 0 1; }
    #banner {
        display: none; height: auto; padding: 0 1;
        background: $error; color: $text; text-style: bold;
    }
    #banner.shown { display: block; }
    #filter { display: none; height: 3; }
    #filter.shown { display: block; }
    #checks { height: 1fr; }
    #checks.stale { text-opacity: 60%; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "down", "down", show=False),
        Binding("k", "up", "up", show=False),
        Binding("slash", "filter", "filter"),
        Binding("s", "sort", "sort"),
        Binding("p", "pause", "pause"),
        Binding("r", "resume", "resume"),
        Binding("n", "new", "new"),
        Binding("e", "edit", "edit"),
        Binding("d", "delete", "delete"),
        Binding("question_mark", "help", "help"),
        Binding("q", "app.quit", "quit"),
        Binding("escape", "back", "clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sort = SORTS[0]
        self.query_text = ""
        self.retry_at: float | None = None
        self._shown: dict[str, dict[str, str]] = {}
        """The text of each cell on screen, to redraw only those that change."""
        self._filter_timer: Timer | None = None
        self._mounted = False
        """Whether the table has its columns."""
        self._parts: tuple[Widget, ...] = ()
        self._pending: set[str] = set()
        """Rows that changed while out of view."""
        self._state_timer: Timer | None = None

    @property
    def lord(self) -> ServerlordApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static(id="summary")
        yield Static(id="banner")
        yield Input(
            placeholder="filter: words of a name, a tag or a status", id="filter"
        )
        yield DataTable(id="checks", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.table
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        table.focus()
        self._parts = (self.query_one("#summary"), self.query_one("#banner"), table)
        self._mounted = True
        self.set_interval(1.0, self.tick)
        self.watch(table, "scroll_y", self.on_scroll, init=False)
        # The checks may have come before the screen was ready for them.
        self.rebuild()

    def on_unmount(self) -> None:
        self._mounted = False

    @property
    def _ready(self) -> bool:
        # Events and the header's figures may still come while the app
        # closes, whose widgets go before the screen: they find nothing to do.
        return self._mounted and all(part.is_attached for part in self._parts)

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one("#checks", DataTable)

    # Rows.

    def rebuild(self) -> None:
        """Fill the table anew: after loading, sorting or filtering."""
        if not self._ready:
            return
        table = self.table
        selected = self.selected_key()
        now = self.lord.clock()
        rows = [r for r in self.lord.rows.values() if matches(r, self.query_text, now)]
        rows.sort(key=sort_key(self.sort, now))
        table.clear()
        self._shown.clear()
        self._pending.clear()
        for row in rows:
            shown = cells(row, now)
            self._shown[row.key] = {k: str(v) for k, v in shown.items()}
            table.add_row(*in_order(shown), key=row.key)
        if selected is not None and selected in table.rows:
            table.move_cursor(row=table.get_row_index(selected))
        self.show_state()

    def add_row(self, row: CheckRow) -> None:
        now = self.lord.clock()
        if not self._ready or row.key in self._shown:
            return
        if not matches(row, self.query_text, now):
            return
        shown = cells(row, now)
        self._shown[row.key] = {k: str(v) for k, v in shown.items()}
        self.table.add_row(*in_order(shown), key=row.key)

    def remove_row(self, key: str) -> None:
        self._pending.discard(key)
        if self._ready and self._shown.pop(key, None) is not None:
            self.table.remove_row(key)

    def show_row(self, row: CheckRow) -> None:
        """Redraw the cells of ``row`` that changed, now if it is in view, else
        once it scrolls into view: each update costs the table its caches, and
        with 10,000 rows most changes happen out of sight.

        Under a filter the changed row is matched again: it comes in if it now
        matches (at the end of the table), and goes if it no longer does.
        """
        if not self._ready:
            return
        if self.query_text:
            fits = matches(row, self.query_text, self.lord.clock())
            if fits != (row.key in self._shown):
                if fits:
                    self.add_row(row)
                else:
                    self.remove_row(row.key)
                self.show_state_soon()
                return
        if row.key not in self._shown:
            return
        if self._in_view(row.key):
            self._update(row.key, cells(row, self.lord.clock()))
        else:
            self._pending.add(row.key)

    def _in_view(self, key: str) -> bool:
        table = self.table
        index = table.get_row_index(key)
        first = int(table.scroll_y)
        return first <= index < first + table.size.height

    def _update(self, key: str, new: dict[str, Any]) -> None:
        shown = self._shown[key]
        for column, value in new.items():
            text = str(value)
            if shown[column] != text:
                shown[column] = text
                self.table.update_cell(key, column, value)

    def tick(self) -> None:
        """Once a second: the clock's columns of the rows in view, and the header."""
        self._refresh_view()
        self.show_state()

    def _refresh_view(self) -> None:
        if not self._ready:
            return
        table = self.table
        now = self.lord.clock()
        first = int(table.scroll_y)
        # Row by row: ordered_rows would make a list of all 10,000 each second.
        for index in range(first, min(first + table.size.height, table.row_count)):
            key = table.coordinate_to_cell_key(Coordinate(index, 0)).row_key.value
            row = self.lord.rows.get(key or "")
            if key is None or row is None or key not in self._shown:
                continue
            if key in self._pending:
                self._pending.discard(key)
                self._update(key, cells(row, now))
            else:
                self._update(key, ticking_cells(row, now))

    def on_scroll(self) -> None:
        """Rows that changed out of view are brought up to date as they appear."""
        if self._pending:
            self._refresh_view()

    def selected_key(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return key

    def selected_row(self) -> CheckRow | None:
        key = self.selected_key()
        row = None if key is None else self.lord.rows.get(key)
        if row is None:
            self.notify("No check is selected.", severity="warning")
        return row

    # The header and the banner.

    def show_state(self) -> None:
        if not self._ready:
            return
        lord = self.lord
        now = lord.clock()
        header = Text.assemble((" serverlord ", "bold"), " ")
        header.append_text(_connection(lord.state))
        for status, count in counts(lord.rows.values(), now).items():
            header.append("  ")
            header.append(f" {count} {status} ", style=STATUS_STYLES[status])
        pings, lag = lord.pings_per_second, lord.detection_lag
        header.append("  │ ")
        header.append("—" if pings is None else f"{pings:.1f}", style="bold")
        header.append(" pings/s │ lag ")
        header.append("—" if lag is None else f"{lag:.0f} ms", style="bold")
        header.append(f" │ {len(self._shown)}/{len(lord.rows)} shown, by {self.sort}")
        self.query_one("#summary", Static).update(header)

        banner = self.query_one("#banner", Static)
        stale = lord.state != "connected" and lord.data_time is not None
        self.table.set_class(stale, "stale")
        if lord.state in ("unreachable", "refused"):
            text = lord.trouble.rstrip(".") + "."
            if stale and lord.data_time is not None:
                moment = time.strftime("%H:%M:%S", time.localtime(lord.data_time))
                text += f" Showing the data of {moment} (stale)."
            if lord.state == "unreachable" and self.retry_at is not None:
                left = max(0.0, self.retry_at - time.monotonic())
                text += f" Reconnecting in {left:.0f}s…"
            banner.update(Text(text))  # server text: never markup
        banner.set_class(lord.state in ("unreachable", "refused"), "shown")

    def show_state_soon(self) -> None:
        """``show_state`` within ``STATE_PAUSE``, once however often asked."""
        if self._state_timer is None:

            def show() -> None:
                self._state_timer = None
                self.show_state()

            self._state_timer = self.set_timer(STATE_PAUSE, show)

    def show_retry(self, wait: float) -> None:
        self.retry_at = time.monotonic() + wait
        self.show_state()

    # Keys.

    def action_down(self) -> None:
        self.table.action_cursor_down()

    def action_up(self) -> None:
        self.table.action_cursor_up()

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.add_class("shown")
        field.focus()

    def action_back(self) -> None:
        field = self.query_one("#filter", Input)
        if field.value:
            field.value = ""
            self._apply_filter()
        field.remove_class("shown")
        self.table.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(FILTER_PAUSE, self._apply_filter)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._apply_filter()
        if not event.value:
            event.input.remove_class("shown")
        self.table.focus()

    def _apply_filter(self) -> None:
        text = self.query_one("#filter", Input).value.strip()
        if text != self.query_text:
            self.query_text = text
            self.rebuild()

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        # Reordering the rows in place is far quicker than filling the table
        # anew (about 0.2 s against 2 s for 10,000 rows).
        selected = self.selected_key()
        by_row = sort_key(self.sort, self.lord.clock())
        rows = self.lord.rows

        def by_name_cell(cell: NameCell) -> Any:
            return by_row(rows[cell.check_key])

        self.table.sort("name", key=by_name_cell)
        if selected is not None:
            self.table.move_cursor(row=self.table.get_row_index(selected))
        self.show_state()
        self.notify(f"Sorted by {self.sort}.", timeout=2)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        row = self.lord.rows.get(event.row_key.value or "")
        if row is not None:
            from serverlord.tui.details_screen import DetailsScreen

            self.app.push_screen(DetailsScreen(row))

    def action_help(self) -> None:
        self.app.push_screen(Help())

    def action_pause(self) -> None:
        row = self.selected_row()
        if row is not None:
            self._change(row, "pause")

    def action_resume(self) -> None:
        row = self.selected_row()
        if row is not None:
            self._change(row, "resume")

    def action_delete(self) -> None:
        row = self.selected_row()
        if row is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._change(row, "delete")

        self.app.push_screen(Confirm(f"Delete the check “{row.name}”?"), answered)

    def action_new(self) -> None:
        self._open_form(None)

    def action_edit(self) -> None:
        row = self.selected_row()
        if row is not None:
            self._open_form(row)

    def _open_form(self, row: CheckRow | None) -> None:
        from serverlord.tui.form_screen import CheckForm

        def done(data: dict[str, Any] | None) -> None:
            if data is not None:
                made = self.lord.take_check(data)
                if made.key in self.table.rows:
                    self.table.move_cursor(row=self.table.get_row_index(made.key))

        self.app.push_screen(CheckForm(row), done)

    @work(group="actions")
    async def _change(self, row: CheckRow, action: str) -> None:
        client = self.lord.client
        try:
            if action == "pause":
                self.lord.take_check(await client.pause(row.key))
            elif action == "resume":
                self.lord.take_check(await client.resume(row.key))
            else:
                await client.delete(row.key)
                self.lord.forget(row.key)
        except WrongKey as exc:
            self.lord.report(
                f"Cannot {action} “{row.name}”: the server refused this API key "
                f"for changes ({exc}; a read-only key can only look).",
                f"tui_{action}_refused",
            )
            return
        except ClientError as exc:
            self.lord.report(
                f"Cannot {action} “{row.name}”: {exc}", f"tui_{action}_refused"
            )
            return
        done = {"pause": "Paused", "resume": "Resumed", "delete": "Deleted"}[action]
        self.notify(f"{done} “{row.name}”.", timeout=3, markup=False)


def _connection(state: str) -> Text:
    words = {
        "connecting": ("◌ connecting", "yellow"),
        "connected": ("● live", "bold green"),
        "unreachable": ("○ offline, data stale", "bold red"),
        "refused": ("✗ key refused", "bold red"),
    }
    word, style = words[state]
    return Text(word, style=style)
