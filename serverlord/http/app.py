"""The Litestar application: routes plus the objects they share."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.exceptions import HTTPException, NotFoundException

from serverlord import __version__
from serverlord.http.ping import PingService, ping_routes


@get("/api/health", include_in_schema=False)
async def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


def _not_found(
    request: Request[Any, Any, Any], exc: NotFoundException
) -> Response[str]:
    return Response("not found", status_code=404, media_type="text/plain")


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[str]:
    # Plain text on the ping URLs; everything else keeps a JSON shape.
    if request.url.path.startswith("/ping/"):
        return Response(
            exc.detail, status_code=exc.status_code, media_type="text/plain"
        )
    return Response(
        {"error": exc.detail},  # type: ignore[arg-type]
        status_code=exc.status_code,
        headers=exc.headers,
    )


def create_app(ping_service: PingService, body_cap: int) -> Litestar:
    return Litestar(
        route_handlers=[*ping_routes(ping_service, body_cap), health],
        exception_handlers={
            NotFoundException: _not_found,
            HTTPException: _http_error,
        },
        openapi_config=None,
        # serverlord configures logging itself (see cli.run_serve).
        logging_config=None,
        debug=False,
    )
