"""The HTTP routes of the metrics: ``/metrics`` and per-project check metrics."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from serverlord.accounts import KEY_LENGTH
from serverlord.telemetry.exposition import CONTENT_TYPE
from serverlord.telemetry.projects import (
    KeyLookup,
    ProjectChecks,
    may_read,
    render_checks,
)

if TYPE_CHECKING:
    from serverlord.telemetry.otel import OtelTelemetry

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


NO_STORE = {"Cache-Control": "no-store"}
"""A project's check metrics are its private data (with its key in the URL)."""


def _text(
    body: str, status: int, headers: dict[str, str] | None = None
) -> Response[str]:
    return Response(body, status_code=status, media_type="text/plain", headers=headers)


_REALM = 'Bearer realm="serverlord metrics"'


def metrics_route(telemetry: OtelTelemetry) -> HTTPRouteHandler:
    """``GET /metrics``: serverlord's own metrics, bearer token where set."""

    @get("/metrics", include_in_schema=False)
    async def metrics(request: Request[Any, Any, Any]) -> Response[Any]:
        header = request.headers.get("authorization")
        if not telemetry.authorized(header):
            if header is None:
                return _text(
                    "a bearer token is needed", 401, {"WWW-Authenticate": _REALM}
                )
            challenge = f'{_REALM}, error="invalid_token"'
            return _text("wrong bearer token", 401, {"WWW-Authenticate": challenge})
        return Response(await telemetry.exposition(), media_type=CONTENT_TYPE)

    return metrics


def project_metrics_routes(
    lookup: KeyLookup, checks: ProjectChecks
) -> list[HTTPRouteHandler]:
    """The per-project check metrics (see ``telemetry.projects``)."""

    async def answer(project: str, key: str | None) -> Response[Any]:
        if not _UUID.fullmatch(project):
            return _text("not found", 404)
        if key is None:
            return _text(
                "a read-only API key is needed",
                401,
                {"WWW-Authenticate": 'Bearer realm="serverlord project metrics"'},
            )
        if len(key) != KEY_LENGTH:
            return _text("an API key has 32 characters", 400)
        if not may_read(await lookup(key), project):
            return _text("this is not a read-only API key of this project", 403)
        text = render_checks(await checks(project), time.time())
        return Response(text.encode(), media_type=CONTENT_TYPE)

    @get(
        "/projects/{project:str}/metrics/{key:str}",
        include_in_schema=False,
        response_headers=NO_STORE,
    )
    async def with_key(project: FromPath[str], key: FromPath[str]) -> Response[Any]:
        return await answer(project, key)

    @get(
        "/projects/{project:str}/metrics",
        include_in_schema=False,
        response_headers=NO_STORE,
    )
    async def with_header(
        request: Request[Any, Any, Any], project: FromPath[str]
    ) -> Response[Any]:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        given = key.strip() if scheme.lower() == "bearer" else None
        return await answer(project, given)

    return [with_key, with_header]
