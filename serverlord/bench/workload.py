"""Users and checks as a deployment has them, written straight into a store.

The mix of schedules is what cron monitors see: mostly fixed periods, then cron
lines and OnCalendar expressions in several time zones. Every check is up, its
last ping a random part of a period ago, so each one has a deadline the
sweepers hold.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from serverlord.accounts import DEFAULT_PROJECT, new_api_key, new_project, new_user
from serverlord.checks import UP, Check
from serverlord.schedules import Schedule

CHUNK = 5000
"""Rows written per round of concurrent writes: the group commit batches them."""

PERIODS = [60, 300, 900, 3600, 3600, 86400, 86400, 86400, 604800]
CRONS = ["*/5 * * * *", "0 * * * *", "30 2 * * *", "15 */6 * * *", "0 4 * * 0"]
CALENDARS = ["hourly", "daily", "*-*-* 03:00", "Mon..Fri 09:00", "Sun 04:00"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]


def _schedules(now: datetime) -> tuple[list[Schedule], list[Schedule]]:
    # Parsing validates each expression: done once per kind, then shared, as
    # Schedule is immutable.
    crons = [Schedule.cron(e, tz, now=now) for e in CRONS for tz in ZONES]
    calendars = [Schedule.oncalendar(e, tz, now=now) for e in CALENDARS for tz in ZONES]
    return crons, calendars


def mixed_checks(
    count: int, projects: Sequence[str], rng: random.Random, prefix: str = "bench"
) -> Iterable[Check]:
    """``count`` up checks: 60% periods, 25% cron, 15% OnCalendar."""
    now = time.time()
    crons, calendars = _schedules(datetime.fromtimestamp(now, UTC))
    simple = {p: Schedule.simple(p) for p in PERIODS}
    for i in range(count):
        draw = rng.random()
        if draw < 0.60:
            period = rng.choice(PERIODS)
            schedule = simple[period]
            grace = max(60.0, period / 10)
            last_ping = now - rng.random() * period
        else:
            schedule = rng.choice(crons if draw < 0.85 else calendars)
            grace = 1800.0
            last_ping = now - rng.random() * 60
        yield Check(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            name=f"{prefix}-{i}",
            schedule=schedule,
            grace=grace,
            status=UP,
            last_ping=last_ping,
            n_pings=1,
            created=now,
            project=projects[i % len(projects)] if projects else DEFAULT_PROJECT,
        )


class Progress:
    """A progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, label: str, total: int, shown: bool = True) -> None:
        self.label = label
        self.total = max(1, total)
        self.done = 0
        self.shown = shown
        self.began = time.monotonic()
        self._drawn = 0.0

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.shown and (now - self._drawn > 0.1 or self.done >= self.total):
            self._drawn = now
            filled = int(30 * self.done / self.total)
            rate = self.done / max(now - self.began, 1e-9)
            sys.stderr.write(
                f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] "
                f"{self.done:,}/{self.total:,} {rate:,.0f}/s"
            )
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


async def add_users(store: Any, count: int, progress: Progress) -> list[str]:
    """``count`` users, each owning a project with one API key; their ids."""
    now = time.time()
    projects = []
    for start in range(0, count, CHUNK):
        writes = []
        for i in range(start, min(start + CHUNK, count)):
            user = new_user(f"bench-{i}@example.com", now)
            project = new_project(f"bench {i}", user.id, now)
            _, key = new_api_key(project.id, False, now)
            projects.append(project.id)
            writes.append(store.add_user(user, project, [key]))
        await asyncio.gather(*writes)
        progress.advance(len(writes))
    return projects


async def add_checks(
    store: Any,
    checks: Iterable[Check],
    progress: Progress,
    channels: list[str] | None = None,
    keep: Callable[[Check], None] | None = None,
) -> int:
    """Write the checks (linked to ``channels`` when given); how many."""
    written = 0
    batch: list[Check] = []

    async def flush() -> None:
        nonlocal written
        await store.add_checks(batch, channels or [])
        written += len(batch)
        progress.advance(len(batch))
        batch.clear()

    for check in checks:
        batch.append(check)
        if keep is not None:
            keep(check)
        if len(batch) >= CHUNK:
            await flush()
    if batch:
        await flush()
    return written
