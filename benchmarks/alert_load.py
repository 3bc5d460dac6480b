"""Alert latency and a wave of alerts, measured end to end on a real server.

Starts a local webhook receiver and ``serverlord serve`` on 127.0.0.1, with one
``json://`` channel pointing at the receiver:

1. latency: L checks (2 s period, 1 s grace) are pinged once and fall silent;
   for each down alert, the time from the flip's stored detection to the
   receiver getting the POST;
2. wave: K checks all fall due at the same instant; the time from that instant
   until every check is flipped, and until every alert has reached the receiver.

Usage: python benchmarks/alert_load.py [--latency-checks 200] [--wave 10000]
Everything it starts listens on 127.0.0.1 and stops when the run ends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from serverlord.apprise_urls import describe_url
from serverlord.bench.target import Target, free_port
from serverlord.bench.wave import Receiver
from serverlord.channels import Channel
from serverlord.checks import UP, Check
from serverlord.schedules import Schedule
from serverlord.store.sqlite import SqliteStore


async def prepare(
    db: Path, hook: str, latency_count: int, wave_count: int, wave_at: float
) -> tuple[list[str], list[str]]:
    store = SqliteStore(db)
    await store.open()
    kind, masked = describe_url(hook)
    channel = Channel(str(uuid.uuid4()), "bench-hook", hook, kind, masked, time.time())
    await store.add_channel(channel)

    now = time.time()
    short = Schedule.simple(2)
    period = Schedule.simple(60)
    latency = [
        Check(
            id=str(uuid.uuid4()), name=f"lat-{i}", schedule=short, grace=1, created=now
        )
        for i in range(latency_count)
    ]
    # Wave checks were pinged so that they all fall due at ``wave_at``.
    wave = [
        Check(
            id=str(uuid.uuid4()),
            name=f"wave-{i}",
            schedule=period,
            grace=1,
            status=UP,
            last_ping=wave_at - 61,
            created=now,
        )
        for i in range(wave_count)
    ]
    for start in range(0, len(latency) + len(wave), 2000):
        chunk = (latency + wave)[start : start + 2000]
        await asyncio.gather(*(store.add_check(check) for check in chunk))
        await asyncio.gather(
            *(store.set_check_channels(check.id, [channel.id]) for check in chunk)
        )
    await store.close()
    return [c.id for c in latency], [c.id for c in wave]


def flips_of(db: Path, ids: list[str]) -> dict[int, tuple[float, float]]:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TEMP TABLE wanted (id TEXT PRIMARY KEY)")
    conn.executemany("INSERT INTO wanted VALUES (?)", [(i,) for i in ids])
    rows = conn.execute(
        "SELECT flips.id, at, detected FROM flips JOIN wanted"
        " ON flips.check_id = wanted.id WHERE new_status = 'down'"
    ).fetchall()
    conn.close()
    return {row[0]: (row[1], row[2]) for row in rows}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct))]


async def run(args: argparse.Namespace) -> dict[str, object]:
    receiver = Receiver()
    hook_port = free_port()
    server_socket = await asyncio.start_server(receiver.handle, "127.0.0.1", hook_port)
    data_dir = Path(tempfile.mkdtemp(prefix="serverlord-alert-bench-"))
    db = data_dir / "serverlord.sqlite3"
    hook = f"json://127.0.0.1:{hook_port}/hook"
    wave_at = time.time() + args.setup_allowance
    latency_ids, wave_ids = await prepare(
        db, hook, args.latency_checks, args.wave, wave_at
    )

    target = Target(data_dir)
    await asyncio.to_thread(target.start)
    port = target.port
    try:
        import httpx

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for cid in latency_ids:
                await client.get(f"/ping/{cid}")
        expected = len(latency_ids) + len(wave_ids)
        give_up = max(wave_at, time.time()) + args.timeout
        while receiver.flips < expected and time.time() < give_up:
            await asyncio.sleep(0.1)
        last_arrival = max(receiver.arrivals.values(), default=float("nan"))
    finally:
        await asyncio.to_thread(target.stop)
        server_socket.close()

    latency_flips = flips_of(db, latency_ids)
    lat = [
        (receiver.arrivals[fid] - detected) * 1000
        for fid, (_, detected) in latency_flips.items()
        if fid in receiver.arrivals
    ]
    wave_flips = flips_of(db, wave_ids)
    flipped_by = max((d for _, d in wave_flips.values()), default=float("nan"))
    wave_received = sum(1 for fid in wave_flips if fid in receiver.arrivals)
    deadline = wave_at  # every wave check falls due (last ping + 60 s + 1 s) now
    shutil.rmtree(data_dir)
    return {
        "latency_alerts": len(lat),
        "latency_p50_ms": statistics.median(lat) if lat else None,
        "latency_p99_ms": percentile(lat, 0.99) if lat else None,
        "wave_checks": len(wave_ids),
        "wave_flipped": len(wave_flips),
        "wave_all_flipped_s": flipped_by - deadline,
        "wave_alerts_received": wave_received,
        "wave_all_delivered_s": last_arrival - deadline if wave_ids else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-checks", type=int, default=200)
    parser.add_argument("--wave", type=int, default=10_000)
    parser.add_argument(
        "--setup-allowance",
        type=float,
        default=30.0,
        help="seconds from now until the wave falls due",
    )
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"alert latency p50/p99   {report['latency_p50_ms']:.1f} / "
        f"{report['latency_p99_ms']:.1f} ms over {report['latency_alerts']} alerts "
        "(flip stored -> webhook received)"
    )
    print(
        f"wave of {report['wave_checks']:,}: all flipped after "
        f"{report['wave_all_flipped_s']:.2f} s, {report['wave_alerts_received']:,} "
        f"alerts delivered after {report['wave_all_delivered_s']:.2f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
