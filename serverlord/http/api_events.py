"""The live events of a project as a server-sent-events stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar.response import ServerSentEventMessage

from serverlord import clock
from serverlord.accounts import (
    unique_key,
)
from serverlord.events import Event
from serverlord.http.api_render import (
    check_out,
    flip_out,
    iso_precise,
)
from serverlord.http.api_service import Access, ApiService
from serverlord.store.base import StoreError

KEY_RECHECK = 1.0
"""Seconds between two checks that the stream's key is still valid."""


async def event_stream(
    service: ApiService, subscriber: Any, access: Access
) -> AsyncIterator[ServerSentEventMessage]:
    hub = service.events
    try:
        yield ServerSentEventMessage(comment="serverlord live events", data=None)
        idle = 0.0
        checked = time.monotonic()
        while not service.stopping():
            if time.monotonic() - checked >= KEY_RECHECK:
                # A key revoked while its stream is open ends the stream.
                if not await _key_valid(service, access):
                    return
                checked = time.monotonic()
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


async def _key_valid(service: ApiService, access: Access) -> bool:
    try:
        stored = await service.store.get_api_key(access.key_id)
    except StoreError:
        return True  # the database is away: not a reason to cut people off
    return stored is not None and stored.revoked is None


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
            clock.now(),
            read_only=access.read_only,
            channels=event.channels,
        )
        data = msgspec.to_builtins(shown)
    elif event.kind == "check_deleted":
        data = ref
    else:
        return None
    return event.kind, json.dumps(data)
