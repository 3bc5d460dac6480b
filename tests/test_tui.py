"""``serverlord tui`` driven with Textual's pilot against a real server.

Each test starts serverlord (SQLite) on a free port of 127.0.0.1 in the test's
loop, with HTTP that can be stopped and started again on the same port, and a
project with an API key. The TUI talks to it over HTTP as it would in a
terminal; pings go to the real ping URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from textual.coordinate import Coordinate
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from serverlord.channels import Channel
from serverlord.config import Settings
from serverlord.http import api_service
from serverlord.http.app import build_app
from serverlord.server import Server
from serverlord.store import Store
from serverlord.tui.app import ServerlordApp
from serverlord.tui.client import Client
from serverlord.tui.connection import Connection, save
from serverlord.tui.details_screen import DetailsScreen
from serverlord.tui.form_screen import CheckForm
from tests.tenants import Tenant, make_tenant, unreachable_channel
from tests.terminal import Terminal
from tests.test_end_to_end import ServerProcess, clean_env, free_port

SIZE = (160, 40)


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture(autouse=True)
def quick_keep_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_service, "KEEP_ALIVE", 0.5)


class Http:
    """uvicorn serving the app on one port, stopped and started at will."""

    def __init__(self, app: Any, port: int) -> None:
        self.app = app
        self.port = port
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        config = uvicorn.Config(
            self.app, lifespan="off", access_log=False, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign, assignment]
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            await asyncio.sleep(0.005)
        self.sock = sock

    async def stop(self) -> None:
        assert self.server is not None and self.task is not None
        self.server.should_exit = self.server.force_exit = True
        # As when the process dies: open connections (the event stream) break.
        for connection in list(self.server.server_state.connections):
            connection.transport.close()
        await self.task
        self.sock.close()


@dataclass
class Served:
    base_url: str
    tenant: Tenant
    client: httpx.AsyncClient
    http: Http
    store: Store

    async def add_channel(self, name: str) -> Channel:
        channel = unreachable_channel(name, self.tenant.project.id)
        await self.store.add_channel(channel)
        return channel

    async def create(self, **fields: Any) -> dict[str, Any]:
        resp = await self.client.post(
            "/api/v3/checks/", json=fields, headers=self.tenant.rw
        )
        assert resp.status_code == 201, resp.text
        data: dict[str, Any] = resp.json()
        return data

    async def get(self, uuid: str) -> httpx.Response:
        return await self.client.get(f"/api/v3/checks/{uuid}", headers=self.tenant.rw)

    def app(self, key: str | None = None, **options: Any) -> ServerlordApp:
        client = Client(self.base_url, key or self.tenant.write)
        return ServerlordApp(client, metrics_every=0.5, **options)


@pytest.fixture
async def served(settings: Settings, store: Store) -> AsyncIterator[Served]:
    server = Server(settings, store)
    await server.start()
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    settings.base_url = base_url = f"http://127.0.0.1:{port}"
    http = Http(build_app(server, settings), port)
    await http.start()
    tenant = await make_tenant(store)
    async with httpx.AsyncClient(base_url=base_url) as client:
        yield Served(base_url, tenant, client, http, store)
    if http.server is not None and not http.server.should_exit:
        await http.stop()
    await server.stop()


async def until(
    pilot: Pilot[Any], condition: Callable[[], bool], timeout: float = 5.0
) -> float:
    """Seconds until ``condition`` held; fails the test after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"still not so after {timeout} s")
        await pilot.pause(0.02)
    return time.monotonic() - start


def table(app: ServerlordApp) -> DataTable[Any]:
    return app.main.query_one("#checks", DataTable)


def cell(app: ServerlordApp, uuid: str, column: str) -> str:
    return str(table(app).get_cell(uuid, column))


def names(app: ServerlordApp) -> list[str]:
    grid = table(app)
    return [str(grid.get_cell(row.key, "name")) for row in grid.ordered_rows]


def header(app: ServerlordApp) -> str:
    return str(app.main.query_one("#summary", Static).render())


def banner(app: ServerlordApp) -> str:
    shown = app.main.query_one("#banner", Static)
    return str(shown.render()) if shown.has_class("shown") else ""


