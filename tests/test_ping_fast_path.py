"""The fast paths of pings answer exactly like the Litestar ping routes.

Three HTTP servers run on real sockets over one store: one serves the Litestar
application alone (the routes as they were), one the same application behind
``PingFastPath`` through uvicorn's ASGI round, and one behind ``PingProtocol``,
which answers plain pings without that round, as ``serverlord serve`` does.
Each side pings its own twin checks with the same table of requests; the raw
answers (status line, headers but the date, body) and the pings stored must be
the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from serverlord.checks import Check
from serverlord.config import Settings
from serverlord.http.app import build_app, with_fast_pings
from serverlord.http.guard import GuardedHttpProtocol
from serverlord.http.ping_protocol import PingProtocol
from serverlord.schedules import Schedule
from tests.conftest import Live, free_socket
from tests.tenants import Tenant

DAY = 86400.0
RUN_ID = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, request: pytest.FixtureRequest
) -> Settings:
    overrides: dict[str, Any] = getattr(request, "param", {})
    fields: dict[str, Any] = {"trusted_proxy": True, "ping_body_limit": 10}
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        shards=4,
        **{**fields, **overrides},
    )


@dataclass
class Side:
    """One of the two servers, with the checks only its requests ping."""

    port: int
    routes: list[str]
    check: Check
    slug: str
    prefix: str

    def fill(self, path: str, key: str) -> str:
        return (
            path.replace("{check}", self.check.id)
            .replace("{key}", key)
            .replace("{slug}", self.slug)
            .replace("{new}", f"{self.prefix}-new")
        )


@contextlib.asynccontextmanager
async def serving(app: Any, routes: list[str] | None = None) -> AsyncIterator[int]:
    """``app`` on a free port; with ``routes``, behind the guarded protocol,
    noting there the route names it writes in the scope for tracing; without,
    served as it is by ``PingProtocol``, as serve runs it."""

    async def noting_routes(scope: Any, receive: Any, send: Any) -> None:
        await app(scope, receive, send)
        assert routes is not None
        routes.append(scope.get("path_template", ""))

    sock = free_socket()
    config = uvicorn.Config(
        app if routes is None else noting_routes,
        http=PingProtocol if routes is None else GuardedHttpProtocol,
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        log_level="warning",
        log_config=None,
        server_header=False,
    )
    http = uvicorn.Server(config)
    http.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(http.serve(sockets=[sock]))
    while not http.started:
        await asyncio.sleep(0.005)
    try:
        yield sock.getsockname()[1]
    finally:
        http.should_exit = True
        await task
        sock.close()


async def add_check(live: Live, tenant: Tenant, slug: str) -> Check:
    check = Check(
        id=str(uuid.uuid4()),
        name=slug,
        slug=slug,
        created=time.time(),
        schedule=Schedule.simple(DAY),
        grace=3600.0,
        project=tenant.project.id,
    )
    await live.store.add_check(check)
    return check


@pytest.fixture
async def sides(live: Live, alice: Tenant) -> AsyncIterator[tuple[Side, Side, Side]]:
    """The Litestar routes alone, the fast path in front of them, and the
    fast path answered by the protocol."""
    old_app = build_app(live.server, live.settings)
    new_app = with_fast_pings(build_app(live.server, live.settings))
    raw_app = with_fast_pings(build_app(live.server, live.settings))
    old_routes: list[str] = []
    new_routes: list[str] = []
    async with (
        serving(old_app, old_routes) as old_port,
        serving(new_app, new_routes) as new_port,
        serving(raw_app) as raw_port,
    ):
        old_check = await add_check(live, alice, "old-job")
        new_check = await add_check(live, alice, "new-job")
        raw_check = await add_check(live, alice, "raw-job")
        yield (
            Side(old_port, old_routes, old_check, "old-job", "old"),
            Side(new_port, new_routes, new_check, "new-job", "new"),
            Side(raw_port, [], raw_check, "raw-job", "raw"),
        )


async def exchange(port: int, request: bytes) -> tuple[bytes, list[bytes], bytes]:
    """The status line, the header lines but the date, and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=30)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *headers = head.split(b"\r\n")
    kept = sorted(h.lower() for h in headers if not h.lower().startswith(b"date:"))
    return status, kept, body


