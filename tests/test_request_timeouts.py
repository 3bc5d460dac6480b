"""The guarded HTTP protocol's time limits, shortened, on a live server.

A client that connects and says nothing, or announces a body and sends only
part of it, gets 408 and is disconnected; the ping it began is not recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import uvicorn

from serverlord.checks import Check
from serverlord.http import guard
from serverlord.http.app import build_app, with_fast_pings
from serverlord.schedules import Schedule
from tests.conftest import Live, free_socket

SHORT = 0.5


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
async def guarded(live: Live, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[int]:
    """The live server's application behind the guarded protocol: its port."""
    monkeypatch.setattr(guard, "HEAD_TIMEOUT", SHORT)
    monkeypatch.setattr(guard, "BODY_TIMEOUT", SHORT)
    sock = free_socket()
    config = uvicorn.Config(
        with_fast_pings(build_app(live.server, live.settings)),
        http=guard.GuardedHttpProtocol,
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    http = uvicorn.Server(config)
    http.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(http.serve(sockets=[sock]))
    while not http.started:
        await asyncio.sleep(0.005)
    yield sock.getsockname()[1]
    http.should_exit = True
    await task
    sock.close()


async def exchange(port: int, data: bytes) -> tuple[bytes, float]:
    """What the server answers to these bytes, and after how long it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return answer, time.monotonic() - started


async def test_a_silent_connection_gets_408_and_is_closed(guarded: int) -> None:
    answer, _ = await exchange(guarded, b"")

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(b"request timeout")


async def test_a_body_that_stops_coming_gets_408_and_records_nothing(
    live: Live, guarded: int, caplog: pytest.LogCaptureFixture
) -> None:
    check = Check(
        id=str(uuid.uuid4()),
        name="job",
        created=time.time(),
        schedule=Schedule.simple(86400.0),
        grace=3600.0,
    )
    await live.store.add_check(check)
    head = f"POST /ping/{check.id} HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"

    answer, _ = await exchange(guarded, head.encode() + b"only ten b")
    after = await live.client.get(f"/ping/{check.id}")

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert after.status_code == 200
    stored = await live.store.get_check(check.id)
    assert stored is not None
    assert stored.n_pings == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
