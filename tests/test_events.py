"""Live events (server-sent events) of a project, through a live server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from serverlord.accounts import unique_key
from serverlord.http import api, api_service
from tests.conftest import Live
from tests.tenants import Tenant

EVENTS = "/api/v3/events"


@pytest.fixture(autouse=True)
def quick_keep_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_service, "KEEP_ALIVE", 0.5)


class Stream:
    """What one SSE client read: events and comments, in order."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.comments: list[str] = []

    async def next(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next event of this kind (others before it are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                name, data = await self.events.get()
                if name == kind:
                    return data


@asynccontextmanager
async def follow(live: Live, headers: dict[str, str]) -> AsyncIterator[Stream]:
    stream = Stream()
    ready = asyncio.Event()

    async def read() -> None:
        async with live.client.stream("GET", EVENTS, headers=headers) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            name = ""
            async for line in resp.aiter_lines():
                if line.startswith(":"):
                    stream.comments.append(line[1:].strip())
                    ready.set()
                elif line.startswith("event:"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    stream.events.put_nowait((name, json.loads(line[5:])))

    task = asyncio.create_task(read())
    await asyncio.wait_for(ready.wait(), 5)
    try:
        yield stream
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def create(live: Live, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    resp = await live.client.post("/api/v3/checks/", json=fields, headers=tenant.rw)
    assert resp.status_code == 201
    data: dict[str, Any] = resp.json()
    return data


async def test_events_need_a_key(live: Live) -> None:
    resp = await live.client.get(EVENTS)

    assert resp.status_code == 401
    assert resp.json() == {"error": "missing api key"}


async def test_pings_and_flips_of_the_project_stream_live(
    live: Live, alice: Tenant
) -> None:
    check = await create(live, alice, name="a")

    async with follow(live, alice.rw) as stream:
        await live.client.get(f"/ping/{check['uuid']}/fail")
        ping = await stream.next("ping")
        flip = await stream.next("flip")

    assert (ping["uuid"], ping["type"], ping["n"]) == (check["uuid"], "fail", 1)
    assert (flip["uuid"], flip["up"], flip["new_status"]) == (check["uuid"], 0, "down")


async def test_check_edits_stream_as_check_events(live: Live, alice: Tenant) -> None:
    async with follow(live, alice.rw) as stream:
        check = await create(live, alice, name="a")
        created = await stream.next("check")
        await live.client.post(check["pause_url"], headers=alice.rw)
        paused = await stream.next("check")
        await live.client.delete(check["update_url"], headers=alice.rw)
        deleted = await stream.next("check_deleted")

    assert (created["uuid"], created["name"]) == (check["uuid"], "a")
    assert paused["status"] == "paused"
    assert deleted == {"uuid": check["uuid"]}


async def test_a_stream_sees_nothing_of_another_project(
    live: Live, alice: Tenant, bob: Tenant
) -> None:
    theirs = await create(live, bob, name="b")
    mine = await create(live, alice, name="a")

    async with follow(live, alice.rw) as stream:
        await live.client.get(f"/ping/{theirs['uuid']}")
        await live.client.get(f"/ping/{mine['uuid']}")
        ping = await stream.next("ping")
        await asyncio.sleep(0.3)

    assert ping["uuid"] == mine["uuid"]
    while not stream.events.empty():
        _, data = stream.events.get_nowait()
        assert data["uuid"] == mine["uuid"]


async def test_a_read_only_stream_names_checks_by_unique_key(
    live: Live, alice: Tenant
) -> None:
    check = await create(live, alice, name="a")

    async with follow(live, alice.ro) as stream:
        await live.client.get(f"/ping/{check['uuid']}")
        ping = await stream.next("ping")
        await live.client.post(
            check["update_url"], json={"name": "b"}, headers=alice.rw
        )
        # On PostgreSQL the change feed may bring the creation late, too.
        edited = await stream.next("check")
        while edited["name"] != "b":
            edited = await stream.next("check")

    assert ping["unique_key"] == unique_key(check["uuid"])
    assert "uuid" not in ping
    assert edited["name"] == "b"
    assert "ping_url" not in edited and "uuid" not in edited


async def test_an_idle_stream_gets_keep_alives(live: Live, alice: Tenant) -> None:
    async with follow(live, alice.rw) as stream:
        await asyncio.sleep(1.6)

    assert stream.comments.count("keep-alive") >= 2


async def test_a_check_pinged_right_after_it_is_made_still_streams(
    live: Live, alice: Tenant
) -> None:
    async with follow(live, alice.rw) as stream:
        check = await create(live, alice, name="quick")
        await live.client.get(f"/ping/{check['uuid']}")
        ping = await stream.next("ping")

    assert ping["uuid"] == check["uuid"]


async def test_a_closed_stream_unsubscribes(live: Live, alice: Tenant) -> None:
    async with follow(live, alice.rw):
        assert live.server.events.active
    for _ in range(50):
        if not live.server.events.active:
            break
        await asyncio.sleep(0.05)

    assert not live.server.events.active


async def test_a_project_may_hold_only_so_many_streams(
    live: Live, alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "STREAMS_PER_PROJECT", 2)

    async with follow(live, alice.rw), follow(live, alice.ro):
        third = await live.client.get(EVENTS, headers=alice.rw)

    assert third.status_code == 429
    assert third.json() == {"error": "too many live event streams for this project"}


async def test_a_stream_ends_soon_after_its_key_is_revoked(
    live: Live, alice: Tenant
) -> None:
    check = await create(live, alice, name="a")
    key = alice.rw["X-Api-Key"]
    seen: list[str] = []

    async def read() -> None:
        async with live.client.stream("GET", EVENTS, headers=alice.rw) as resp:
            async for line in resp.aiter_lines():
                seen.append(line)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.3)
    assert await live.store.revoke_api_key(key[:8], 0.0)
    await asyncio.wait_for(reader, 5)
    await live.client.get(f"/ping/{check['uuid']}")

    assert not any(line.startswith("event: ping") for line in seen)