async def test_the_table_fills_with_the_projects_checks(served: Served) -> None:
    await served.create(name="backup", tags="db nightly", timeout=3600)
    await served.create(name="report", schedule="0 3 * * *", tz="Europe/Riga")

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 2)
        await until(pilot, lambda: "live" in header(app))

        assert sorted(names(app)) == ["backup", "report"]
        rows = {str(table(app).get_cell(r.key, "name")): r.key.value or ""
                for r in table(app).ordered_rows}  # fmt: skip
        assert cell(app, rows["backup"], "schedule") == "every 1h"
        assert cell(app, rows["report"], "schedule") == "cron 0 3 * * * Europe/Riga"
        assert cell(app, rows["backup"], "tags") == "db nightly"
        assert cell(app, rows["backup"], "status").strip() == "new"
        assert "2 new" in header(app)


async def test_an_80_column_terminal_shows_what_changes_as_pings_come(
    served: Served,
) -> None:
    await served.create(name="backup", timeout=3600)

    app = served.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: table(app).row_count == 1)
        shown, right = [], 0
        for column in table(app).ordered_columns:
            right += column.get_render_width(table(app))
            if right <= table(app).scrollable_content_region.width:
                shown.append(column.key.value)

    assert shown == ["status", "name", "last", "next", "duration"]


async def test_a_ping_shows_in_its_row_within_a_second(served: Served) -> None:
    check = await served.create(name="backup", timeout=3600)

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "live" in header(app))
        assert cell(app, check["uuid"], "last") == "never"

        start = await served.client.get(f"{check['ping_url']}/start")
        assert start.status_code == 200
        await until(pilot, lambda: cell(app, check["uuid"], "status") == " started ")
        await asyncio.sleep(0.2)
        sent = time.monotonic()
        done = await served.client.post(check["ping_url"], content=b"done")
        assert done.status_code == 200
        waited = await until(
            pilot, lambda: cell(app, check["uuid"], "last") == "0s ago", 1.0
        )

        assert time.monotonic() - sent < 1.0, waited
        assert cell(app, check["uuid"], "status") == " up "
        assert cell(app, check["uuid"], "next").startswith("in 59m")
        assert cell(app, check["uuid"], "duration").endswith("ms")
        assert cell(app, check["uuid"], "late") == "—"


async def test_a_check_that_goes_down_turns_red_and_says_down(served: Served) -> None:
    check = await served.create(name="quick", timeout=1, grace=1)

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "live" in header(app))
        await served.client.get(check["ping_url"])
        await until(pilot, lambda: cell(app, check["uuid"], "status") == " up ")
        status = table(app).get_cell(check["uuid"], "status")
        assert "green" in str(status.style)

        await until(pilot, lambda: cell(app, check["uuid"], "status") == " down ", 6)
        status = table(app).get_cell(check["uuid"], "status")
        assert "red" in str(status.style)
        await until(pilot, lambda: "1 down" in header(app), 1)


async def test_the_filter_matches_names_tags_and_statuses(served: Served) -> None:
    await served.create(name="db backup", tags="nightly", timeout=3600)
    await served.create(name="web", tags="frontend", timeout=3600)
    paused = await served.create(name="old cleanup", tags="nightly", timeout=3600)
    await served.client.post(paused["pause_url"], headers=served.tenant.rw)

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 3)

        await pilot.press("slash", *"nightly", "enter")
        assert sorted(names(app)) == ["db backup", "old cleanup"]

        await pilot.press("slash", "ctrl+a", "ctrl+k", *"nightly new", "enter")
        assert names(app) == ["db backup"]

        await pilot.press("slash", "ctrl+a", "ctrl+k", *"paused", "enter")
        assert names(app) == ["old cleanup"]

        await pilot.press("escape")
        assert table(app).row_count == 3


async def test_s_cycles_the_sort(served: Served) -> None:
    late = await served.create(name="b", timeout=60)
    await served.create(name="c", timeout=3600)
    await served.create(name="a", timeout=7200)
    await served.client.get(late["ping_url"])

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 3)
        # By status first: the one that was pinged is up, after the new ones.
        assert names(app) == ["a", "c", "b"]

        await pilot.press("s")
        assert names(app) == ["a", "b", "c"]
        assert "by name" in header(app)

        await pilot.press("s")  # last ping: the pinged one first
        assert names(app)[0] == "b"

        await pilot.press("s")  # next due: only b has one
        assert names(app)[0] == "b"
        assert "by next due" in header(app)


