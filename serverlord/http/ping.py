"""The ping routes, compatible with Healthchecks.io's ping API.

``/ping/<uuid>[/start|/fail|/log|/<exit status>]`` by GET, POST or HEAD, and
the same suffixes after ``/ping/<project ping key>/<slug>``; ``?create=1`` on
a slug URL makes a missing check. The answer comes only after the ping is
committed to the store. Answers are plain text, as cron wrappers and
Healthchecks clients expect.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from litestar import Request, route
from litestar.exceptions import ClientException
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.response.base import ASGIResponse

from serverlord import clock
from serverlord.checks import Check
from serverlord.http.limits import RateLimiter
from serverlord.keyed_lock import KeyedLock
from serverlord.pings import BadPingError, Ping, kind_of
from serverlord.store.base import (
    CheckNotFoundError,
    StoreError,
    StoreUnavailableError,
)
from serverlord.telemetry.meters import PingMeter

log = logging.getLogger(__name__)

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SLUG_RE = re.compile(r"[a-z0-9_-]{1,100}")
USER_AGENT_LIMIT = 200
NO_CACHE = "no-cache, no-store, must-revalidate, max-age=0"
BURST_SECONDS = 10.0
"""A check may send this many seconds' worth of its ping rate limit at once."""
NEW_CHECKS_BURST = 500
"""Checks one project's pings may create at once with ``?create=1``..."""
NEW_CHECKS_PER_SECOND = 1.0
"""...and then at this rate: a leaked ping key cannot flood a project."""
TOO_MANY_NEW = "too many new checks, slow down"


class PingRequest(Protocol):
    """What the ping service reads of a request: Litestar's ``Request``, or
    the fast path's view of the bare ASGI scope (see ``fast_ping``)."""

    @property
    def method(self) -> str: ...

    @property
    def scope(self) -> Any: ...

    @property
    def query_params(self) -> Any: ...

    @property
    def headers(self) -> Any: ...

    @property
    def client(self) -> Any: ...

    def stream(self) -> AsyncIterator[bytes]: ...


class TooManyNewChecksError(Exception):
    """The project's pings created their share of checks for now."""


