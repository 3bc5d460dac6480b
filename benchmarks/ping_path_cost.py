"""CPU cost of the two halves of a ping, in process, without a load generator.

1. The HTTP side: one bodiless GET ping through the ASGI application (the
   Litestar route, then the fast path in front of it), with an ingest that
   stores nothing; thread CPU time per ping, best of 5 rounds of 20,000.
2. The writer side: batches of 64 pings of random checks among 10,000 (the
   bench's mix) written one by one and as one run of pings, in one SQLite
   transaction each; median statements' time per ping, COMMIT per batch.

Usage: python benchmarks/ping_path_cost.py
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from serverlord.bench.workload import Progress, add_checks, mixed_checks
from serverlord.http.app import create_app
from serverlord.http.fast_ping import PingFastPath
from serverlord.http.ping import PingService
from serverlord.pings import Ping
from serverlord.store import sqlite as sqlite_store
from serverlord.store.sqlite_pings import PingWrite, record_ping_run
from serverlord.store.sqlite_reads import CheckCache

ROUNDS, CALLS, BATCHES, BATCH = 5, 20_000, 200, 64


async def _nothing(ping: Ping) -> None:
    return None


async def asgi_cost(app: Any) -> float:
    path = f"/ping/{uuid.uuid4()}"

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    def scope() -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "scheme": "http",
            "method": "GET",
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1"), (b"user-agent", b"cron")],
            "state": {},
        }

    best = float("inf")
    for _ in range(ROUNDS):
        began = time.thread_time()
        for _ in range(CALLS):
            await app(scope(), receive, send)
        best = min(best, (time.thread_time() - began) / CALLS)
    return best * 1e6


async def make_checks(path: Path) -> list[str]:
    store = sqlite_store.SqliteStore(path)
    await store.open()
    checks = list(mixed_checks(10_000, [], random.Random(1)))
    await add_checks(store, checks, Progress("checks", len(checks), False))
    await store.close()
    return [check.id for check in checks]


def writer_cost(path: Path, ids: list[str], together: bool) -> tuple[float, float]:
    conn = sqlite_store.connect(path)
    cache = CheckCache()
    rng = random.Random(2)
    statements, commits = [], []
    for _ in range(BATCHES):
        pings = [
            Ping(check_id=rng.choice(ids), received=time.time(), kind="success")
            for _ in range(BATCH)
        ]
        began = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        if together:
            run: list[tuple[Any, Any]] = [(PingWrite(ping), None) for ping in pings]
            record_ping_run(conn, run, cache)
        else:
            for ping in pings:
                PingWrite(ping)(conn)
        written = time.perf_counter()
        conn.execute("COMMIT")
        statements.append((written - began) / BATCH)
        commits.append(time.perf_counter() - written)
    conn.close()
    return statistics.median(statements) * 1e6, statistics.median(commits) * 1e3


def main() -> int:
    service = PingService(_nothing, 100, False)
    app = create_app(service, 1000)
    litestar = asyncio.run(asgi_cost(app))
    fast = asyncio.run(asgi_cost(PingFastPath(app, service)))
    print(
        f"HTTP side, per ping: Litestar route {litestar:.1f} us, "
        f"fast path {fast:.1f} us"
    )

    with tempfile.TemporaryDirectory(prefix="serverlord-cost-") as folder:
        path = Path(folder) / "serverlord.sqlite3"
        ids = asyncio.run(make_checks(path))
        for _ in range(2):
            for together in (False, True):
                per_ping, commit = writer_cost(path, ids, together)
                how = "as one run" if together else "one by one"
                print(
                    f"writer, 64 pings {how}: statements {per_ping:.1f} us "
                    f"per ping, COMMIT {commit:.2f} ms per batch (medians)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