async def test_p_pauses_and_r_resumes_the_selected_check(served: Served) -> None:
    check = await served.create(name="backup", timeout=3600)
    await served.client.get(check["ping_url"])

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 1)

        await pilot.press("p")
        await until(pilot, lambda: cell(app, check["uuid"], "status") == " paused ")
        assert (await served.get(check["uuid"])).json()["status"] == "paused"

        await pilot.press("r")
        await until(pilot, lambda: cell(app, check["uuid"], "status") == " new ")
        assert (await served.get(check["uuid"])).json()["status"] == "new"


async def test_an_action_the_server_refuses_shows_its_reason(
    served: Served, tmp_path: Path
) -> None:
    check = await served.create(name="backup", timeout=3600)

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 1)

        await pilot.press("r")  # not paused: the server says 409
        await until(pilot, lambda: bool(app._notifications))
        [shown] = list(app._notifications)
        assert "Cannot resume “backup”: check is not paused (HTTP 409)" in shown.message
        assert (await served.get(check["uuid"])).json()["status"] == "new"


async def test_n_opens_a_form_that_validates_as_you_type_and_creates(
    served: Served,
) -> None:
    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "live" in header(app))

        await pilot.press("n")
        form = app.screen
        assert isinstance(form, CheckForm)
        form.query_one("#name", Input).value = "nightly report"
        form.query_one("#schedule", Input).value = "61 * * * *"
        problems = form.query_one("#problems", Static)
        await until(pilot, lambda: "bad minute" in str(problems.render()))
        assert form.query_one("#save").disabled

        form.query_one("#schedule", Input).value = "0 3 * * *"
        form.query_one("#tz", Input).value = "Europe/Riga"
        form.query_one("#tags", Input).value = "reports"
        await until(pilot, lambda: str(problems.render()) == "")
        assert not form.query_one("#save").disabled
        preview = str(form.query_one("#preview", Static).render())
        assert preview.startswith("Next due (Europe/Riga time): ")
        assert preview.count(",") == 4
        # 03:00 in Riga, whatever the time zone of the machine running the TUI.
        assert preview.count(" 03:00:00") == 5

        await pilot.press("ctrl+s")
        await until(pilot, lambda: table(app).row_count == 1)

    listed = await served.client.get("/api/v3/checks/", headers=served.tenant.rw)
    [made] = listed.json()["checks"]
    assert (made["name"], made["schedule"], made["tz"], made["tags"]) == (
        "nightly report", "0 3 * * *", "Europe/Riga", "reports",
    )  # fmt: skip


async def test_e_edits_the_selected_check(served: Served) -> None:
    check = await served.create(name="backup", timeout=3600)

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 1)
        await pilot.press("e")
        form = app.screen
        assert isinstance(form, CheckForm)
        assert form.query_one("#schedule", Input).value == "1h"
        form.query_one("#schedule", Input).value = "5m"
        form.query_one("#name", Input).value = "backup v2"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: cell(app, check["uuid"], "name") == "backup v2")
        assert cell(app, check["uuid"], "schedule") == "every 5m"

    data = (await served.get(check["uuid"])).json()
    assert (data["name"], data["timeout"]) == ("backup v2", 300)


async def test_d_deletes_only_after_a_yes(served: Served) -> None:
    check = await served.create(name="backup", timeout=3600)

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 1)

        await pilot.press("d", "n")
        await pilot.pause(0.2)
        assert (await served.get(check["uuid"])).status_code == 200
        assert table(app).row_count == 1

        await pilot.press("d", "y")
        await until(pilot, lambda: table(app).row_count == 0)
        assert (await served.get(check["uuid"])).status_code == 404


async def test_enter_shows_details_and_esc_goes_back(served: Served) -> None:
    check = await served.create(name="backup", timeout=3600)
    ping_url = check["ping_url"]
    await served.client.get(f"{ping_url}/start")
    await served.client.post(f"{ping_url}/3", content=b"disk full \x1b[2J\xff")

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 1)

        await pilot.press("enter")
        details = app.screen
        assert isinstance(details, DetailsScreen)
        pings = details.query_one("#pings", DataTable)
        await until(pilot, lambda: pings.row_count == 2)
        config = str(details.query_one("#config", Static).render())
        assert ping_url in config
        [kind, exit_status, body] = [
            str(pings.get_cell_at(Coordinate(0, column))) for column in (1, 3, 5)
        ]
        assert (kind, exit_status) == ("fail", "3")
        assert body == "disk full \\x1b[2J\\xff"
        assert not details.query_one("#pings-note", Static).display
        flips = details.query_one("#flips", DataTable)
        await until(pilot, lambda: flips.row_count == 1)

        await pilot.press("escape")
        assert app.screen is app.main