class PingService:
    """What the ping routes need from the running server."""

    def __init__(
        self,
        ingest: Any,
        body_limit: int,
        trusted_proxy: bool,
        store: Any = None,
        meter: PingMeter | None = None,
        rate_limit: float = 0.0,
    ) -> None:
        self.ingest = ingest
        self.store = store
        """Where slug URLs are looked up; without one they are not served."""
        self._ping_keys: dict[str, str] = {}
        self._creating = KeyedLock()
        self._new_checks = RateLimiter(NEW_CHECKS_PER_SECOND, NEW_CHECKS_BURST)
        self.body_limit = body_limit
        self.trusted_proxy = trusted_proxy
        self.meter = meter
        """Counts and times the pings when set; without it nothing is measured."""
        self.headers = {
            "Access-Control-Allow-Origin": "*",
            "Cache-Control": NO_CACHE,
            "Ping-Body-Limit": str(body_limit),
        }
        self._answers: dict[tuple[int, str, bool], ASGIResponse] = {}
        self.limiter: RateLimiter | None = None
        """Pings a second per check; None when pings are not limited."""
        if rate_limit > 0:
            burst = max(1.0, rate_limit * BURST_SECONDS)
            self.limiter = RateLimiter(rate_limit, burst)

    def answer(self, request: PingRequest, status: int, text: str) -> ASGIResponse:
        # Answers hold no per-request state, so each one is built once and sent
        # again: building headers is a good part of a ping's cost.
        head = request.method == "HEAD"
        key = (status, text, head)
        answer = self._answers.get(key)
        if answer is None:
            headers = dict(self.headers)
            if status == 503:
                headers["Retry-After"] = "1"
            elif status == 429:
                # One token comes back in 1/rate seconds, always the same.
                limiter = self._new_checks if text == TOO_MANY_NEW else self.limiter
                assert limiter is not None
                headers["Retry-After"] = limiter.retry_after(1 / limiter.rate)
            answer = ASGIResponse(
                body=b"" if head else text.encode(),
                content_length=len(text.encode()),
                status_code=status,
                media_type="text/plain",
                headers=headers,
                is_head_response=head,
            )
            self._answers[key] = answer
        return answer

    async def respond(
        self,
        request: PingRequest,
        code: str,
        slug: str | None,
        suffix: str | None,
    ) -> ASGIResponse:
        """Answer ``/ping/<code>[/<slug>][/<suffix>]``, measured when there is
        a meter: what the Litestar routes and the fast path both call."""
        started = time.perf_counter()
        if slug is not None:
            answer = await self.handle_slug(request, code, slug, suffix)
            kind = suffix
        else:
            answer = await self.handle(request, code, suffix)
            # /ping/<ping key>/<slug> is a success ping: its last segment is
            # a slug, not a kind.
            kind = suffix if len(code) == 36 else None
        if self.meter is not None:
            self.meter.ping(kind, answer.status_code, started)
        return answer

    async def handle(
        self, request: PingRequest, code: str, suffix: str | None
    ) -> ASGIResponse:
        if not UUID_RE.fullmatch(code):
            if suffix is None:
                return self.answer(request, 404, "not found")
            return await self.handle_slug(request, code, suffix, None)
        try:
            ping = await self._parse(request, code, suffix)
        except BadPingError as exc:
            return self.answer(request, 400, str(exc))
        except LookupError:
            return self.answer(request, 404, "not found")
        except ClientException as exc:
            return self.answer(request, exc.status_code, "request body too large")
        return await self._record(request, ping, 200, "OK")

    async def _record(
        self, request: PingRequest, ping: Ping, status: int, text: str
    ) -> ASGIResponse:
        # A refused ping is not recorded: a runaway loop must not flood the
        # store nor push other checks' pings out of the writer's batches.
        if self.limiter is not None and self.limiter.take(ping.check_id):
            return self.answer(request, 429, "too many pings, slow down")
        try:
            await self.ingest(ping)
        except CheckNotFoundError:
            return self.answer(request, 404, "not found")
        except StoreUnavailableError:
            return self.answer(request, 503, "store unavailable, try again")
        return self.answer(request, status, text)

    async def handle_slug(
        self,
        request: PingRequest,
        ping_key: str,
        slug: str,
        suffix: str | None,
    ) -> ASGIResponse:
        """A ping to the check of this slug in the project of this ping key."""
        try:
            ping = await self._parse(request, "", suffix)
        except BadPingError as exc:
            return self.answer(request, 400, str(exc))
        except LookupError:
            return self.answer(request, 404, "not found")
        except ClientException as exc:
            return self.answer(request, exc.status_code, "request body too large")
        if not SLUG_RE.fullmatch(slug):
            return self.answer(request, 400, "invalid url format")

        try:
            project = await self._project_of(ping_key)
            if project is None:
                return self.answer(request, 404, "not found")
            check_ids = await self._slug_checks(project, slug)
            created = False
            if not check_ids and request.query_params.get("create") == "1":
                check_ids, created = await self._create(project, slug)
        except TooManyNewChecksError:
            return self.answer(request, 429, TOO_MANY_NEW)
        except StoreError:
            return self.answer(request, 503, "store unavailable, try again")
        if not check_ids:
            return self.answer(request, 404, "not found")
        if len(check_ids) > 1:
            return self.answer(request, 409, "ambiguous slug")
        ping.check_id = check_ids[0]
        if created:
            return await self._record(request, ping, 201, "Created")
        return await self._record(request, ping, 200, "OK")

    async def _project_of(self, ping_key: str) -> str | None:
        # Projects and their ping keys never change: known ones are kept.
        project = self._ping_keys.get(ping_key)
        if project is None and self.store is not None and len(ping_key) <= 64:
            found = await self.store.project_by_ping_key(ping_key)
            if found is not None:
                project = self._ping_keys[ping_key] = found.id
        return project

    async def _slug_checks(self, project: str, slug: str) -> list[str]:
        return [check.id for check in await self.store.checks_by_slug(project, slug)]

    async def _add_linked_to_every_channel(self, check: Check) -> None:
        from serverlord.http.api_edit import linking_channels

        # The check and its links in one write.
        async def add() -> None:
            channels = await self.store.project_channels(check.project)
            await self.store.add_checks([check], [c.id for c in channels])

        await linking_channels(add)

    async def _create(self, project: str, slug: str) -> tuple[list[str], bool]:
        from serverlord.http.api_edit import new_check

        # Two pings racing to create the same check make one check.
        async with self._creating.hold((project, slug)):
            check_ids = await self._slug_checks(project, slug)
            if check_ids:
                return check_ids, False
            if self._new_checks.take(project):
                raise TooManyNewChecksError
            check = new_check(project)
            check.name = check.slug = slug
            await self._add_linked_to_every_channel(check)
            log.info(
                "created check %s for slug %s on its first ping",
                check.id,
                slug,
                extra={"action": "check_auto_created", "check_id": check.id},
            )
            return [check.id], True

    async def _parse(
        self,
        request: PingRequest,
        code: str,
        suffix: str | None,
    ) -> Ping:
        kind, exit_status = kind_of(suffix)
        rid = _run_id(request.query_params.get("rid"))
        body = await self._read_body(request) if may_have_body(request.scope) else b""
        return Ping(
            check_id=code,
            # A ping counts from when it is whole: a slow upload that ends
            # after the deadline must not be dated before the flip it caused.
            received=clock.now(),
            kind=kind,
            method=request.method,
            exit_status=exit_status,
            remote_addr=self._remote_addr(request),
            user_agent=request.headers.get("user-agent", "")[:USER_AGENT_LIMIT],
            rid=rid,
            body=body,
        )

    async def _read_body(self, request: PingRequest) -> bytes:
        """The first ``body_limit`` bytes of the body; the rest is read (up to
        the cap, past which the route answers 413) and dropped as it comes,
        so a connection never holds more than one limit's worth."""
        kept = bytearray()
        async for chunk in request.stream():
            room = self.body_limit - len(kept)
            if room > 0:
                kept += chunk[:room]
        return bytes(kept)

    def _remote_addr(self, request: PingRequest) -> str:
        return client_address(request, self.trusted_proxy)


