"""The management API under ``/api/v3/``, compatible with Healthchecks.io's.

Every request names its project by an API key (``X-Api-Key``, or ``api_key``
in a POST's JSON body); every read and write stays inside that project, and a
check of another project is answered 404 as if it did not exist. Read-only keys
may list and get checks, flips and badges and follow live events, nothing else.
The routes live on their own router, so the ping path never pays for the
body limit or the headers set here; the rate limit is counted where the key
is checked (``ApiService.authorize``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, post, route
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery
from litestar.response import ServerSentEvent

from serverlord import clock
from serverlord.accounts import (
    DEFAULT_PROJECT,
)
from serverlord.checks import Check
from serverlord.http.api_edit import (
    apply_spec,
    find_unique,
    linking_channels,
    new_check,
    resolve_channels,
)
from serverlord.http.api_events import event_stream
from serverlord.http.api_render import (
    channel_out,
    check_out,
    flip_out,
    ping_out,
)
from serverlord.http.api_schema import (
    BadgeList,
    BadInput,
    ChannelList,
    CheckList,
    CheckOut,
    CheckSpec,
    ErrorOut,
    FlipList,
    NotificationList,
    NotificationOut,
    PingList,
)
from serverlord.http.api_service import (
    ApiError,
    ApiService,
    parse_check_spec,
    read_document,
)
from serverlord.http.api_support import (
    CheckSpecBody,
    error_response,
    store_error,
)
from serverlord.http.badges import badge_urls
from serverlord.http.headers import API_HEADERS
from serverlord.keyed_lock import KeyedLock
from serverlord.render import attempt_json
from serverlord.store.base import (
    ConflictError,
    StoreError,
)

API_PATH = "/api/v3"
BODY_LIMIT = 100_000
"""Largest request body the API reads; larger ones get 413."""
PINGS_LISTED = 1000
NOTIFICATIONS_LISTED = 100
FLIP_SECONDS_MAX = 31_536_000
TIMESTAMP_MAX = 10_000_000_000
"""Year 2286: later flip filters are refused, as Healthchecks does."""
STREAMS_PER_PROJECT = 32
"""Live event streams one project may hold open at once."""
UPDATE_TRIES = 20
"""Times an update is tried again when a ping changed the check meanwhile."""


def api_router(service: ApiService) -> Router:
    errors = {
        status: ResponseSpec(ErrorOut, description=text)
        for status, text in (
            (400, "bad input: `json validation error: ...` and others"),
            (401, "`missing api key` or `wrong api key`"),
            (404, "no such check in the key's project"),
            (413, "request body too large"),
            (429, "too many requests for this key; see Retry-After"),
            (503, "the store cannot answer now; see Retry-After"),
        )
    }
    common: dict[str, Any] = {
        "responses": errors,
        "security": [{"api_key": []}],
    }
    store = service.store
    creating = KeyedLock()

    @get("/checks/", status_code=200, summary="List checks", **common)
    async def list_checks(request: Request[Any, Any, Any]) -> CheckList:
        access = await service.authorize(request, {}, write=False)
        tags = set(request.query_params.getall("tag", []))
        slug = request.query_params.get("slug")
        checks = await store.project_checks(access.project.id)
        links: dict[str, list[str]] = {}
        if not access.read_only:
            links = await store.project_links(access.project.id)
        base, now = service.base_url(), clock.now()
        return CheckList(
            [
                check_out(
                    check,
                    base,
                    now,
                    read_only=access.read_only,
                    channels=links.get(check.id, []),
                )
                for check in checks
                if tags <= set(check.tag_list()) and (not slug or check.slug == slug)
            ]
        )

    @post(
        "/checks/",
        summary="Create a check, or update the one `unique` finds",
        operation_class=CheckSpecBody,
        responses={
            **errors,
            200: ResponseSpec(CheckOut, description="the check `unique` found"),
        },
        security=common["security"],
    )
    async def create_check(request: Request[Any, Any, Any]) -> Response[CheckOut]:
        document = await read_document(request)
        access = await service.authorize(request, document, write=True)
        spec = parse_check_spec(document)
        project = access.project.id

        if not spec.unique:
            check = await _linking(
                spec, project, lambda linked: _create(project, spec, linked)
            )
            return Response(await service.render(check, access), status_code=201)
        # Requests racing with one `unique` find or make one check (within
        # this process: workers of one PostgreSQL may still make two).
        async with creating.hold(project):
            existing = find_unique(await store.project_checks(project), spec)
            if existing is not None:
                check = await _linking(
                    spec, project, lambda linked: _update(existing, spec, linked)
                )
                return Response(await service.render(check, access), status_code=200)
            check = await _linking(
                spec, project, lambda linked: _create(project, spec, linked)
            )
        return Response(await service.render(check, access), status_code=201)

    async def _linking(
        spec: CheckSpec,
        project: str,
        write: Callable[[list[str] | None], Awaitable[Check]],
    ) -> Check:
        """Resolve the spec's channels and write with them ("*" means those
        there at the write)."""

        async def resolve_and_write() -> Check:
            return await write(await _channels_of(spec, project))

        return await linking_channels(
            resolve_and_write, read_again=spec.channels == "*"
        )

    async def _create(project: str, spec: CheckSpec, linked: list[str] | None) -> Check:
        check = new_check(project)
        _apply(check, spec)
        # With its links, in one write: a channel removed meanwhile by another
        # process refuses the request and leaves no check behind.
        await store.add_checks([check], linked or [])
        return check

    async def _channels_of(spec: CheckSpec, project: str) -> list[str] | None:
        if spec.channels is msgspec.UNSET:
            return None
        try:
            known = await store.project_channels(project)
            return resolve_channels(spec.channels, known)
        except BadInput as exc:
            raise ApiError(400, str(exc)) from exc

    async def _update(check: Check, spec: CheckSpec, linked: list[str] | None) -> Check:
        for _ in range(UPDATE_TRIES):
            _apply(check, spec)
            try:
                # With its links, in one write: a channel removed meanwhile
                # by another process refuses the request and changes nothing.
                await store.update_check(check, linked)
                break
            except ConflictError:
                # A ping or a sweep changed the check since it was read.
                reread = await store.get_check(check.id)
                if reread is None:
                    raise ApiError(404, "not found") from None
                check = reread
        else:
            raise ApiError(409, "the check is changing too fast; try again")
        return check

    def _apply(check: Check, spec: CheckSpec) -> None:
        try:
            apply_spec(check, spec, clock.now())
        except BadInput as exc:
            raise ApiError(400, str(exc)) from exc

    @get("/checks/{code:str}", status_code=200, summary="Get a check", **common)
    async def get_check(
        request: Request[Any, Any, Any], code: FromPath[str]
    ) -> CheckOut:
        access = await service.authorize(request, {}, write=False)
        check = await service.find_check(access, code, by_unique_key=True)
        return await service.render(check, access)

    @post(
        "/checks/{code:str}",
        status_code=200,
        summary="Update a check",
        operation_class=CheckSpecBody,
        **common,
    )
    async def update_check(
        request: Request[Any, Any, Any], code: FromPath[str]
    ) -> CheckOut:
        document = await read_document(request)
        access = await service.authorize(request, document, write=True)
        check = await service.find_check(access, code)
        spec = parse_check_spec(document)
        updated = await _linking(
            spec, access.project.id, lambda linked: _update(check, spec, linked)
        )
        return await service.render(updated, access)

    @delete("/checks/{code:str}", status_code=200, summary="Remove a check", **common)
    async def delete_check(
        request: Request[Any, Any, Any], code: FromPath[str]
    ) -> CheckOut:
        access = await service.authorize(request, {}, write=True)
        check = await service.find_check(access, code)
        shown = await service.render(check, access)
        await store.delete_check(check.id)
        return shown

    @post("/checks/{code:str}/pause", status_code=200, summary="Pause", **common)
    async def pause(request: Request[Any, Any, Any], code: FromPath[str]) -> CheckOut:
        access = await service.authorize(request, await read_document(request), True)
        check = await service.find_check(access, code)
        paused = await store.pause_check(check.id, clock.now())
        return await service.render(paused, access)

    @post(
        "/checks/{code:str}/resume",
        status_code=200,
        summary="Resume a paused check",
        responses={
            **errors,
            409: ResponseSpec(
                str, description="check is not paused", media_type="text/plain"
            ),
        },
        security=common["security"],
    )
    async def resume(request: Request[Any, Any, Any], code: FromPath[str]) -> CheckOut:
        access = await service.authorize(request, await read_document(request), True)
        check = await service.find_check(access, code)
        try:
            resumed = await store.resume_check(check.id, clock.now())
        except ConflictError as exc:
            raise ApiError(409, "check is not paused", plain=True) from exc
        return await service.render(resumed, access)

    @get(
        "/checks/{code:str}/pings/",
        status_code=200,
        summary=f"The check's last {PINGS_LISTED} pings, newest first",
        **common,
    )
    async def pings(request: Request[Any, Any, Any], code: FromPath[str]) -> PingList:
        access = await service.authorize(request, {}, write=True)
        check = await service.find_check(access, code)
        api = f"{service.base_url()}{API_PATH}/checks/{check.id}/pings"
        return PingList(
            [
                ping_out(ping, size, f"{api}/{ping.n}/body")
                for ping, size in await store.ping_log(check.id, PINGS_LISTED)
            ]
        )

    @get(
        "/checks/{code:str}/notifications/",
        status_code=200,
        summary=f"The last {NOTIFICATIONS_LISTED} attempts to deliver the "
        "check's alerts, newest first (serverlord's own)",
        **common,
    )
    async def notifications(
        request: Request[Any, Any, Any], code: FromPath[str]
    ) -> NotificationList:
        access = await service.authorize(request, {}, write=True)
        check = await service.find_check(access, code)
        attempts = await store.recent_attempts(check.id, NOTIFICATIONS_LISTED)
        return NotificationList(
            [NotificationOut(**attempt_json(attempt)) for attempt in attempts]
        )

    @get(
        "/checks/{code:str}/pings/{n:str}/body",
        status_code=200,
        summary="A ping's body, as it came",
        media_type="text/plain",
        **common,
    )
    async def ping_body(
        request: Request[Any, Any, Any], code: FromPath[str], n: FromPath[str]
    ) -> bytes:
        access = await service.authorize(request, {}, write=True)
        check = await service.find_check(access, code)
        body = None
        if n.isascii() and n.isdigit() and len(n) < 19:
            body = await store.ping_body(check.id, int(n))
        if not body:
            raise ApiError(404, "not found")
        return bytes(body)

    @get(
        "/checks/{code:str}/flips/",
        status_code=200,
        summary="The check's status changes, newest first",
        **common,
    )
    async def flips(
        request: Request[Any, Any, Any],
        code: FromPath[str],
        seconds: FromQuery[str | None] = None,
        start: FromQuery[str | None] = None,
        end: FromQuery[str | None] = None,
    ) -> FlipList:
        access = await service.authorize(request, {}, write=False)
        check = await service.find_check(access, code, by_unique_key=True)
        since: float = _whole("start", start, TIMESTAMP_MAX) or 0
        until: float = _whole("end", end, TIMESTAMP_MAX) or float("inf")
        recent = _whole("seconds", seconds, FLIP_SECONDS_MAX)
        if recent:
            since = max(since, clock.now() - recent)
        found = await store.flips_between(check.id, since, until)
        return FlipList([flip_out(flip) for flip in found])

    @get("/channels/", status_code=200, summary="List channels", **common)
    async def channels(request: Request[Any, Any, Any]) -> ChannelList:
        access = await service.authorize(request, {}, write=True)
        found = await store.project_channels(access.project.id)
        return ChannelList([channel_out(channel) for channel in found])

    @get("/badges/", status_code=200, summary="Badge URLs per tag", **common)
    async def badges(request: Request[Any, Any, Any]) -> BadgeList:
        access = await service.authorize(request, {}, write=False)
        checks = await store.project_checks(access.project.id)
        tags = {"*"} | {tag for check in checks for tag in check.tag_list()}
        base = service.base_url()
        return BadgeList(
            {tag: badge_urls(base, access.project, tag) for tag in sorted(tags)}
        )

    @get(
        "/status/",
        status_code=200,
        summary="Store connectivity",
        media_type="text/plain",
    )
    async def status() -> str:
        await store.get_project(DEFAULT_PROJECT)
        return "OK"

    @get(
        "/events",
        status_code=200,
        summary="Live events of the key's project (server-sent events)",
        media_type="text/event-stream",
        **common,
    )
    async def events(request: Request[Any, Any, Any]) -> ServerSentEvent:
        access = await service.authorize(request, {}, write=False)
        if service.events.followers(access.project.id) >= STREAMS_PER_PROJECT:
            raise ApiError(429, "too many live event streams for this project")
        subscriber = await service.events.subscribe(access.project.id, access.read_only)
        return ServerSentEvent(event_stream(service, subscriber, access))

    def preflight(path: str, methods: str) -> HTTPRouteHandler:
        # Litestar's own OPTIONS answer lists one handler's methods only when
        # several share a path. No Access-Control-* headers: only the ping
        # URLs are open to other origins, never a project's data.
        async def answer() -> Response[None]:
            headers = {"Allow": f"{methods}, OPTIONS"}
            return Response(None, status_code=204, headers=headers)

        return route(path, http_method="OPTIONS", include_in_schema=False)(answer)

    return Router(
        API_PATH,
        route_handlers=[
            # First, so that Litestar adds no OPTIONS handler of its own.
            preflight("/checks/", "GET, POST"),
            preflight("/checks/{code:str}", "GET, POST, DELETE"),
            list_checks,
            create_check,
            get_check,
            update_check,
            delete_check,
            pause,
            resume,
            pings,
            ping_body,
            notifications,
            flips,
            channels,
            badges,
            status,
            events,
        ],
        request_max_body_size=BODY_LIMIT,
        exception_handlers={ApiError: error_response, StoreError: store_error},
        response_headers=API_HEADERS,
    )


def _whole(name: str, text: str | None, high: int) -> int | None:
    if text is None or text == "":
        return None
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        raise ApiError(400, f"{name}: must be a whole number from 0 to {high}")
    number = int(value)
    if number > high:
        raise ApiError(400, f"{name}: must be a whole number from 0 to {high}")
    return number
