"""The TUI application: the checks it knows, and how it stays connected.

The app keeps one ``CheckRow`` per check. A worker follows the server's live
events; each event changes its row and only that row's changed cells are
redrawn. When the stream breaks, the rows are kept and marked stale, a banner
says why, and the worker reconnects with back-off; on reconnection the list is
fetched again and merged in, so nothing missed while away stays wrong.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import Screen

from serverlord.tui import metrics
from serverlord.tui.client import Client, Refused, Unreachable, WrongKey
from serverlord.tui.details_screen import DetailsScreen
from serverlord.tui.main_screen import MainScreen
from serverlord.tui.model import (
    CheckRow,
    apply_flip,
    apply_ping,
    row_from_api,
    update_row,
)

log = logging.getLogger(__name__)

FIRST_RETRY = 0.5
LAST_RETRY = 15.0
METRICS_EVERY = 2.0


class ServerlordApp(App[None]):
    TITLE = "serverlord"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+c", "quit", "quit", show=False, priority=True)
    ]

    def __init__(
        self,
        client: Client,
        *,
        clock: Callable[[], float] = time.time,
        on_connected: Callable[[], None] | None = None,
        metrics_every: float = METRICS_EVERY,
    ) -> None:
        super().__init__()
        self.client = client
        self.clock = clock
        self.on_connected = on_connected
        self.metrics_every = metrics_every
        self.rows: dict[str, CheckRow] = {}
        self.state = "connecting"
        """connecting, connected, unreachable or refused."""
        self.trouble = ""
        self.data_time: float | None = None
        """When the rows were last known to be current (stale after)."""
        self.pings_per_second: float | None = None
        self.detection_lag: float | None = None
        self.main = MainScreen()
        self.crash: BaseException | None = None
        """The unexpected error that stopped the app, if one did."""

    def get_default_screen(self) -> Screen[Any]:
        return self.main

    def on_mount(self) -> None:
        self.run_worker(self._follow(), name="events", group="events")
        self.run_worker(self._scrape(), name="metrics", group="metrics")

    async def on_unmount(self) -> None:
        await self.client.close()

    # The connection.

    async def _follow(self) -> None:
        delay = FIRST_RETRY
        while True:
            loaded = False
            try:
                async for kind, data in self.client.events():
                    if kind == "ready" and not loaded:
                        await self._load()
                        loaded = True
                        delay = FIRST_RETRY
                    elif kind != "ready":
                        self.apply_event(kind, data)
                        self.data_time = self.clock()
            except WrongKey as exc:
                self._trouble(
                    "refused",
                    f"The server refused the API key ({exc}). Check --api-key, "
                    "SERVERLORD_API_KEY or the saved config; "
                    "`serverlord key create` makes a new one.",
                    "wrong_key",
                )
                return
            except NoMatches:
                return  # the screen is gone: the app is closing
            except Refused as exc:
                self._trouble("unreachable", f"The server refused: {exc}", "refused")
            except Unreachable as exc:
                self._trouble(
                    "unreachable",
                    f"Server {self.client.url} unreachable: {exc}",
                    "unreachable",
                )

            # Full jitter keeps many TUIs from reconnecting in one burst.
            wait = random.uniform(delay / 2, delay)
            self.main.show_retry(wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, LAST_RETRY)

    async def _load(self) -> None:
        found = await self.client.checks()
        first = self.data_time is None
        seen: set[str] = set()
        for data in found:
            row = row_from_api(data)
            seen.add(row.key)
            known = self.rows.get(row.key)
            if known is None:
                self.rows[row.key] = row
                if not first:
                    self.main.add_row(row)
            else:
                update_row(known, data)
                if not first:
                    self.main.show_row(known)
        for key in set(self.rows) - seen:
            del self.rows[key]
            self.main.remove_row(key)
        if first:
            self.main.rebuild()
        self.data_time = self.clock()
        self.state, self.trouble = "connected", ""
        self.main.show_state()
        log.info(
            "connected to %s, %d checks",
            self.client.url,
            len(found),
            extra={"action": "tui_connected"},
        )
        if self.on_connected is not None:
            on_connected, self.on_connected = self.on_connected, None
            try:
                on_connected()
            except OSError as exc:
                where = exc.filename or "the config file"
                self.report(
                    f"Cannot save the connection to {where}: {exc.strerror or exc}.",
                    "tui_save_failed",
                )

    def _trouble(self, state: str, text: str, action: str) -> None:
        self.state, self.trouble = state, text
        log.warning(text, extra={"action": f"tui_{action}"})
        self.main.show_state()

    def apply_event(self, kind: str, data: dict[str, Any]) -> None:
        key = str(data.get("uuid") or data.get("unique_key"))
        row = self.rows.get(key)
        if kind == "check":
            if row is None:
                self.take_check(data)
            else:
                update_row(row, data)
                self.main.show_row(row)
        elif kind == "check_deleted":
            self.forget(key)
        elif row is not None and kind in ("ping", "flip"):
            if kind == "ping":
                apply_ping(row, data)
            else:
                apply_flip(row, data)
            self.main.show_row(row)
        else:
            return
        if kind != "ping":
            # The counts changed; a burst of flips recounts once.
            self.main.show_state_soon()
        if isinstance(self.screen, DetailsScreen) and self.screen.row.key == key:
            self.screen.changed()

    def take_check(self, data: dict[str, Any]) -> CheckRow:
        """A check the server answered with (made, edited, paused...)."""
        key = str(data.get("uuid") or data.get("unique_key"))
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = row_from_api(data)
            self.main.add_row(row)
        else:
            update_row(row, data)
            self.main.show_row(row)
        return row

    def forget(self, key: str) -> None:
        if self.rows.pop(key, None) is not None:
            self.main.remove_row(key)

    # The header's figures.

    async def _scrape(self) -> None:
        before: metrics.Sample | None = None
        while True:
            try:
                text = await self.client.metrics()
            except Unreachable:
                text = None
            if text is None:
                before = None
                self.pings_per_second = self.detection_lag = None
            else:
                sample = metrics.parse(text, time.monotonic())
                self.pings_per_second = metrics.rate(before, sample)
                self.detection_lag = metrics.lag(before, sample)
                before = sample
            self.main.show_state()
            await asyncio.sleep(self.metrics_every)

    # What the screens report.

    def _handle_exception(self, error: Exception) -> None:
        # Textual calls this with any exception nothing else caught, then
        # stops: the traceback goes to the log file, the command exits 1.
        if self.crash is None:
            self.crash = error
            log.error(
                "stopped on an unexpected error: %s: %s",
                type(error).__name__,
                error,
                exc_info=error,
                extra={"action": "tui_crashed"},
            )
        super()._handle_exception(error)

    def _fatal_error(self) -> None:
        # Textual would print the traceback with its local variables (the API
        # key among them) when it exits: it is in the log file instead, and the
        # command prints one line.
        self.bell()
        self._close_messages_no_wait()

    def crash_line(self, log_file: object) -> str:
        """One line for the terminal after a crash."""
        error = self.crash
        name = type(error).__name__
        return (
            f"serverlord tui: stopped on an unexpected error: {name}: {error} "
            f"(the traceback is in {log_file})"
        )

    def report(self, text: str, action: str) -> None:
        """An error the user must see: on screen, and in the log file."""
        log.warning(text, extra={"action": action})
        # The text quotes names and server replies: never read as markup.
        self.notify(text, severity="error", timeout=8, markup=False)