def raw_request(
    method: str, path: str, headers: dict[str, str], body: bytes | None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None and "Transfer-Encoding" not in headers:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


CHUNKED = b"5\r\nhello\r\n0\r\n\r\n"
CASES: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("GET", "/ping/{check}", {}, None),
    ("HEAD", "/ping/{check}", {}, None),
    ("POST", "/ping/{check}", {}, b""),
    ("POST", "/ping/{check}", {}, b"job output, longer than the limit"),
    ("POST", "/ping/{check}/fail", {"Transfer-Encoding": "chunked"}, CHUNKED),
    ("GET", "/ping/{check}/start", {}, None),
    ("GET", f"/ping/{{check}}/start?rid={RUN_ID}", {}, None),
    ("GET", f"/ping/{{check}}?rid={RUN_ID.upper()}", {}, None),
    ("GET", "/ping/{check}?rid=", {}, None),
    ("GET", "/ping/{check}?rid=nope", {}, None),
    ("GET", "/ping/{check}?rid=a&rid=b&x=%zz", {}, None),
    ("GET", "/ping/{check}/fail", {}, None),
    ("GET", "/ping/{check}/log", {}, None),
    ("GET", "/ping/{check}/0", {}, None),
    ("GET", "/ping/{check}/1", {}, None),
    ("GET", "/ping/{check}/0255", {}, None),
    ("GET", "/ping/{check}/256", {}, None),
    ("GET", "/ping/{check}/99999999999", {}, None),
    ("GET", "/ping/{check}/whatever", {}, None),
    ("GET", "/ping/{check}/", {}, None),
    ("GET", "/ping/{check}//start", {}, None),
    ("GET", "/ping/{check}/start/more/segments", {}, None),
    ("GET", f"/ping/{uuid.uuid4()}", {}, None),
    ("GET", f"/ping/{uuid.uuid4()}/fail", {}, None),
    ("GET", "/ping/not-a-uuid", {}, None),
    ("GET", "/ping/", {}, None),
    ("PUT", "/ping/{check}", {}, None),
    ("DELETE", "/ping/{check}/fail", {}, None),
    ("OPTIONS", "/ping/{check}", {}, None),
    ("GET", "/ping/{check}", {"User-Agent": "cron/" + "x" * 300}, None),
    ("GET", "/ping/{check}", {"User-Agent": "caf\xe9"}, None),
    ("GET", "/ping/{check}", {"X-Forwarded-For": "203.0.113.9"}, None),
    ("GET", "/ping/{check}", {"X-Forwarded-For": "10.0.0.1, 2001:db8::7"}, None),
    ("GET", "/ping/{check}", {"X-Forwarded-For": "not an address"}, None),
    ("GET", "/ping/{check}", {"Origin": "https://example.com"}, None),
    ("GET", "/ping/{key}/{slug}", {}, None),
    ("HEAD", "/ping/{key}/{slug}/start", {}, None),
    ("GET", "/ping/{key}/{slug}/fail", {}, None),
    ("GET", "/ping/{key}/{slug}/3", {}, None),
    ("GET", "/ping/{key}/{slug}/nope", {}, None),
    ("POST", "/ping/{key}/{slug}", {}, b"from a slug URL"),
    ("GET", "/ping/{key}/missing", {}, None),
    ("GET", "/ping/{key}/{new}", {}, None),
    ("GET", "/ping/{key}/{new}?create=1", {}, None),
    ("GET", "/ping/{key}/{new}?create=1", {}, None),
    ("GET", "/ping/{key}/Bad!Slug", {}, None),
    ("GET", "/ping/{key}/Bad!Slug?create=1", {}, None),
    ("GET", "/ping/unknownkey/{slug}", {}, None),
    ("GET", "/ping/{check}/x?create=1", {}, None),
    ("GET", "/ping/%7Bcheck%7D", {}, None),
]


