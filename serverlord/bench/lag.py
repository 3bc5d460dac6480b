"""``lag``: how late a silent check goes down while pings keep coming.

Besides C checks of the usual mix (whose deadlines lie far ahead), L checks
get a 2 s period and a 1 s grace. Once the server answers, each of them is
pinged once and then falls silent, while ping traffic to the other checks goes
on. The lag of a check is its stored flip's detection time minus its deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from typing import Any

from serverlord.bench.load import load, percentiles
from serverlord.bench.results import down_flips
from serverlord.bench.setup import populate
from serverlord.bench.target import Target
from serverlord.bench.workload import Progress, add_checks
from serverlord.checks import Check
from serverlord.errors import CommandError
from serverlord.schedules import Schedule

PERIOD = 2.0
GRACE = 1.0
SETTLE = 2.0
"""Seconds waited past the last deadline for the last flips to be stored."""


async def add_lagging(target: Target, count: int, shown: bool) -> list[str]:
    store = target.open_store()
    await store.open()
    rng = random.Random(3)
    schedule = Schedule.simple(PERIOD)
    checks = [
        Check(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            name=f"lag-{i}",
            schedule=schedule,
            grace=GRACE,
            created=time.time(),
        )
        for i in range(count)
    ]
    try:
        await add_checks(store, checks, Progress("silent", count, shown))
    finally:
        await store.close()
    return [c.id for c in checks]


def run(args: argparse.Namespace, target: Target | None) -> dict[str, Any]:
    if target is None:
        raise CommandError("unreachable: lag needs its own server")
    shown = not args.quiet
    asyncio.run(populate(target, 0, args.checks, shown))
    lagging = asyncio.run(add_lagging(target, args.lag_checks, shown))
    silent = set(lagging)
    ids = [c for c in asyncio.run(_ids(target)) if c not in silent]
    startup = target.start()

    asyncio.run(arm(target, lagging))
    armed = time.monotonic()
    # Deadlines fall 3 s after the arming pings; the traffic outlasts them.
    seconds = max(args.seconds, PERIOD + GRACE + SETTLE)
    traffic = load(
        target.port, ids, seconds, args.connections[0], args.rate, not args.no_wrk
    )
    while time.monotonic() < armed + PERIOD + GRACE + SETTLE:
        time.sleep(0.1)

    flips = asyncio.run(down_flips(target, lagging))
    lags = [(detected - at) * 1000 for _, at, detected in flips]
    return {
        "checks": args.checks + args.lag_checks,
        "silent_checks": len(lagging),
        "flipped": len(flips),
        "startup_s": startup,
        "lag": percentiles(lags),
        "traffic": traffic,
    }


async def arm(target: Target, ids: list[str]) -> None:
    """One ping to each silent check, 32 at a time."""
    import httpx

    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=target.url, limits=limits) as client:
        for start in range(0, len(ids), 256):
            answers = await asyncio.gather(
                *(client.get(f"/ping/{i}") for i in ids[start : start + 256])
            )
            refused = [a for a in answers if a.status_code != 200]
            if refused:
                raise CommandError(
                    f"a silent check's ping got {refused[0].status_code}"
                )


async def _ids(target: Target) -> list[str]:
    from serverlord.bench.ingest import stored_ids

    return await stored_ids(target)


def rows(report: dict[str, Any]) -> list[tuple[str, Any]]:
    lag, traffic = report["lag"], report["traffic"]
    return [
        ("checks loaded", report["checks"]),
        (
            "silent checks flipped",
            f"{report['flipped']:,} of {report['silent_checks']:,}",
        ),
        ("detection lag p50 ms", lag["p50_ms"]),
        ("detection lag p90 ms", lag["p90_ms"]),
        ("detection lag p99 ms", lag["p99_ms"]),
        ("detection lag max ms", lag["max_ms"]),
        ("pings/s meanwhile", traffic.get("ok_per_s", 0.0)),
        ("ping latency p99 ms meanwhile", traffic.get("p99_ms", 0.0)),
    ]