def client_address(request: PingRequest, trusted_proxy: bool) -> str:
    """The client's address: the socket's peer, or the proxy's word for it.

    The trusted proxy appends the address it saw to X-Forwarded-For (or sets
    the header to it): the last entry is its word. Entries before it were
    written by the client or by proxies nobody vouches for.
    """
    if trusted_proxy:
        forwarded = request.headers.getall("x-forwarded-for", [])
        last = forwarded[-1].split(",")[-1].strip() if forwarded else ""
        with contextlib.suppress(ValueError):
            return str(ipaddress.ip_address(last))
    client = request.client
    return "" if client is None else client.host


def may_have_body(scope: Any) -> bool:
    """Whether the request announces a body (HEAD never has one)."""
    # Most pings are bodiless GETs: skip reading a body nobody announced.
    if scope["method"] == "HEAD":
        return False
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (
            name == b"content-length" and value != b"0"
        ):
            return True
    return False


def _run_id(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    lowered = value.lower()
    if not UUID_RE.fullmatch(lowered):
        raise BadPingError("invalid uuid format")
    return lowered


def ping_routes(service: PingService, body_cap: int) -> list[HTTPRouteHandler]:
    """The route handlers of the ping API, bound to one ping service."""

    async def ping(
        request: Request[Any, Any, Any], code: FromPath[str]
    ) -> ASGIResponse:
        return await service.respond(request, code, None, None)

    async def ping_suffix(
        request: Request[Any, Any, Any], code: FromPath[str], suffix: FromPath[str]
    ) -> ASGIResponse:
        return await service.respond(request, code, None, suffix)

    async def ping_slug(
        request: Request[Any, Any, Any],
        code: FromPath[str],
        slug: FromPath[str],
        suffix: FromPath[str],
    ) -> ASGIResponse:
        return await service.respond(request, code, slug, suffix)

    options: dict[str, Any] = {
        "http_method": ["GET", "POST", "HEAD"],
        "request_max_body_size": body_cap,
        "include_in_schema": False,
    }
    return [
        route("/ping/{code:str}", **options)(ping),
        route("/ping/{code:str}/{suffix:str}", **options)(ping_suffix),
        route("/ping/{code:str}/{slug:str}/{suffix:str}", **options)(ping_slug),
    ]
