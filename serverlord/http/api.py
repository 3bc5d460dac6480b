"""The management API under ``/api/v3/``, compatible with Healthchecks.io's.

Every request names its project by an API key (``X-Api-Key``, or ``api_key``
in a POST's JSON body); every read and write stays inside that project, and a
check of another project is answered 404 as if it did not exist. Read-only keys
may list and get checks, flips and badges and follow live events, nothing else.
The routes live on their own router, so the ping path never pays for the rate
limiter or the body limit set here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, post, route
from litestar.handlers import HTTPRouteHandler
from litestar.middleware.rate_limit import RateLimitConfig, RateLimitMiddleware
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIMediaType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import FromPath, FromQuery
from litestar.response import ServerSentEvent, ServerSentEventMessage

from serverlord.accounts import (
    DEFAULT_PROJECT,
    KEY_ID_LENGTH,
    KEY_LENGTH,
    ApiKey,
    Project,
    digest,
    key_matches,
    unique_key,
)
from serverlord.checks import Check
from serverlord.events import Event, EventHub
from serverlord.http.api_edit import (
    apply_spec,
    find_unique,
    new_check,
    resolve_channels,
)
from serverlord.http.api_render import (
    channel_out,
    check_out,
    flip_out,
    iso_precise,
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
    PingList,
    parse_spec,
)
from serverlord.http.badges import badge_urls
from serverlord.store.base import (
    ChannelNotFoundError,
    CheckNotFoundError,
    ConflictError,
    StoreError,
)

log = logging.getLogger(__name__)

API_PATH = "/api/v3"
BODY_LIMIT = 100_000
"""Largest request body the API reads; larger ones get 413."""
PINGS_LISTED = 1000
FLIP_SECONDS_MAX = 31_536_000
TIMESTAMP_MAX = 10_000_000_000
"""Year 2286: later flip filters are refused, as Healthchecks does."""
KEEP_ALIVE = 15.0
"""Seconds between keep-alive comments on an idle event stream."""
STREAMS_PER_PROJECT = 32
"""Live event streams one project may hold open at once."""
UPDATE_TRIES = 3
"""Times an update is tried again when a ping changed the check meanwhile."""

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
UNIQUE_KEY_RE = re.compile(r"[0-9a-f]{40}")
CORS = {"Access-Control-Allow-Origin": "*"}


class ApiError(Exception):
    """An answer other than success: its status and the text of its error."""

    def __init__(self, status: int, text: str, *, plain: bool = False) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.plain = plain


@dataclass(slots=True, frozen=True)
class Access:
    project: Project
    read_only: bool
    key_id: str


@dataclass
class ApiService:
    """What the API routes need from the running server."""

    store: Any
    base_url: Callable[[], str]
    events: EventHub
    rate_limit: int = 600
    """Requests per minute and API key (or client address without a key)."""
    keep_alive: float = field(default_factory=lambda: KEEP_ALIVE)
    stopping: Callable[[], bool] = lambda: False
    _projects: dict[str, Project] = field(default_factory=dict)

    async def authorize(
        self, request: Request[Any, Any, Any], document: dict[str, Any], write: bool
    ) -> Access:
        key = request.headers.get("x-api-key")
        if key is None:
            key = str(document.get("api_key", ""))
        if len(key) != KEY_LENGTH:
            raise ApiError(401, "missing api key")
        stored: ApiKey | None = await self.store.get_api_key(key[:KEY_ID_LENGTH])
        if stored is None:
            digest(key)  # the same work as a found key, so timing tells nothing
            raise ApiError(401, "wrong api key")
        if not key_matches(key, stored) or (write and stored.read_only):
            raise ApiError(401, "wrong api key")
        return Access(await self._project(stored.project), stored.read_only, stored.id)

    async def _project(self, project_id: str) -> Project:
        # A project never changes once made (nor its keys' project): keep it.
        project = self._projects.get(project_id)
        if project is None:
            project = await self.store.get_project(project_id)
            assert project is not None, "an API key's project exists"
            self._projects[project_id] = project
        return project

    async def find_check(
        self, access: Access, code: str, *, by_unique_key: bool = False
    ) -> Check:
        check: Check | None = None
        if UUID_RE.fullmatch(code):
            check = await self.store.get_check(code)
        elif by_unique_key and UNIQUE_KEY_RE.fullmatch(code):
            for candidate in await self.store.project_checks(access.project.id):
                if unique_key(candidate.id) == code:
                    check = candidate
                    break
        if check is None or check.project != access.project.id:
            raise ApiError(404, "not found")
        return check

    async def render(self, check: Check, access: Access) -> CheckOut:
        channels = None
        if not access.read_only:
            channels = await self.store.check_channels(check.id)
        return check_out(
            check,
            self.base_url(),
            time.time(),
            read_only=access.read_only,
            channels=channels,
        )


async def read_document(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The POST body as a JSON object ({} when empty)."""
    body = await request.body()
    if not body.strip():
        return {}
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise ApiError(400, "could not parse request body") from exc
    if not isinstance(document, dict):
        raise ApiError(400, "json validation error: value is not an object")
    return document


