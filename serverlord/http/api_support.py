"""The Litestar side of the management API: its error answers and the
OpenAPI description of the bodies the handlers parse."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.openapi.spec import (
    OpenAPIMediaType,
    Operation,
    RequestBody,
    Schema,
)

from serverlord.http.api_schema import (
    CheckSpec,
    ErrorOut,
)
from serverlord.http.api_service import ApiError
from serverlord.http.headers import API_HEADERS
from serverlord.store.base import (
    ChannelNotFoundError,
    CheckNotFoundError,
    ConflictError,
    StoreError,
)

log = logging.getLogger(__name__)


def error_response(request: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    headers = API_HEADERS
    if exc.retry_after is not None:
        headers = {**API_HEADERS, "Retry-After": exc.retry_after}
    if exc.plain:
        return Response(
            exc.text, status_code=exc.status, media_type="text/plain", headers=headers
        )
    return Response(ErrorOut(exc.text), status_code=exc.status, headers=headers)


def store_error(request: Request[Any, Any, Any], exc: StoreError) -> Response[Any]:
    # What another request changed between this one's read and its write.
    if isinstance(exc, CheckNotFoundError):
        return error_response(request, ApiError(404, "not found"))
    if isinstance(exc, ChannelNotFoundError):
        text = f"invalid channel identifier: {exc}"
        return error_response(request, ApiError(400, text))
    if isinstance(exc, ConflictError):
        text = "the check changed meanwhile; try again"
        return error_response(request, ApiError(409, text))
    log.warning(
        "API request failed in the store: %s",
        exc,
        extra={"action": "api_store_error", "path": request.url.path},
    )
    return Response(
        ErrorOut("store unavailable, try again"),
        status_code=503,
        headers={**API_HEADERS, "Retry-After": "1"},
    )


class CheckSpecBody(Operation):
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
