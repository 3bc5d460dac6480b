"""The management API of a running server (``--url``), as the bench uses it.

A server out of reach is a command error that says so, not a traceback; a
rate-limited request waits as long as the server's Retry-After asks and is sent
again, so that a server run with its default limits can be loaded too (it is
slower: 600 requests a minute per key by default).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from serverlord.errors import CommandError

TRIES = 100
"""Times one request is sent while the server answers 429."""
LONGEST_WAIT = 60.0


@contextlib.asynccontextmanager
async def api_client(url: str, key: str, connections: int = 8) -> AsyncIterator[Any]:
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(
        base_url=url, headers={"X-Api-Key": key}, limits=limits, timeout=30
    ) as client:
        yield client


async def call(
    client: httpx.AsyncClient, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    """One request; its answer once it is not 429 (or after TRIES of them)."""
    for _ in range(TRIES):
        try:
            answer = await client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CommandError(f"cannot reach {client.base_url}: {exc}") from exc
        if answer.status_code != 429:
            break
        await asyncio.sleep(_retry_after(answer))
    return answer


def _retry_after(answer: httpx.Response) -> float:
    try:
        wait = float(answer.headers.get("retry-after", "1"))
    except ValueError:
        wait = 1.0
    return min(max(wait, 0.1), LONGEST_WAIT)