def _spec(document: dict[str, Any]) -> CheckSpec:
    try:
        return parse_spec(document)
    except BadInput as exc:
        raise ApiError(400, str(exc)) from exc


def _error_response(request: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    if exc.plain:
        return Response(exc.text, status_code=exc.status, media_type="text/plain")
    return Response(ErrorOut(exc.text), status_code=exc.status)


def _store_error(request: Request[Any, Any, Any], exc: StoreError) -> Response[Any]:
    # What another request changed between this one's read and its write.
    if isinstance(exc, CheckNotFoundError):
        return _error_response(request, ApiError(404, "not found"))
    if isinstance(exc, ChannelNotFoundError):
        text = f"invalid channel identifier: {exc}"
        return _error_response(request, ApiError(400, text))
    if isinstance(exc, ConflictError):
        text = "the check changed meanwhile; try again"
        return _error_response(request, ApiError(409, text))
    log.warning(
        "API request failed in the store: %s",
        exc,
        extra={"action": "api_store_error", "path": request.url.path},
    )
    return Response(
        ErrorOut("store unavailable, try again"),
        status_code=503,
        headers={"Retry-After": "1"},
    )


class _RateLimit(RateLimitMiddleware):
    """Litestar's rate limiter, with the Retry-After that clients look for."""

    def create_response_headers(self, cache_object: Any) -> dict[str, str]:
        headers = super().create_response_headers(cache_object)
        if headers[self.config.rate_limit_remaining_header_key] == "0":
            headers["Retry-After"] = str(max(1, cache_object.reset - int(time.time())))
        return headers


def _rate_limit_identity(request: Request[Any, Any, Any]) -> str:
    key = request.headers.get("x-api-key", "")
    if len(key) == KEY_LENGTH:
        return "key:" + key[:KEY_ID_LENGTH]
    client = request.client
    return "address:" + ("" if client is None else client.host)


class _CheckSpecBody(Operation):
    """The create and update operations read a CheckSpec from JSON.

    The handlers parse the body themselves (so that a bad key is answered
    before a bad body, with Healthchecks' texts); this documents it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        schema = msgspec.json.schema(CheckSpec)
        body = schema["$defs"]["CheckSpec"]
        self.request_body = RequestBody(
            content={"application/json": OpenAPIMediaType(schema=_plain(body))},
            required=False,
        )


def _plain(schema: dict[str, Any]) -> Schema:
    """Litestar's Schema objects from msgspec's JSON schema of a flat struct."""
    properties = {name: _schema(prop) for name, prop in schema["properties"].items()}
    return _schema({"type": "object", "properties": properties})


_RENAMES = {"maxLength": "max_length", "anyOf": "one_of"}
_KEPT = {
    "type", "properties", "items", "one_of", "enum", "minimum", "maximum",
    "max_length", "pattern", "description",
}  # fmt: skip


def _schema(prop: dict[str, Any]) -> Schema:
    fields: dict[str, Any] = {}
    for key, value in prop.items():
        name = _RENAMES.get(key, key)
        if name == "items":
            value = _schema(value)
        elif name == "one_of":
            value = [_schema(item) for item in value]
        if name in _KEPT:
            fields[name] = value
    make: Any = Schema
    schema: Schema = make(**fields)
    return schema


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

    @get("/checks/", status_code=200, summary="List checks", **common)
    async def list_checks(request: Request[Any, Any, Any]) -> CheckList:
        access = await service.authorize(request, {}, write=False)
        tags = set(request.query_params.getall("tag", []))
        slug = request.query_params.get("slug")
        checks = await store.project_checks(access.project.id)
        links: dict[str, list[str]] = {}
        if not access.read_only:
            links = await store.project_links(access.project.id)
        base, now = service.base_url(), time.time()
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
        operation_class=_CheckSpecBody,
        responses={
            **errors,
            200: ResponseSpec(CheckOut, description="the check `unique` found"),
        },
        security=common["security"],
    )
    async def create_check(request: Request[Any, Any, Any]) -> Response[CheckOut]:
        document = await read_document(request)
        access = await service.authorize(request, document, write=True)
        spec = _spec(document)
        project = access.project.id
        linked = await _channels_of(spec, project)

        existing = find_unique(await store.project_checks(project), spec)
        if existing is not None:
            check = await _update(existing, spec, linked)
            return Response(await service.render(check, access), status_code=200)

        check = new_check(project)
        _apply(check, spec)
        await store.add_check(check)
        if linked is not None:
            await store.set_check_channels(check.id, linked)
        return Response(await service.render(check, access), status_code=201)

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
                await store.update_check(check)
                break
            except ConflictError:
                # A ping or a sweep changed the check since it was read.
                reread = await store.get_check(check.id)
                if reread is None:
                    raise ApiError(404, "not found") from None
                check = reread
        else:
            raise ApiError(409, "the check is changing too fast; try again")
        if linked is not None:
            await store.set_check_channels(check.id, linked)
        return check

    def _apply(check: Check, spec: CheckSpec) -> None:
        try:
            apply_spec(check, spec, time.time())
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
        operation_class=_CheckSpecBody,
        **common,
    )
    async def update_check(
        request: Request[Any, Any, Any], code: FromPath[str]
    ) -> CheckOut:
        document = await read_document(request)
        access = await service.authorize(request, document, write=True)
        check = await service.find_check(access, code)
        spec = _spec(document)
        linked = await _channels_of(spec, access.project.id)
        return await service.render(await _update(check, spec, linked), access)

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
        paused = await store.pause_check(check.id, time.time())
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
            resumed = await store.resume_check(check.id, time.time())
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
            since = max(since, time.time() - recent)
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
        return ServerSentEvent(_stream(service, subscriber, access))

    def preflight(path: str, methods: str) -> HTTPRouteHandler:
        # Litestar's own OPTIONS answer lists one handler's methods only when
        # several share a path; browsers need them all, and the API key header.
        async def answer() -> Response[None]:
            allowed = f"{methods}, OPTIONS"
            headers = {
                "Allow": allowed,
                "Access-Control-Allow-Methods": allowed,
                "Access-Control-Allow-Headers": "X-Api-Key, Content-Type",
                "Access-Control-Max-Age": "600",
            }
            return Response(None, status_code=204, headers=headers)

        return route(path, http_method="OPTIONS", include_in_schema=False)(answer)

    limiter = RateLimitConfig(
        rate_limit=("minute", service.rate_limit),
        identifier_for_request=_rate_limit_identity,
        middleware_class=_RateLimit,
    )
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
            flips,
            channels,
            badges,
            status,
            events,
        ],
        middleware=[limiter.middleware],
        request_max_body_size=BODY_LIMIT,
        exception_handlers={ApiError: _error_response, StoreError: _store_error},
        response_headers=CORS,
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


async def _stream(
    service: ApiService, subscriber: Any, access: Access
) -> AsyncIterator[ServerSentEventMessage]:
    hub = service.events
    try:
        yield ServerSentEventMessage(comment="serverlord live events", data=None)
        idle = 0.0
        while not service.stopping():
            try:
                event = await asyncio.wait_for(subscriber.queue.get(), 0.5)
            except TimeoutError:
                idle += 0.5
                if idle >= service.keep_alive:
                    idle = 0.0
                    yield ServerSentEventMessage(comment="keep-alive", data=None)
                continue
            if event is None:
                return
            idle = 0.0
            rendered = _render_event(service, event, access)
            if rendered is not None:
                yield ServerSentEventMessage(event=rendered[0], data=rendered[1])
    finally:
        hub.unsubscribe(subscriber)


def _render_event(
    service: ApiService, event: Event, access: Access
) -> tuple[str, str] | None:
    ref: dict[str, Any]
    if access.read_only:
        ref = {"unique_key": unique_key(event.check_id)}
    else:
        ref = {"uuid": event.check_id}
    if event.kind == "ping" and event.ping is not None:
        ping = event.ping
        data = {
            **ref,
            "type": ping.kind,
            "date": iso_precise(ping.received),
            "n": ping.n,
            "exitstatus": ping.exit_status,
            "duration": ping.duration,
        }
    elif event.kind == "flip" and event.flip is not None:
        data = {**ref, **msgspec.to_builtins(flip_out(event.flip))}
    elif event.kind == "check" and event.check is not None:
        shown = check_out(
            event.check,
            service.base_url(),
            time.time(),
            read_only=access.read_only,
            channels=event.channels,
        )
        data = msgspec.to_builtins(shown)
    elif event.kind == "check_deleted":
        data = ref
    else:
        return None
    return event.kind, json.dumps(data)
