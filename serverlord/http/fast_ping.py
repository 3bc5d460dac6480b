"""Pings answered before Litestar: the server's hottest path, kept short.

A ping is a tiny request, and Litestar's routing, request object and response
machinery cost more CPU than the ping itself once the store batches its
writes. ``PingFastPath`` sits in front of the Litestar application and hands
the plain ping requests — GET, POST or HEAD on ``/ping/<code>[/...]`` with no
body — straight to the same ``PingService`` the Litestar routes use, which
answers with the same prebuilt responses. Everything else, bodies included
(their cap and 413 are Litestar's), goes to Litestar unchanged, so what a
client sees does not depend on which path answered.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

# Litestar's own query parser, so that ``rid`` and ``create`` read the same
# (repeated or malformed parameters included) whichever path answers.
from litestar._parsers import parse_query_string
from litestar.datastructures import MultiDict
from litestar.response.base import ASGIResponse

from serverlord.http.ping import PingService, may_have_body

log = logging.getLogger(__name__)

PING_METHODS = frozenset({"GET", "POST", "HEAD"})
TEMPLATES = {
    1: "/ping/{code}",
    2: "/ping/{code}/{suffix}",
    3: "/ping/{code}/{slug}/{suffix}",
}
"""Litestar's names of the ping routes, by the number of segments after
``/ping/``: a traced request carries its route's name in the scope."""
_NO_QUERY: MultiDict[Any] = MultiDict()
"""Most pings have no query string: one empty one for all (only read)."""
_FAILED = ASGIResponse(
    body=b"Internal Server Error",
    status_code=500,
    media_type="text/plain",
)


class Client(NamedTuple):
    """The peer of the connection, as Litestar's ``request.client`` gives it."""

    host: str
    port: int


class RawHeaders:
    """The request headers as the ping service reads them: first value or all
    values of a name. uvicorn lowercases the names; values are latin-1, as
    Litestar decodes them."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw

    def get(self, name: str, default: str = "") -> str:
        wanted = name.encode()
        for key, value in self._raw:
            if key == wanted:
                return value.decode("latin-1")
        return default

    def getall(self, name: str, default: list[str]) -> list[str]:
        wanted = name.encode()
        found = [value.decode("latin-1") for key, value in self._raw if key == wanted]
        return found or default


class ScopeRequest:
    """What ``PingService`` reads of a request, straight from the ASGI scope.

    It mirrors the few attributes of Litestar's ``Request`` the service uses,
    parsed the same way, and nothing more.
    """

    __slots__ = ("headers", "method", "scope")

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.headers = RawHeaders(scope["headers"])

    @property
    def query_params(self) -> MultiDict[Any]:
        query = self.scope.get("query_string", b"")
        if not query:
            return _NO_QUERY
        return MultiDict(parse_query_string(query))

    @property
    def client(self) -> Client | None:
        client = self.scope.get("client")
        return None if client is None else Client(client[0], client[1])

    async def stream(self) -> AsyncIterator[bytes]:
        # The fast path takes bodiless requests only: there is nothing to read.
        raise AssertionError("a request with a body goes through Litestar")
        yield b""  # pragma: no cover - makes this an async generator


class PingFastPath:
    """An ASGI application: plain pings answered here, the rest by ``app``."""

    def __init__(self, app: Any, service: PingService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        segments = self.ping_segments(scope)
        if segments is None:
            await self.app(scope, receive, send)
            return
        answer = await self.answer(scope, segments)
        await answer(scope, receive, send)

    async def answer(self, scope: Any, segments: list[str]) -> ASGIResponse:
        """The answer to a plain ping, whose ``ping_segments`` these are."""
        scope["path_template"] = TEMPLATES[len(segments)]
        request = ScopeRequest(scope)
        try:
            return await self._answer(request, segments)
        except Exception as exc:
            # Litestar would answer 500 too; the ping service handles the
            # store's errors itself, so this is a bug, logged with its cause.
            log.error(
                "ping failed: %r",
                exc,
                exc_info=exc,
                extra={"action": "ping_failed"},
            )
            return _FAILED

    def ping_segments(self, scope: Any) -> list[str] | None:
        """The segments after ``/ping/`` of a request this path answers."""
        if scope["type"] != "http":
            return None
        path: str = scope["path"]
        if not path.startswith("/ping/") or scope["method"] not in PING_METHODS:
            return None
        segments = path[6:].split("/")
        # Empty segments (a trailing slash, "//") are left to Litestar's
        # own reading of them, like any body.
        if len(segments) > 3 or "" in segments or may_have_body(scope):
            return None
        return segments

    async def _answer(self, request: ScopeRequest, segments: list[str]) -> ASGIResponse:
        code, *rest = segments
        slug = rest[0] if len(rest) == 2 else None
        suffix = rest[-1] if rest else None
        return await self.service.respond(request, code, slug, suffix)
