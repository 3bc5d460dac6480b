"""The Litestar application: routes plus the objects they share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Litestar, Request, Response, get
from litestar.exceptions import HTTPException, NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from serverlord import __version__
from serverlord.config import Settings
from serverlord.http.api import API_PATH, api_router
from serverlord.http.api_service import ApiService
from serverlord.http.badges import BadgeService, badge_routes
from serverlord.http.headers import API_HEADERS, SECURITY_HEADERS
from serverlord.http.ping import PingService, ping_routes

if TYPE_CHECKING:
    from serverlord.server import Server


@get("/api/health", include_in_schema=False)
async def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


def _headers_for(path: str) -> dict[str, str] | None:
    """Pings get none; the API and per-project metrics are never cached."""
    if path.startswith("/ping/"):
        return None
    if path.startswith(("/api/", "/projects/")):
        return API_HEADERS
    return SECURITY_HEADERS


def _not_found(
    request: Request[Any, Any, Any], exc: NotFoundException
) -> Response[str]:
    headers = _headers_for(request.url.path)
    return Response(
        "not found", status_code=404, media_type="text/plain", headers=headers
    )


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[str]:
    # Plain text on the ping URLs; everything else keeps a JSON shape.
    if request.url.path.startswith("/ping/"):
        return Response(
            exc.detail, status_code=exc.status_code, media_type="text/plain"
        )
    return Response(
        {"error": exc.detail},  # type: ignore[arg-type]
        status_code=exc.status_code,
        headers={**(_headers_for(request.url.path) or {}), **(exc.headers or {})},
    )


def create_app(
    ping_service: PingService,
    body_cap: int,
    api: ApiService | None = None,
) -> Litestar:
    handlers: list[Any] = [*ping_routes(ping_service, body_cap), health]
    openapi = None
    if api is not None:
        handlers += [api_router(api), *badge_routes(BadgeService(api.store))]
        openapi = OpenAPIConfig(
            title="serverlord management API",
            version=__version__,
            description="Healthchecks.io's API v3, with serverlord's additions.",
            path=f"{API_PATH}/schema",
            render_plugins=[JsonRenderPlugin()],
            components=Components(
                security_schemes={
                    "api_key": SecurityScheme(
                        type="apiKey", name="X-Api-Key", security_scheme_in="header"
                    )
                }
            ),
        )
    return Litestar(
        route_handlers=handlers,
        exception_handlers={
            NotFoundException: _not_found,
            HTTPException: _http_error,
        },
        openapi_config=openapi,
        # Ping answers are ASGI responses built once, which these skip.
        response_headers=SECURITY_HEADERS,
        # serverlord configures logging itself (see cli.run_serve).
        logging_config=None,
        debug=False,
    )


def build_app(server: Server, settings: Settings) -> Litestar:
    """The whole HTTP side of a running server: pings, API, badges."""
    service = PingService(
        server.ingest,
        settings.ping_body_limit,
        settings.trusted_proxy,
        store=server.store,
        meter=server.telemetry.pings,
        rate_limit=settings.ping_rate_limit,
    )
    api = ApiService(
        store=server.store,
        base_url=settings.resolved_base_url,
        events=server.events,
        rate_limit=settings.api_rate_limit,
        trusted_proxy=settings.trusted_proxy,
    )
    app = create_app(service, settings.ping_body_cap, api)
    app.state.api = api
    app.state.pings = service
    return app


def with_fast_pings(app: Litestar) -> Any:
    """The ASGI application to serve: ``app`` behind the fast path of pings."""
    from serverlord.http.fast_ping import PingFastPath

    return PingFastPath(app, app.state.pings)
