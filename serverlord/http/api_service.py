"""Who is asking the management API, and the checks they may see.

An API key (``X-Api-Key``, or ``api_key`` in a POST's JSON body) names one
project; a check of another project is not found, as if it did not exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import msgspec
from litestar import Request

from serverlord import clock
from serverlord.accounts import (
    KEY_ID_LENGTH,
    KEY_LENGTH,
    ApiKey,
    Project,
    digest,
    key_matches,
    unique_key,
)
from serverlord.checks import Check
from serverlord.events import EventHub
from serverlord.http.api_render import (
    check_out,
)
from serverlord.http.api_schema import (
    BadInput,
    CheckOut,
    CheckSpec,
    parse_spec,
)
from serverlord.http.limits import RateLimiter
from serverlord.http.ping import client_address

KEEP_ALIVE = 15.0
"""Seconds between keep-alive comments on an idle event stream."""

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
UNIQUE_KEY_RE = re.compile(r"[0-9a-f]{40}")


class ApiError(Exception):
    """An answer other than success: its status and the text of its error."""

    def __init__(
        self,
        status: int,
        text: str,
        *,
        plain: bool = False,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.plain = plain
        self.retry_after = retry_after


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
    trusted_proxy: bool = False
    """Whether the client address comes from X-Forwarded-For."""
    keep_alive: float = field(default_factory=lambda: KEEP_ALIVE)
    stopping: Callable[[], bool] = lambda: False
    _projects: dict[str, Project] = field(default_factory=dict)
    _limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self._limiter = RateLimiter(self.rate_limit / 60, self.rate_limit)

    async def authorize(
        self, request: Request[Any, Any, Any], document: dict[str, Any], write: bool
    ) -> Access:
        # A request counts against its key once the key is proven, and only
        # then, so that guessed keys never use up a real key's requests; a
        # refused request counts against the client address, and an address
        # out of requests gets 429 for its refused keys alone: a stranger
        # sharing it (behind one proxy) cannot lock valid keys out.
        key = request.headers.get("x-api-key")
        if key is None:
            key = str(document.get("api_key", ""))
        if len(key) != KEY_LENGTH:
            self._refuse(request, "missing api key")
        stored: ApiKey | None = await self.store.get_api_key(key[:KEY_ID_LENGTH])
        if stored is None:
            digest(key)  # the same work as a found key, so timing tells nothing
            self._refuse(request, "wrong api key")
        assert stored is not None
        if not key_matches(key, stored) or (write and stored.read_only):
            self._refuse(request, "wrong api key")
        self._limit(self._limiter.take("key:" + stored.id))
        return Access(await self._project(stored.project), stored.read_only, stored.id)

    def _refuse(self, request: Request[Any, Any, Any], reason: str) -> NoReturn:
        address = "address:" + client_address(request, self.trusted_proxy)
        self._limit(self._limiter.take(address))
        raise ApiError(401, reason)

    def _limit(self, wait: float) -> None:
        if wait:
            retry = self._limiter.retry_after(wait)
            raise ApiError(429, "rate limit exceeded", retry_after=retry)

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
            clock.now(),
            read_only=access.read_only,
            channels=channels,
        )


async def read_document(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The POST body as a JSON object ({} when empty)."""
    body = await request.body()
    if not body:
        return {}
    try:
        document = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        # RecursionError: arrays or objects nested a thousand levels deep.
        raise ApiError(400, "could not parse request body") from exc
    if not isinstance(document, dict):
        raise ApiError(400, "json validation error: value is not an object")
    return document


def parse_check_spec(document: dict[str, Any]) -> CheckSpec:
    try:
        return parse_spec(document)
    except BadInput as exc:
        raise ApiError(400, str(exc)) from exc
