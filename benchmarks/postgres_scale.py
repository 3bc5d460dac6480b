"""PostgreSQL with one and two worker processes, side by side with SQLite.

In one run, on the same checks and the same load:

1. durable pings/s and latency at N connections for SQLite, PostgreSQL with
   ``--workers 1`` and PostgreSQL with ``--workers 2``;
2. failover: two ``serve`` processes share a database; one is killed with
   SIGKILL and the time until the other holds every shard lock is measured
   (several rounds, median and max).

Usage: python benchmarks/postgres_scale.py [--checks 10000] [--seconds 10]
       [--connections 64] [--failovers 5] [--json]
It starts its own PostgreSQL (initdb/pg_ctl, as the postgres user when run as
root) and servers on 127.0.0.1, and stops them all at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from serverlord.bench.load import load as bench_load
from serverlord.bench.target import free_port
from serverlord.checks import SHARD_COUNT, Check
from serverlord.schedules import Schedule
from serverlord.store import Store
from serverlord.store.postgres import PostgresStore
from serverlord.store.postgres_writes import SHARD_SPACE
from serverlord.store.sqlite import SqliteStore
from tests.postgres import Cluster


async def create_checks(store: Store, count: int) -> list[str]:
    await store.open()
    now = time.time()
    ids = []
    day = Schedule.simple(86400)
    for start in range(0, count, 2000):
        batch = []
        for i in range(start, min(start + 2000, count)):
            check = Check(
                id=str(uuid.uuid4()),
                name=f"bench-{i}",
                schedule=day,
                grace=3600,
                created=now,
            )
            ids.append(check.id)
            batch.append(store.add_check(check))
        await asyncio.gather(*batch)
    await store.close()
    return ids


def serve(port: int, data_dir: Path, url: str, workers: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "serverlord", "serve", "--port", str(port),
        "--data-dir", str(data_dir), "--database-url", url,
        "--workers", str(workers), "--log-level", "warning",
    ]  # fmt: skip
    return subprocess.Popen(command)


async def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"serverlord exited with {proc.returncode}")
            try:
                answer = await client.get(f"http://127.0.0.1:{port}/api/health")
                if answer.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit("serverlord did not start within 60 s")


async def holders(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND objsubid = 2 AND granted AND classid = $1::bigint::oid GROUP BY pid",
            SHARD_SPACE,
        )
    finally:
        await conn.close()
    return sorted(row[0] for row in rows)


async def wait_holders(url: str, wanted: list[int], timeout: float) -> float:
    began = time.monotonic()
    while await holders(url) != wanted:
        if time.monotonic() - began > timeout:
            raise SystemExit(f"shards not held as {wanted} within {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - began


def load(port: int, ids: list[str], seconds: int, conns: int) -> dict[str, float]:
    figures = bench_load(port, ids, seconds, conns)
    return {k: v for k, v in figures.items() if isinstance(v, float)}


def ingest(
    name: str,
    url: str,
    workers: int,
    ids: list[str],
    root: Path,
    args: argparse.Namespace,
) -> dict[str, object]:
    port = free_port()
    proc = serve(port, root / name, url, workers)
    try:
        asyncio.run(wait_ready(port, proc))
        if workers > 1:
            asyncio.run(wait_holders(url, [SHARD_COUNT // workers] * workers, 30))
        load(port, ids, 2, args.connections)  # warm up
        figures = load(port, ids, args.seconds, args.connections)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return {"setup": name, "workers": workers, **figures}


async def failover(url: str, root: Path, rounds: int) -> list[float]:
    times = []
    for round_ in range(rounds):
        ports = [free_port(), free_port()]
        procs = [
            serve(port, root / f"f{round_}-{i}", url, 1) for i, port in enumerate(ports)
        ]
        try:
            for port, proc in zip(ports, procs, strict=True):
                await wait_ready(port, proc)
            await wait_holders(url, [SHARD_COUNT // 2] * 2, 30)
            procs[0].kill()
            times.append(await wait_holders(url, [SHARD_COUNT], 30))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                proc.wait(60)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="serverlord-pgbench-"))
    cluster = Cluster.start()
    try:
        database = asyncio.run(cluster.create_database())
        pg_url = cluster.url(database)
        sqlite_url = f"sqlite:///{root / 'bench.sqlite3'}"
        sqlite_ids = asyncio.run(
            create_checks(SqliteStore(root / "bench.sqlite3"), args.checks)
        )
        pg_ids = asyncio.run(create_checks(PostgresStore(pg_url), args.checks))
        results = [
            ingest("sqlite", sqlite_url, 1, sqlite_ids, root, args),
            ingest("postgresql", pg_url, 1, pg_ids, root, args),
            ingest("postgresql", pg_url, 2, pg_ids, root, args),
        ]
        takeovers = asyncio.run(failover(pg_url, root, args.failovers))
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)

    report = {
        "checks": args.checks,
        "connections": args.connections,
        "seconds": args.seconds,
        "load_generator": "wrk" if shutil.which("wrk") else "builtin",
        "cpus": os.cpu_count(),
        "ingest": results,
        "failover_s": {
            "rounds": len(takeovers),
            "median": statistics.median(takeovers),
            "max": max(takeovers),
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{args.checks:,} checks, {args.connections} connections, {args.seconds} s each"
    )
    header = ("store", "workers", "pings/s", "p50 ms", "p99 ms", "non-200")
    print(f"{header[0]:<12}" + "".join(f"{h:>9}" for h in header[1:]))
    for row in results:
        print(
            f"{row['setup']:<12}{row['workers']:>9}{row['ok_per_s']:>9,.0f}"
            f"{row.get('p50_ms', 0):>9.2f}{row.get('p99_ms', 0):>9.2f}"
            f"{row['errors']:>9.0f}"
        )
    print(
        f"failover (kill -9 to every shard taken): median "
        f"{report['failover_s']['median']:.2f} s, max {max(takeovers):.2f} s "
        f"over {len(takeovers)} rounds"
    )


if __name__ == "__main__":
    main()
