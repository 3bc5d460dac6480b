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
    check = await daily_check(live)
    head = f"POST /ping/{check.id} HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"

    answer, _ = await exchange(guarded, head.encode() + b"only ten b")
    after = await live.client.get(f"/ping/{check.id}")

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert after.status_code == 200
    stored = await live.store.get_check(check.id)
    assert stored is not None
    assert stored.n_pings == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def daily_check(live: Live) -> Check:
    check = Check(
        id=str(uuid.uuid4()),
        name="job",
        created=time.time(),
        schedule=Schedule.simple(86400.0),
        grace=3600.0,
    )
    await live.store.add_check(check)
    return check


async def test_a_busy_connection_is_never_cut_while_each_request_is_quick(
    live: Live, guarded: int
) -> None:
    check = await daily_check(live)
    request = f"GET /ping/{check.id} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded)
    loop = asyncio.get_running_loop()
    until = loop.time() + 4 * SHORT
    answers = 0
    try:
        while loop.time() < until:
            writer.write(request)
            line = await asyncio.wait_for(reader.readuntil(b"\r\n\r\nOK"), 5)
            assert line.startswith(b"HTTP/1.1 200 ")
            answers += 1
            await asyncio.sleep(SHORT / 5)
    finally:
        writer.close()

    stored = await live.store.get_check(check.id)
    assert stored is not None
    assert stored.n_pings == answers >= 10


async def test_a_head_that_stalls_after_a_slow_body_gets_the_head_limit(
    live: Live, guarded: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The body's longer limit was running when its request ended; the next
    # head must not inherit it.
    monkeypatch.setattr(guard, "BODY_TIMEOUT", 20 * SHORT)
    check = await daily_check(live)
    head = f"POST /ping/{check.id} HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n"
    stalled = f"GET /ping/{check.id} HTTP/1.1\r\nHost: a\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded)
    try:
        writer.write(head.encode())
        await asyncio.sleep(2 * SHORT)
        writer.write(b"ok" + stalled.encode())
        sent = time.monotonic()
        answer = await asyncio.wait_for(reader.read(), timeout=30 * SHORT)
        took = time.monotonic() - sent
    finally:
        writer.close()

    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"HTTP/1.1 408 " in answer
    assert took < 10 * SHORT


async def test_requests_anyone_can_send_do_not_fill_the_log(
    live: Live, guarded: int, caplog: pytest.LogCaptureFixture
) -> None:
    guard.quiet_uvicorn()
    check = await daily_check(live)
    upgrade = (
        f"GET /ping/{check.id} HTTP/1.1\r\nHost: a\r\n"
        "Connection: Upgrade\r\nUpgrade: {}\r\n\r\n"
    )
    caplog.set_level(logging.INFO)

    answers = [await exchange(guarded, b"\x00\x01 not http\r\n\r\n") for _ in range(5)]
    for protocol in ("websocket", "h2c", "websocket"):
        await exchange(guarded, upgrade.format(protocol).encode())

    for answer, _ in answers:
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"x-content-type-options: nosniff\r\n" in answer
        assert answer.endswith(b"invalid HTTP request")
    uvicorn_lines = [
        record.getMessage()
        for record in caplog.records
        if record.name == "uvicorn.error"
    ]
    assert uvicorn_lines.count("Invalid HTTP request received.") <= 1
    assert not [line for line in uvicorn_lines if "upgrade" in line.lower()]
    stored = await live.store.get_check(check.id)
    assert stored is not None
    assert stored.n_pings == 3  # the upgrade requests were answered as pings
