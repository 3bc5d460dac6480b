"""What one sweep of many due checks costs the store, measured in process.

Writes N checks linked to one channel into a fresh store (SQLite in a
temporary folder, or the empty PostgreSQL database of ``--database-url``),
moves every deadline into the past, and has the store confirm them all in
sweeps of ``--sweep`` checks, as the sweepers do. Prints the wall time and
this process's CPU time per check, and how long composing one alert takes.
``--profile FILE`` writes a cProfile of the sweeps.

Usage: python benchmarks/sweep_cost.py [--checks 10000] [--sweep 1000]
       [--database-url postgresql://...] [--profile out.prof]
Run it with PYTHONPATH pointing at another checkout to measure that code.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from serverlord import alerts
from serverlord.bench.workload import Progress, add_checks
from serverlord.channels import Channel
from serverlord.checks import DOWN, UP, Check, Flip
from serverlord.schedules import Schedule
from serverlord.store.base import Due
from serverlord.store.postgres import PostgresStore
from serverlord.store.sqlite import SqliteStore

PERIOD = 60.0
GRACE = 1.0


async def prepare(store: SqliteStore | PostgresStore, count: int) -> list[str]:
    hook = "json://127.0.0.1:9/hook"
    channel = Channel(str(uuid.uuid4()), "hook", hook, "json", hook, time.time())
    await store.add_channel(channel)
    at = time.time() - 5
    checks = [
        Check(
            id=str(uuid.uuid4()),
            name=f"wave-{i}",
            schedule=Schedule.simple(PERIOD),
            grace=GRACE,
            status=UP,
            last_ping=at - PERIOD - GRACE,
            n_pings=1,
            created=time.time(),
        )
        for i in range(count)
    ]
    await add_checks(store, checks, Progress("checks", count, False), [channel.id])
    return [check.id for check in checks]


async def sweep_all(
    store: SqliteStore | PostgresStore, ids: list[str], size: int
) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    flips = 0
    for start in range(0, len(ids), size):
        due = [Due(check_id) for check_id in ids[start : start + size]]
        outcomes = await store.sweep(due, time.time())
        flips += sum(outcome.flip is not None for outcome in outcomes)
    return time.perf_counter() - wall, time.process_time() - cpu, flips


def compose_cost(rounds: int = 5, count: int = 5000) -> float:
    """Median µs to compose one down alert, over ``rounds`` of ``count``."""
    now = time.time()
    checks = [
        Check(
            id=str(uuid.uuid4()),
            name=f"wave-{i}",
            schedule=Schedule.simple(PERIOD),
            grace=GRACE,
            status=DOWN,
            last_ping=now - PERIOD - GRACE,
            n_pings=1,
            created=now,
        )
        for i in range(count)
    ]
    flips = [
        Flip(c.id, 0, now - 1.0, now, UP, DOWN, "missed", id=i)
        for i, c in enumerate(checks)
    ]
    timings = []
    for _ in range(rounds):
        began = time.perf_counter()
        for check, flip in zip(checks, flips, strict=True):
            alerts.compose(check, flip, b"done", now)
        timings.append((time.perf_counter() - began) / count * 1e6)
    return statistics.median(timings)


async def main(args: argparse.Namespace) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix="sweep-cost-"))
    store: SqliteStore | PostgresStore
    if args.database_url:
        store = PostgresStore(args.database_url)
    else:
        store = SqliteStore(folder / "serverlord.sqlite3")
    await store.open()
    try:
        ids = await prepare(store, args.checks)
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        wall, cpu, flips = await sweep_all(store, ids, args.sweep)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
    finally:
        await store.close()
    if not args.database_url:
        with sqlite3.connect(folder / "serverlord.sqlite3") as conn:
            deliveries = conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    else:
        deliveries = -1
    return {
        "checks": args.checks,
        "sweep": args.sweep,
        "flips": flips,
        "deliveries": deliveries,
        "wall_s": round(wall, 3),
        "wall_us_per_check": round(wall / args.checks * 1e6, 1),
        "cpu_us_per_check": round(cpu / args.checks * 1e6, 1),
        "compose_us": round(compose_cost(), 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checks", type=int, default=10000)
    parser.add_argument("--sweep", type=int, default=1000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--profile", default="")
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
