"""The ping routes, compatible with Healthchecks.io's ping API.

``/ping/<uuid>[/start|/fail|/log|/<exit status>]`` by GET, POST or HEAD. The
answer comes only after the ping is committed to the store. Answers are plain
text, as cron wrappers and Healthchecks clients expect.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import time
from typing import Any

from litestar import Request, route
from litestar.exceptions import ClientException
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.response.base import ASGIResponse

from serverlord.pings import BadPingError, Ping, kind_of
from serverlord.store.base import CheckNotFoundError, StoreUnavailableError
from serverlord.telemetry.meters import PingMeter

log = logging.getLogger(__name__)

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
USER_AGENT_LIMIT = 200
NO_CACHE = "no-cache, no-store, must-revalidate, max-age=0"


class PingService:
    """What the ping routes need from the running server."""

    def __init__(
        self,
        ingest: Any,
        body_limit: int,
        trusted_proxy: bool,
        meter: PingMeter | None = None,
    ) -> None:
        self.ingest = ingest
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

    def answer(
        self, request: Request[Any, Any, Any], status: int, text: str
    ) -> ASGIResponse:
        # Answers hold no per-request state, so each one is built once and sent
        # again: building headers is a good part of a ping's cost.
        head = request.method == "HEAD"
        key = (status, text, head)
        answer = self._answers.get(key)
        if answer is None:
            headers = dict(self.headers)
            if status == 503:
                headers["Retry-After"] = "1"
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

    async def handle(
        self, request: Request[Any, Any, Any], code: str, suffix: str | None
    ) -> ASGIResponse:
        try:
            ping = await self._parse(request, code, suffix)
        except BadPingError as exc:
            return self.answer(request, 400, str(exc))
        except LookupError:
            return self.answer(request, 404, "not found")
        except ClientException as exc:
            return self.answer(request, exc.status_code, "request body too large")

        try:
            await self.ingest(ping)
        except CheckNotFoundError:
            return self.answer(request, 404, "not found")
        except StoreUnavailableError:
            return self.answer(request, 503, "store unavailable, try again")
        return self.answer(request, 200, "OK")

    async def _parse(
        self,
        request: Request[Any, Any, Any],
        code: str,
        suffix: str | None,
    ) -> Ping:
        if not UUID_RE.fullmatch(code):
            raise LookupError(code)
        kind, exit_status = kind_of(suffix)
        rid = _run_id(request.query_params.get("rid"))
        body = await request.body() if _may_have_body(request) else b""
        return Ping(
            check_id=code,
            # A ping counts from when it is whole: a slow upload that ends
            # after the deadline must not be dated before the flip it caused.
            received=time.time(),
            kind=kind,
            method=request.method,
            exit_status=exit_status,
            remote_addr=self._remote_addr(request),
            user_agent=request.headers.get("user-agent", "")[:USER_AGENT_LIMIT],
            rid=rid,
            body=body[: self.body_limit],
        )

    def _remote_addr(self, request: Request[Any, Any, Any]) -> str:
        if self.trusted_proxy:
            forwarded = request.headers.get("x-forwarded-for", "")
            first = forwarded.split(",")[0].strip()
            with contextlib.suppress(ValueError):
                return str(ipaddress.ip_address(first))
        client = request.client
        return "" if client is None else client.host


def _may_have_body(request: Request[Any, Any, Any]) -> bool:
    # Most pings are bodiless GETs: skip reading a body nobody announced.
    if request.method == "HEAD":
        return False
    for name, value in request.scope["headers"]:
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
    meter = service.meter

    async def ping(
        request: Request[Any, Any, Any], code: FromPath[str]
    ) -> ASGIResponse:
        return await service.handle(request, code, None)

    async def ping_suffix(
        request: Request[Any, Any, Any], code: FromPath[str], suffix: FromPath[str]
    ) -> ASGIResponse:
        return await service.handle(request, code, suffix)

    # Measured routes are other functions, chosen once here: without a meter
    # a ping costs nothing more, and with one no extra call level.
    async def measured_ping(
        request: Request[Any, Any, Any], code: FromPath[str]
    ) -> ASGIResponse:
        started = time.perf_counter()
        answer = await service.handle(request, code, None)
        meter.ping(None, answer.status_code, started)  # type: ignore[union-attr]
        return answer

    async def measured_ping_suffix(
        request: Request[Any, Any, Any], code: FromPath[str], suffix: FromPath[str]
    ) -> ASGIResponse:
        started = time.perf_counter()
        answer = await service.handle(request, code, suffix)
        meter.ping(suffix, answer.status_code, started)  # type: ignore[union-attr]
        return answer

    options: dict[str, Any] = {
        "http_method": ["GET", "POST", "HEAD"],
        "request_max_body_size": body_cap,
        "include_in_schema": False,
    }
    if meter is not None:
        ping, ping_suffix = measured_ping, measured_ping_suffix
    return [
        route("/ping/{code:str}", **options)(ping),
        route("/ping/{code:str}/{suffix:str}", **options)(ping_suffix),
    ]
