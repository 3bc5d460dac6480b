"""The server as the TUI reaches it: the management API, live events, /metrics.

Three errors tell the screens what went wrong: ``Unreachable`` (no answer,
try again later), ``WrongKey`` (the key was refused: trying again will not
help) and ``Refused`` (the server said no to one request, with its reason).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

log = logging.getLogger(__name__)

API = "/api/v3"
TIMEOUT = httpx.Timeout(10.0)
EVENTS_TIMEOUT = httpx.Timeout(10.0, read=45.0)
"""The server sends a keep-alive comment every 15 s: three missed mean gone."""


class ClientError(Exception):
    """Something kept a request from succeeding; the message says what."""


class Unreachable(ClientError):
    """The server did not answer (down, restarting, network trouble)."""


class WrongKey(ClientError):
    """The server refused the API key."""


class Refused(ClientError):
    """The server refused one request; the message is its reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{reason} (HTTP {status})")
        self.status = status
        self.reason = reason


class Client:
    """One server and API key; ``metrics_token`` for a protected /metrics."""

    def __init__(self, url: str, api_key: str, metrics_token: str = "") -> None:
        self.url = url.rstrip("/")
        self.metrics_token = metrics_token
        self._http = httpx.AsyncClient(
            base_url=self.url, headers={"X-Api-Key": api_key}, timeout=TIMEOUT
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def checks(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self._call("GET", "/checks/"))["checks"]
        return found

    async def check(self, key: str) -> dict[str, Any]:
        return await self._call("GET", f"/checks/{key}")

    async def pings(self, key: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (
            await self._call("GET", f"/checks/{key}/pings/")
        )["pings"]
        return found

    async def flips(self, key: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (
            await self._call("GET", f"/checks/{key}/flips/")
        )["flips"]
        return found

    async def notifications(self, key: str) -> list[dict[str, Any]]:
        """The latest attempts to deliver the check's alerts (read-write keys)."""
        found: list[dict[str, Any]] = (
            await self._call("GET", f"/checks/{key}/notifications/")
        )["notifications"]
        return found

    async def body(self, url: str) -> bytes:
        """A ping's body from its ``body_url``, which names this server."""
        response = await self._send("GET", url)
        return response.content

    async def create(self, fields: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/checks/", fields)

    async def update(self, key: str, fields: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", f"/checks/{key}", fields)

    async def delete(self, key: str) -> dict[str, Any]:
        return await self._call("DELETE", f"/checks/{key}")

    async def pause(self, key: str) -> dict[str, Any]:
        return await self._call("POST", f"/checks/{key}/pause")

    async def resume(self, key: str) -> dict[str, Any]:
        return await self._call("POST", f"/checks/{key}/resume")

    async def metrics(self) -> str | None:
        """``/metrics`` as text, None when it is off or asks for another token."""
        headers = {"X-Api-Key": ""}
        if self.metrics_token:
            headers["Authorization"] = f"Bearer {self.metrics_token}"
        try:
            response = await self._http.get("/metrics", headers=headers)
        except httpx.HTTPError as exc:
            raise Unreachable(_reason(exc)) from exc
        if response.status_code != 200:
            return None
        return response.text

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Live events as (kind, data); ("ready", {}) once the stream is open."""
        try:
            async with self._http.stream(
                "GET", f"{API}/events", timeout=EVENTS_TIMEOUT
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    _raise_for(response)
                kind = ""
                async for line in response.aiter_lines():
                    if line.startswith(":"):
                        yield "ready", {}
                    elif line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        try:
                            data = json.loads(line[5:])
                        except ValueError:
                            log.warning(
                                "an event that is not JSON: %.200s",
                                line,
                                extra={"action": "tui_bad_event"},
                            )
                            continue
                        yield kind, data
        except httpx.HTTPError as exc:
            raise Unreachable(_reason(exc)) from exc
        raise Unreachable("the server closed the event stream")

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        response = await self._send(method, f"{API}{path}", body)
        data: dict[str, Any] = response.json()
        return data

    async def _send(
        self, method: str, url: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, url, json=body)
        except httpx.HTTPError as exc:
            raise Unreachable(_reason(exc)) from exc
        if response.status_code >= 300:
            _raise_for(response)
        return response


def _raise_for(response: httpx.Response) -> None:
    try:
        reason = str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        reason = response.text.strip()[:200] or response.reason_phrase
    if response.status_code == 401:
        raise WrongKey(reason)
    if response.status_code in (502, 503, 504):
        raise Unreachable(f"{reason} (HTTP {response.status_code})")
    raise Refused(response.status_code, reason)


def _reason(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return text
