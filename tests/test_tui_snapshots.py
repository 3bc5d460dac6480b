"""How the TUI's screens look, pinned as SVG snapshots at a fixed size.

The data is fixed and the clock frozen, so each picture is the same on every
run: the app gets an in-memory stand-in for the server (the behaviour tests
in test_tui.py use a real one). Update after an intended change with
``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from textual.pilot import Pilot

from serverlord.tui.app import ServerlordApp

SIZE = (160, 32)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()
BASE = "http://127.0.0.1:8000"


def _iso(seconds_ago: float) -> str:
    return datetime.fromtimestamp(NOW - seconds_ago, UTC).isoformat()


def _check(n: int, name: str, **fields: Any) -> dict[str, Any]:
    uuid = f"00000000-0000-4000-8000-{n:012d}"
    return {
        "uuid": uuid, "name": name, "tags": "", "status": "up", "started": False,
        "grace": 300.0, "n_pings": 10, "last_ping": None, "next_ping": None,
        "ping_url": f"{BASE}/ping/{uuid}", "channels": "", "desc": "",
        "failure_threshold": 1, "recovery_threshold": 1, "max_runtime": None,
        **fields,
    }  # fmt: skip


CHECKS = [
    _check(1, "db backup", tags="db nightly", timeout=86400.0,
           last_ping=_iso(3600), next_ping=_iso(3600 - 86400), last_duration=754.2),
    _check(2, "report mailer", tags="mail", schedule="0 3 * * *",
           tz="Europe/Riga", status="down", last_ping=_iso(2 * 86400),
           next_ping=_iso(86400 - 3600), last_duration=12.5),
    _check(3, "cache warmer", tags="web", timeout=300.0, last_ping=_iso(290),
           next_ping=_iso(-10), last_duration=0.42),
    _check(4, "log rotate", timeout=3600.0, status="paused", last_ping=_iso(7200)),
    _check(5, "etl import", tags="etl", timeout=600.0, status="started",
           started=True, last_ping=_iso(700), next_ping=_iso(100)),
    _check(6, "new job", tags="etl", timeout=60.0, status="new", n_pings=0),
]  # fmt: skip
PINGS = [
    {"type": "success", "date": _iso(3600), "n": 10, "duration": 754.2,
     "exitstatus": 0, "body_url": f"{BASE}/b/10"},
    {"type": "start", "date": _iso(4354), "n": 9, "exitstatus": None,
     "body_url": None},
    {"type": "fail", "date": _iso(90000), "n": 8, "duration": 1201.0,
     "exitstatus": 3, "body_url": f"{BASE}/b/8"},
    {"type": "start", "date": _iso(91201), "n": 7, "exitstatus": None,
     "body_url": None},
    {"type": "success", "date": _iso(176400), "n": 6, "duration": 640.0,
     "exitstatus": 0, "body_url": None},
]  # fmt: skip
FLIPS = [
    {"timestamp": _iso(3600), "up": 1, "old_status": "down", "new_status": "up",
     "reason": "success ping"},
    {"timestamp": _iso(90000), "up": 0, "old_status": "up", "new_status": "down",
     "reason": "exit status 3"},
]  # fmt: skip
NOTIFICATIONS = [
    {"at": _iso(3599), "ok": True, "state": "sent", "kind": "up",
     "channel": "c1", "channel_name": "ops-slack", "latency": 0.182,
     "error": None, "flip_id": 2},
    {"at": _iso(89990), "ok": False, "state": "failed", "kind": "down",
     "channel": "c2", "channel_name": "pager", "latency": 10.0,
     "error": "timed out after 10 s", "flip_id": 1},
]  # fmt: skip
BODIES = {
    f"{BASE}/b/10": b"backup done: 12 GB\n",
    f"{BASE}/b/8": b"pg_dump: error \x1b[31mdisk full\xff\n",
}


class FixedServer:
    """The part of ``Client`` the screens use, answering fixed data."""

    url = BASE

    async def close(self) -> None:
        pass

    async def checks(self) -> list[dict[str, Any]]:
        return CHECKS

    async def check(self, key: str) -> dict[str, Any]:
        return next(c for c in CHECKS if c["uuid"] == key)

    async def pings(self, key: str) -> list[dict[str, Any]]:
        return PINGS

    async def flips(self, key: str) -> list[dict[str, Any]]:
        return FLIPS

    async def notifications(self, key: str) -> list[dict[str, Any]]:
        return NOTIFICATIONS

    async def body(self, url: str) -> bytes:
        return BODIES[url]

    async def metrics(self) -> str | None:
        return None

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        yield "ready", {}
        await asyncio.Event().wait()


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times on screen are local: make local UTC."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def app() -> ServerlordApp:
    return ServerlordApp(FixedServer(), clock=lambda: NOW)  # type: ignore[arg-type]


async def loaded(pilot: Pilot[Any]) -> None:
    app: ServerlordApp = pilot.app  # type: ignore[assignment]
    while app.main.table.row_count < len(CHECKS) or app.state != "connected":
        await pilot.pause(0.02)
    await pilot.pause(0.1)


def test_the_main_screen(snap_compare: Any) -> None:
    assert snap_compare(app(), terminal_size=SIZE, run_before=loaded)


def test_the_details_screen(snap_compare: Any) -> None:
    async def open_first(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("enter")
        table = pilot.app.screen.query_one("#flips")
        while table.row_count < len(FLIPS):  # type: ignore[attr-defined]
            await pilot.pause(0.02)
        await pilot.pause(0.2)

    assert snap_compare(app(), terminal_size=SIZE, run_before=open_first)
