"""``wave``: K checks all falling due at the same instant.

The checks were last pinged so that their deadlines all fall ``--lead`` seconds
after they are written, and each is linked to a ``json://`` channel pointing at
a webhook receiver the bench runs on 127.0.0.1. Reported: the time from that
instant until every check is flipped (the last detection its flip records),
until the bench saw every flip committed (the store is read every
``STORED_POLL`` seconds, so this is an upper bound that may come after the
first alerts, which are committed with their flips), and until every alert
has reached the receiver.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import sqlite3
import time
import uuid
from typing import Any

from serverlord.apprise_urls import describe_url
from serverlord.bench.results import down_flips
from serverlord.bench.target import Target, free_port
from serverlord.bench.workload import Progress, add_checks
from serverlord.channels import Channel
from serverlord.checks import UP, Check
from serverlord.errors import CommandError
from serverlord.schedules import Schedule

FLIP_ID = re.compile(r"Flip: #(\d+)")
PERIOD = 60.0
GRACE = 1.0
STORED_POLL = 0.1
"""How often the bench counts the flips committed, in seconds."""


class Receiver:
    """A webhook that notes when the alert of each flip first arrived.

    A digest lists many alerts, each with its ``Flip: #N``: all count.
    """

    def __init__(self) -> None:
        self.arrivals: dict[int, float] = {}
        self.count = 0
        """Messages received, digests and repeats included."""

    @property
    def flips(self) -> int:
        """Distinct flips whose alert arrived."""
        return len(self.arrivals)

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                now = time.time()
                self.count += 1
                try:
                    message = json.loads(body).get("message", "")
                except ValueError:
                    message = ""
                for flip_id in FLIP_ID.findall(message):
                    self.arrivals.setdefault(int(flip_id), now)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        writer.close()


async def prepare(
    target: Target, hook: str, count: int, at: float, shown: bool
) -> list[str]:
    store = target.open_store()
    await store.open()
    rng = random.Random(4)
    try:
        kind, masked = describe_url(hook)
        channel = Channel(
            str(uuid.uuid4()), "bench-hook", hook, kind, masked, time.time()
        )
        await store.add_channel(channel)
        schedule = Schedule.simple(PERIOD)
        checks = [
            Check(
                id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                name=f"wave-{i}",
                schedule=schedule,
                grace=GRACE,
                status=UP,
                last_ping=at - PERIOD - GRACE,
                n_pings=1,
                created=time.time(),
            )
            for i in range(count)
        ]
        await add_checks(store, checks, Progress("wave  ", count, shown), [channel.id])
    finally:
        await store.close()
    return [c.id for c in checks]


async def scenario(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    receiver = Receiver()
    hook_port = free_port()
    hook_server = await asyncio.start_server(receiver.handle, "127.0.0.1", hook_port)
    try:
        hook = f"json://127.0.0.1:{hook_port}/hook"
        began = time.time()
        # The lead counts from the end of the writes: rows/s vary by machine.
        ids = await prepare(target, hook, args.wave, began + 3600, not args.quiet)
        at = time.time() + args.lead
        await _move_deadlines(target, ids, at)
        startup = await asyncio.to_thread(target.start)
        if time.time() > at - 0.2:
            raise CommandError(
                f"the server took {startup:.1f} s to start, past the wave's "
                f"instant: give --lead more than {args.lead:g} s"
            )
        give_up = at + args.timeout
        stored = asyncio.create_task(_all_stored(target, len(ids), give_up))
        while receiver.flips < len(ids) and time.time() < give_up:
            await asyncio.sleep(0.05)
        stored_by = await stored
        flips = await down_flips(target, ids)
    finally:
        # The server first: alerts still on their way must not meet a closed
        # receiver and log connection errors.
        await asyncio.to_thread(target.stop)
        hook_server.close()

    flipped_by = max((detected for _, _, detected in flips), default=None)
    delivered = [receiver.arrivals[f] for f, _, _ in flips if f in receiver.arrivals]
    all_delivered = len(delivered) == len(ids)
    return {
        "wave": len(ids),
        "startup_s": startup,
        "flipped": len(flips),
        "all_flipped_s": None
        if flipped_by is None or len(flips) < len(ids)
        else flipped_by - at,
        "all_stored_s": None if stored_by is None else stored_by - at,
        "delivered": len(delivered),
        "all_delivered_s": max(delivered) - at if all_delivered else None,
        # Delivery alone, whatever the flips took: first alert to last.
        "delivery_span_s": max(delivered) - min(delivered) if delivered else None,
        "messages": receiver.count,
        "timeout_s": args.timeout,
    }


async def _all_stored(target: Target, count: int, give_up: float) -> float | None:
    """When the bench first saw ``count`` down flips committed, or None.

    A flip records when its sweep began; this is when its transaction had
    committed, which is what a wave must reach in time. The store is fresh:
    every down flip in it is one of the wave's.
    """
    while time.time() < give_up:
        if await _down_flips_stored(target) >= count:
            return time.time()
        await asyncio.sleep(STORED_POLL)
    return None


async def _down_flips_stored(target: Target) -> int:
    query = "SELECT count(*) FROM flips WHERE new_status = 'down'"
    if target.database_url:
        import asyncpg

        pg = await asyncpg.connect(target.database_url)
        try:
            return int(await pg.fetchval(query))
        finally:
            await pg.close()

    def count() -> int:
        uri = f"file:{target.sqlite_path}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            return int(conn.execute(query).fetchone()[0])

    return await asyncio.to_thread(count)


async def _move_deadlines(target: Target, ids: list[str], at: float) -> None:
    """Re-stamp the last pings so that every deadline falls at ``at``.

    Straight SQL on the stopped server's store: the store's own writes move a
    last ping only through a ping, and pinging K checks would spread them out.
    """
    last_ping = at - PERIOD - GRACE
    if target.database_url:
        import asyncpg

        pg = await asyncpg.connect(target.database_url)
        try:
            await pg.execute(
                "UPDATE checks SET last_ping = $1, deadline = $2"
                " WHERE id = ANY($3::text[])",
                last_ping,
                at,
                ids,
            )
        finally:
            await pg.close()
        return
    with contextlib.closing(sqlite3.connect(target.sqlite_path)) as conn, conn:
        conn.executemany(
            "UPDATE checks SET last_ping = ?, deadline = ? WHERE id = ?",
            [(last_ping, at, i) for i in ids],
        )


def run(args: argparse.Namespace, target: Target | None) -> dict[str, Any]:
    if target is None:
        raise CommandError("unreachable: wave needs its own server")
    return asyncio.run(scenario(args, target))


def rows(report: dict[str, Any]) -> list[tuple[str, Any]]:
    def seconds(value: float | None, what: str) -> str:
        if value is None:
            return f"not all {what} within {report['timeout_s']:g} s"
        return f"{value:.2f} s"

    return [
        ("checks due at once", report["wave"]),
        ("flipped", report["flipped"]),
        ("all flipped after", seconds(report["all_flipped_s"], "flipped")),
        ("all stored after", seconds(report.get("all_stored_s"), "stored")),
        ("alerts delivered", report["delivered"]),
        ("all delivered after", seconds(report["all_delivered_s"], "delivered")),
        ("first to last alert delivered", _span(report["delivery_span_s"])),
        ("messages received", report["messages"]),
    ]


def _span(value: float | None) -> str:
    return "none delivered" if value is None else f"{value:.2f} s"