async def test_details_closed_before_their_parts_arrive_is_no_crash(
    served: Served,
) -> None:
    await served.create(name="backup", timeout=3600)

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 1)
        await pilot.press("enter")
        details = app.screen
        assert isinstance(details, DetailsScreen)
        # Esc takes the widgets down first; parts still on their way come
        # after them.
        await details.query_one("#notifications", DataTable).remove()
        details.load()
        await pilot.pause(0.5)
        await pilot.press("escape")
        await pilot.pause(0.2)

    assert app.crash is None


async def test_details_list_the_attempts_to_deliver_the_checks_alerts(
    served: Served,
) -> None:
    await served.add_channel("ops")
    check = await served.create(name="backup", timeout=3600, channels="*")
    await served.client.get(f"{check['ping_url']}/fail")
    sent = f"/api/v3/checks/{check['uuid']}/notifications/"
    began = time.monotonic()
    while not (await served.client.get(sent, headers=served.tenant.rw)).json()[
        "notifications"
    ]:
        assert time.monotonic() - began < 15, "no delivery attempt"
        await asyncio.sleep(0.1)

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 1)
        await pilot.press("enter")
        details = app.screen
        assert isinstance(details, DetailsScreen)
        attempts = details.query_one("#notifications", DataTable)
        await until(pilot, lambda: attempts.row_count >= 1)
        [kind, channel, result, error] = [
            str(attempts.get_cell_at(Coordinate(0, column))) for column in (1, 2, 3, 5)
        ]

    assert (kind, channel) == ("down", "ops")
    # Nothing listens on port 9: the attempt failed and says why.
    assert result != "sent" and error


async def test_a_wrong_key_says_so(served: Served) -> None:
    app = served.app(key="x" * 32)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "refused the API key" in banner(app))
        assert "wrong api key" in banner(app)
        assert "key refused" in header(app)


async def test_a_stopped_server_shows_a_banner_then_reconnects(served: Served) -> None:
    check = await served.create(name="backup", timeout=3600)

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 1)
        await until(pilot, lambda: "live" in header(app))

        await served.http.stop()
        await until(pilot, lambda: "unreachable" in banner(app))
        assert "(stale)" in banner(app)
        assert table(app).has_class("stale")
        assert table(app).row_count == 1  # the last data is kept

        await served.http.start()
        await served.client.get(check["ping_url"])
        await until(pilot, lambda: "live" in header(app), 20)
        assert banner(app) == ""
        assert not table(app).has_class("stale")
        await until(pilot, lambda: cell(app, check["uuid"], "status") == " up ")


async def test_news_arriving_while_the_app_closes_is_dropped_quietly(
    served: Served,
) -> None:
    check = await served.create(name="backup", timeout=3600)

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 1)
        # Closing takes the screen's widgets down first: the header's figures
        # or a ping may still come in between.
        await app.main.query_one("#summary").remove()
        await served.client.get(check["ping_url"])
        app.main.show_state()
        app.main.tick()
        await pilot.pause(0.5)

    assert app.crash is None


async def test_a_down_check_whose_next_run_fails_stays_down(served: Served) -> None:
    check = await served.create(name="backup", timeout=3600)
    ping_url = check["ping_url"]

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "live" in header(app))
        await served.client.get(f"{ping_url}/fail")
        await until(pilot, lambda: cell(app, check["uuid"], "status") == " down ")

        await served.client.get(f"{ping_url}/start")
        await until(pilot, lambda: cell(app, check["uuid"], "status") == " started ")
        await served.client.get(f"{ping_url}/1")
        await until(pilot, lambda: cell(app, check["uuid"], "last") == "0s ago")
        await until(pilot, lambda: cell(app, check["uuid"], "status") == " down ")
        await pilot.pause(0.3)
        assert cell(app, check["uuid"], "status") == " down "
        assert (await served.get(check["uuid"])).json()["status"] == "down"

        # A success ends the next run up, as the server says.
        await served.client.get(f"{ping_url}/start")
        await until(pilot, lambda: cell(app, check["uuid"], "status") == " started ")
        await served.client.get(f"{ping_url}/0")
        await until(pilot, lambda: cell(app, check["uuid"], "status") == " up ")
        assert (await served.get(check["uuid"])).json()["status"] == "up"


