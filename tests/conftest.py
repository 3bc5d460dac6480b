"""Shared fixtures: a store on each backend, and a real serverlord on a real socket
in the test's loop.

Every test that asks for ``settings``, ``store`` or ``live`` runs twice: on SQLite
and on a real PostgreSQL (a fresh migrated database per test, see
``tests/postgres.py``). A module that tests one backend only overrides the
``backend`` fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import hypothesis
import pytest
import uvicorn

from serverlord import clock
from serverlord.config import Settings
from serverlord.http.app import build_app, with_fast_pings
from serverlord.http.ping_protocol import PingProtocol
from serverlord.server import Server
from serverlord.store import Store, open_store
from tests.database import Database
from tests.receivers import MailSink, WebhookReceiver
from tests.tenants import Tenant, make_tenant

if TYPE_CHECKING:
    from tests.test_end_to_end import ServerProcess

BACKENDS = ("sqlite", "postgres")

on_both_backends = pytest.mark.parametrize("backend", BACKENDS)
"""For a module whose ``backend`` fixture is SQLite only: this test runs on both."""


# Property tests check behaviour, not speed: on a busy 2-core machine one
# example can take longer than hypothesis's default 200 ms deadline.
hypothesis.settings.register_profile("serverlord", deadline=None)
hypothesis.settings.load_profile("serverlord")


@dataclass
class Live:
    """A running serverlord: its store, its Server object and an HTTP client."""

    settings: Settings
    store: Store
    server: Server
    client: httpx.AsyncClient
    base_url: str

    def remove_once_listed(
        self, channel_id: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Have another process remove the channel just after the next
        request listed its project's channels: still there when read, gone
        when written."""
        real = self.store.project_channels

        async def then_removed(project: str) -> Any:
            known = await real(project)
            monkeypatch.setattr(self.store, "project_channels", real)
            await self.store.delete_channel(channel_id)
            return known

        monkeypatch.setattr(self.store, "project_channels", then_removed)


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The store's backend: each test that uses a store runs on both."""
    name: str = request.param
    return name


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str:
    """``--database-url`` for the backend: empty for SQLite (its default file in
    the data folder), a fresh migrated database for PostgreSQL."""
    if backend == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return ""


@pytest.fixture
def database(tmp_path: Path, database_url: str) -> Database:
    """The backend's database for tests that run serverlord as a subprocess."""
    return Database(tmp_path / "data", database_url)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path, shards=4, database_url=database_url)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = open_store(settings)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def live(settings: Settings, store: Store) -> AsyncIterator[Live]:
    server = Server(settings, store)
    await server.start()
    app = build_app(server, settings)
    sock = free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        with_fast_pings(app),
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        log_level="warning",
        # What serve runs: plain pings answered by the protocol itself.
        http=PingProtocol,
    )
    http = uvicorn.Server(config)
    http.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(http.serve(sockets=[sock]))
    while not http.started:
        await asyncio.sleep(0.005)
    base_url = f"http://127.0.0.1:{port}"
    settings.base_url = base_url
    async with httpx.AsyncClient(base_url=base_url) as client:
        yield Live(settings, store, server, client, base_url)
    http.should_exit = True
    await task
    await server.stop()
    sock.close()


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    """Every ``serverlord serve`` process a test starts; any still running is
    killed afterwards."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.cleanup()


@pytest.fixture
async def alice(live: Live) -> Tenant:
    """A user with a project and keys, on the live server's store."""
    return await make_tenant(live.store, "alice@example.com")


@pytest.fixture
async def bob(live: Live) -> Tenant:
    """Another user, whose project alice must never see."""
    return await make_tenant(live.store, "bob@example.com")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A webhook receiver on 127.0.0.1 that records what is posted to it."""
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
async def mail() -> AsyncIterator[MailSink]:
    """An SMTP server on 127.0.0.1 that keeps the messages it is sent."""
    sink = await MailSink().start()
    yield sink
    await sink.close()


@pytest.fixture
def jump(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Move this process's system clock (``time.time`` and ``time.time_ns``)
    by so many seconds from now on, as an NTP step or ``date -s`` would; the
    monotonic and boot clocks go on untouched.

    The clock, and what serverlord's clock made of its steps, are put back
    afterwards: the next test starts from the real time, with no step seen.
    """
    clock.observe()
    for name in ("_moved", "_skipped", "_highest"):
        monkeypatch.setattr(clock, name, getattr(clock, name))
    real_time, real_time_ns = time.time, time.time_ns
    offset = [0.0]
    monkeypatch.setattr(time, "time", lambda: real_time() + offset[0])
    monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + int(offset[0] * 1e9))

    def move(seconds: float) -> None:
        offset[0] += seconds

    return move


def quick_notify_settings(data_dir: Path, database_url: str) -> Settings:
    """Settings for notifier tests: quick retries, and a roomy timeout so that
    a slow box never times out a send."""
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        shards=4,
        notify_timeout=5.0,
        notify_retry_base=0.05,
        notify_retry_max=0.2,
        notify_retry_for=60.0,
    )
