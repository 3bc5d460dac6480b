"""Live events: pings, flips and check edits, fanned out to subscribers per project.

The server publishes to one ``EventHub`` in its own process; the management
API streams a project's events to each subscriber (server-sent events). Only
what happens in this process is seen: pings and flips of other server
processes sharing a PostgreSQL database do not reach this hub yet (edits do,
through the change feed every process follows). A publisher that learns of
other processes' events (PostgreSQL NOTIFY, say) calls the same methods.

Publishing costs nothing while nobody listens. A subscriber that falls more
than ``QUEUE_LIMIT`` events behind is dropped; its client reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from serverlord.checks import Check, Flip
from serverlord.pings import Ping

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000
"""Events one subscriber may have waiting before it is dropped."""


@dataclass(slots=True, frozen=True)
class Event:
    """What happened: ``kind`` is ping, flip, check or check_deleted."""

    kind: str
    check_id: str
    ping: Ping | None = None
    flip: Flip | None = None
    check: Check | None = None
    channels: list[str] = field(default_factory=list)


@dataclass(eq=False)
class Subscriber:
    project: str
    read_only: bool
    queue: asyncio.Queue[Event | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_LIMIT)
    )
    dropped: bool = False


class EventHub:
    def __init__(self, store: Any) -> None:
        self.store = store
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._projects: dict[str, str] = {}
        """The project of each check of a project that someone follows."""
        self._lookups: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> bool:
        return bool(self._subscribers)

    def followers(self, project: str) -> int:
        return len(self._subscribers.get(project, ()))

    def clients(self) -> int:
        """Subscribers connected, over every project."""
        return sum(len(followers) for followers in self._subscribers.values())

    async def subscribe(self, project: str, read_only: bool) -> Subscriber:
        subscriber = Subscriber(project, read_only)
        if project not in self._subscribers:
            for check in await self.store.project_checks(project):
                self._projects[check.id] = project
        self._subscribers.setdefault(project, set()).add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        followers = self._subscribers.get(subscriber.project)
        if followers is None:
            return
        followers.discard(subscriber)
        if not followers:
            del self._subscribers[subscriber.project]
            self._projects = {
                check_id: project
                for check_id, project in self._projects.items()
                if project in self._subscribers
            }

    def ping(self, ping: Ping) -> None:
        if self._subscribers:
            self._route(Event("ping", ping.check_id, ping=ping))

    def flips(self, flips: list[Flip]) -> None:
        if self._subscribers:
            for flip in flips:
                self._route(Event("flip", flip.check_id, flip=flip))

    def checks_changed(self, check_ids: list[str]) -> None:
        """Checks were added, edited, paused, resumed or removed (any process)."""
        if self._subscribers and check_ids:
            self._spawn(self._publish_checks(check_ids))

    def close(self) -> None:
        """End every stream (the server is stopping)."""
        for followers in self._subscribers.values():
            for subscriber in followers:
                _offer(subscriber, None)
        for task in self._lookups:
            task.cancel()

    def _route(self, event: Event) -> None:
        project = self._projects.get(event.check_id)
        if project is not None:
            self._deliver(project, event)
        else:
            # A check made a moment ago, before its edit reached this hub.
            self._spawn(self._look_up(event))

    def _deliver(self, project: str, event: Event) -> None:
        for subscriber in list(self._subscribers.get(project, ())):
            if not _offer(subscriber, event):
                log.warning(
                    "dropped a live-events subscriber %d events behind",
                    QUEUE_LIMIT,
                    extra={"action": "events_dropped", "project": project},
                )
                self.unsubscribe(subscriber)

    async def _look_up(self, event: Event) -> None:
        check = await self.store.get_check(event.check_id)
        if check is not None and check.project in self._subscribers:
            self._projects[check.id] = check.project
            self._deliver(check.project, event)

    async def _publish_checks(self, check_ids: list[str]) -> None:
        for check_id in dict.fromkeys(check_ids):
            check = await self.store.get_check(check_id)
            if check is None:
                project = self._projects.pop(check_id, None)
                if project is not None:
                    self._deliver(project, Event("check_deleted", check_id))
                continue
            if check.project not in self._subscribers:
                continue
            self._projects[check.id] = check.project
            channels = await self.store.check_channels(check.id)
            event = Event("check", check.id, check=check, channels=channels)
            self._deliver(check.project, event)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._lookups.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._lookups.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "live event not published: %s",
                task.exception(),
                extra={"action": "events_failed"},
            )


def _offer(subscriber: Subscriber, event: Event | None) -> bool:
    if subscriber.dropped:
        return True
    try:
        subscriber.queue.put_nowait(event)
    except asyncio.QueueFull:
        subscriber.dropped = True
        with contextlib.suppress(asyncio.QueueEmpty):
            subscriber.queue.get_nowait()
        subscriber.queue.put_nowait(None)
        return False
    return True