MARKUP_NAME = "zm [link=http://evil]click[/link] [b]x"


def notices(app: ServerlordApp) -> list[str]:
    return [str(notice.message) for notice in app._notifications]


async def test_names_with_markup_are_shown_as_typed(served: Served) -> None:
    check = await served.create(name=MARKUP_NAME, timeout=3600)

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 1)

        await pilot.press("p")
        await until(pilot, lambda: cell(app, check["uuid"], "status") == " paused ")
        await until(pilot, lambda: f"Paused “{MARKUP_NAME}”." in notices(app))
        await pilot.press("r")
        await until(pilot, lambda: cell(app, check["uuid"], "status") == " new ")
        await until(pilot, lambda: f"Resumed “{MARKUP_NAME}”." in notices(app))
        await pilot.press("r")  # refused (not paused): the error quotes the name
        await until(pilot, lambda: any("Cannot resume" in n for n in notices(app)))
        assert f"Cannot resume “{MARKUP_NAME}”: check is not paused" in " ".join(
            notices(app)
        )

        await pilot.press("d")
        question = app.screen.query_one("#question", Static)
        await pilot.pause()
        assert str(question.render()) == f"Delete the check “{MARKUP_NAME}”?"
        await pilot.press("n")
        assert app.screen is app.main
        assert (await served.get(check["uuid"])).status_code == 200


async def test_the_form_shows_markup_in_the_input_as_typed(served: Served) -> None:
    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "live" in header(app))
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, CheckForm)
        form.query_one("#schedule", Input).value = "0 3 * * *"
        form.query_one("#tz", Input).value = "[link=http://x]y"
        problems = form.query_one("#problems", Static)
        form.query_one("#name", Input).value = "n [b]x[/b] [link=http://x]y"
        await until(pilot, lambda: "[link=http://x]y" in str(problems.render()))
        shown = str(problems.render())
        assert shown == 'tz: "[link=http://x]y" is not a known IANA time zone'
        assert form.query_one("#save").disabled


async def test_a_check_made_with_n_alerts_the_projects_channels(served: Served) -> None:
    ops = await served.add_channel("ops")
    pager = await served.add_channel("pager")

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "live" in header(app))
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, CheckForm)
        form.query_one("#name", Input).value = "nightly"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: table(app).row_count == 1)
        [key] = list(app.rows)
        linked = await served.store.check_channels(key)
        assert sorted(linked) == sorted([ops.id, pager.id])

        # An edit leaves the channels alone (here: one taken off by hand).
        await served.store.set_check_channels(key, [ops.id])
        await pilot.press("e")
        form = app.screen
        assert isinstance(form, CheckForm)
        form.query_one("#name", Input).value = "nightly v2"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: cell(app, key, "name") == "nightly v2")

    assert await served.store.check_channels(key) == [ops.id]
    made = (await served.get(key)).json()
    assert made["channels"] == ops.id


async def test_a_config_file_that_cannot_be_written_is_reported_and_the_app_runs(
    served: Served, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await served.create(name="backup", timeout=3600)
    (tmp_path / "file").write_text("not a folder")
    config = tmp_path / "file" / "tui.json"
    connection = Connection(served.base_url, served.tenant.write)

    app = served.app(on_connected=lambda: save(connection, config))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 1)
        await until(pilot, lambda: any("Cannot save" in n for n in notices(app)))
        [shown] = [n for n in notices(app) if "Cannot save" in n]
        assert f"Cannot save the connection to {tmp_path / 'file'}" in shown
        assert [r.message for r in caplog.records if r.message == shown]
        # Still running and live.
        await until(pilot, lambda: "live" in header(app))
        await pilot.press("s")
        assert "by name" in header(app)
    assert app.crash is None
    assert not config.exists()


async def test_an_unexpected_error_is_logged_and_ends_the_app_with_1(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    app = served.app()
    with pytest.raises(ZeroDivisionError):
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "live" in header(app))
            app.call_later(lambda: 1 / 0)
            await pilot.pause(0.5)

    assert app.return_code == 1
    assert isinstance(app.crash, ZeroDivisionError)
    [record] = [r for r in caplog.records if getattr(r, "action", "") == "tui_crashed"]
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError
    line = app.crash_line("/tmp/tui.log")
    assert "\n" not in line
    assert line == (
        "serverlord tui: stopped on an unexpected error: ZeroDivisionError: "
        "division by zero (the traceback is in /tmp/tui.log)"
    )