def stored(ping: Any) -> tuple[Any, ...]:
    return (
        ping.n,
        ping.kind,
        ping.method,
        ping.exit_status,
        ping.remote_addr,
        ping.user_agent,
        ping.rid,
        ping.body,
    )


async def test_the_fast_paths_answer_every_case_like_the_litestar_routes(
    live: Live, alice: Tenant, sides: tuple[Side, Side, Side]
) -> None:
    old, new, raw = sides
    key = alice.project.ping_key
    for method, path, headers, body in CASES:
        answers = [
            await exchange(
                side.port, raw_request(method, side.fill(path, key), headers, body)
            )
            for side in sides
        ]
        assert answers[0] == answers[1] == answers[2], (method, path, headers, body)

    assert old.routes == new.routes
    assert "/ping/{code}/{slug}/{suffix}" in new.routes
    old_pings = await live.store.recent_pings(old.check.id, 100)
    for side in (new, raw):
        pings = await live.store.recent_pings(side.check.id, 100)
        assert [stored(p) for p in old_pings] == [stored(p) for p in pings]
    assert len(old_pings) > 20


async def test_the_protocol_answers_pipelined_requests_in_order_on_one_connection(
    live: Live, alice: Tenant, sides: tuple[Side, Side, Side]
) -> None:
    raw = sides[2]
    head = "HTTP/1.1\r\nHost: a\r\n"
    ping = f"/ping/{raw.check.id}"
    requests = [
        f"GET {ping} {head}\r\n",
        f"HEAD {ping}/start {head}\r\n",
        f"GET /api/v3/checks/ {head}\r\n",
        f"POST {ping} {head}Content-Length: 2\r\n\r\nhi",
        f"GET /ping/{uuid.uuid4()} {head}\r\n",
        f"GET {ping}/fail {head}Connection: close\r\n\r\n",
    ]
    reader, writer = await asyncio.open_connection("127.0.0.1", raw.port)
    writer.write("".join(requests).encode())
    answer = await asyncio.wait_for(reader.read(), timeout=30)
    writer.close()

    # Bodies run straight into the next status line.
    statuses = re.findall(rb"HTTP/1\.1 \d{3} [A-Za-z ]+", answer)
    assert statuses == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 401 Unauthorized",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 404 Not Found",
        b"HTTP/1.1 200 OK",
    ]
    assert answer.endswith(b"OK")  # the server closed after the last one
    pings = await live.store.recent_pings(raw.check.id, 10)
    assert [(p.kind, p.body) for p in reversed(pings)] == [
        ("success", b""),
        ("start", b""),
        ("success", b"hi"),
        ("fail", b""),
    ]


@pytest.mark.parametrize("settings", [{"ping_rate_limit": 0.2}], indirect=True)
async def test_the_fast_paths_limit_a_check_like_the_litestar_routes(
    live: Live, alice: Tenant, sides: tuple[Side, Side, Side]
) -> None:
    # 0.2 pings a second may come two at once; the third is refused.
    key = alice.project.ping_key
    for path in ["/ping/{check}"] * 4 + ["/ping/{key}/{slug}/fail"] * 2:
        answers = [
            await exchange(
                side.port, raw_request("GET", side.fill(path, key), {}, None)
            )
            for side in sides
        ]
        assert answers[0] == answers[1] == answers[2], path
    assert answers[0][0].endswith(b"429 Too Many Requests")


async def test_a_failure_while_answering_is_logged_and_closes_the_connection(
    live: Live,
    sides: tuple[Side, Side, Side],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    raw = sides[2]

    def broken(self: PingProtocol, cycle: Any, answer: Any) -> None:
        raise RuntimeError("a bug while writing")

    monkeypatch.setattr(PingProtocol, "_send", broken)
    request = f"GET /ping/{raw.check.id} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", raw.port)
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(), timeout=30)
    writer.close()

    assert answer == b""
    failures = [r for r in caplog.records if getattr(r, "action", "") == "ping_failed"]
    assert len(failures) == 1
    assert "a bug while writing" in failures[0].getMessage()
    # The ping was recorded before its answer failed.
    stored = await live.store.get_check(raw.check.id)
    assert stored is not None and stored.n_pings == 1