async def test_a_status_filter_follows_the_checks_as_they_change(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = await served.create(name="backup", timeout=3600)
    await served.create(name="report", timeout=3600)
    web = await served.create(name="web", timeout=3600)
    await served.client.get(f"{web['ping_url']}/fail")

    app = served.app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 3)
        await until(pilot, lambda: "live" in header(app))
        await pilot.press("slash", *"down", "enter")
        assert names(app) == ["web"]
        rebuilt: list[bool] = []
        rebuild = app.main.rebuild
        monkeypatch.setattr(
            app.main, "rebuild", lambda: [rebuilt.append(True), rebuild()]
        )

        # backup goes down later: it comes in without filtering again.
        await served.client.get(f"{backup['ping_url']}/fail")
        await until(pilot, lambda: sorted(names(app)) == ["backup", "web"])
        await until(pilot, lambda: "2/3 shown" in header(app))

        # web comes back up: it leaves.
        await served.client.get(web["ping_url"])
        await until(pilot, lambda: names(app) == ["backup"])
        assert cell(app, backup["uuid"], "status") == " down "
        assert rebuilt == []  # row by row, never the whole table

        await pilot.press("escape")
        assert table(app).row_count == 3


async def test_details_with_a_read_only_key_show_flips_and_say_pings_need_rw(
    served: Served,
) -> None:
    check = await served.create(name="backup", timeout=3600)
    await served.client.get(f"{check['ping_url']}/fail")

    app = served.app(key=served.tenant.read)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 1)
        await pilot.press("enter")
        details = app.screen
        assert isinstance(details, DetailsScreen)
        flips = details.query_one("#flips", DataTable)
        await until(pilot, lambda: flips.row_count == 1)
        note = details.query_one("#pings-note", Static)
        await until(pilot, lambda: note.display)
        assert str(note.render()).startswith("Pings need a read-write API key")
        assert details.query_one("#pings", DataTable).row_count == 0
        assert "backup" in str(details.query_one("#config", Static).render())
        # Expected with such a key: no error notice.
        assert not any("Cannot show" in n for n in notices(app))


CRASHING_TUI = (
    "import sys\n"
    "from serverlord.tui.main_screen import MainScreen\n"
    "def tick(self): raise RuntimeError('boom')\n"
    "MainScreen.tick = tick\n"
    "from serverlord.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
"""``serverlord tui`` with a fault put in its once-a-second tick."""


def test_the_command_logs_an_unexpected_error_and_exits_1_with_one_line(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = {"SERVERLORD_DATA_DIR": str(tmp_path / "data"),
                "SERVERLORD_BASE_URL": base}  # fmt: skip
    made = subprocess.run(
        [sys.executable, "-m", "serverlord", "user", "add", "ops@example.com",
         "--json"],
        env=clean_env(**settings), capture_output=True, text=True, check=True,
    )  # fmt: skip
    key = json.loads(made.stdout)["api_key"]
    server = ServerProcess(tmp_path / "data", port, tmp_path / "serve.log")
    servers.append(server.start())
    server.wait_ready()

    log = tmp_path / "tui.log"
    terminal = Terminal(
        [sys.executable, "-c", CRASHING_TUI, "tui", "--url", base, "--api-key", key,
         "--config", str(tmp_path / "tui.json"), "--log-file", str(log)],
        env=clean_env(),
        size=(120, 30),
    )  # fmt: skip
    try:
        assert terminal.read_until(b"traceback is in"), terminal.output[-2000:]
        assert terminal.wait() == 1
    finally:
        terminal.close()
    shown = terminal.output.decode(errors="replace")
    assert (
        "serverlord tui: stopped on an unexpected error: RuntimeError: boom "
        f"(the traceback is in {log})"
    ) in shown
    # No traceback on the terminal (Textual's would show locals, the key too).
    assert "Traceback" not in shown and key not in shown
    written = log.read_text()
    assert "stopped on an unexpected error: RuntimeError: boom" in written
    assert "Traceback" in written and "line 3, in tick" in written
