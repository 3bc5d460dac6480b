"""Durable pings per second and detection lag, measured on a real server.

Starts ``serverlord serve`` on 127.0.0.1 with a fresh data dir holding C checks,
then:

1. throughput: wrk (or, without wrk, a built-in asyncio client) sends pings to
   random checks over N connections for T seconds; every 200 is a committed ping;
2. detection lag: L of the checks get a 2 s period and 1 s grace, are pinged
   once, and then fall silent while the load goes on; lag is each flip's stored
   detection time minus its deadline.

Usage: python benchmarks/ping_load.py [--checks 100000] [--seconds 10]
       [--connections 64] [--lag-checks 2000] [--json]
Everything it starts listens on 127.0.0.1 and stops when the run ends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from serverlord.checks import Check
from serverlord.schedules import Schedule
from serverlord.store.sqlite import SqliteStore

LUA = """
local ids = {}
for line in io.lines(os.getenv("SERVERLORD_BENCH_IDS")) do ids[#ids + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/ping/" .. ids[math.random(#ids)])
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def create_checks(
    path: Path, count: int, lag_count: int
) -> tuple[list[str], list[str]]:
    store = SqliteStore(path)
    await store.open()
    now = time.time()
    steady, lagging = [], []
    day = Schedule.simple(86400)
    short = Schedule.simple(2)
    for start in range(0, count, 5000):
        batch = []
        for i in range(start, min(start + 5000, count)):
            is_lag = i < lag_count
            check = Check(
                id=str(uuid.uuid4()),
                name=f"bench-{i}",
                schedule=short if is_lag else day,
                grace=1 if is_lag else 3600,
                created=now,
            )
            (lagging if is_lag else steady).append(check.id)
            batch.append(store.add_check(check))
        await asyncio.gather(*batch)
    await store.close()
    return steady, lagging


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "serverlord",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(command)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("serverlord did not start within 60 s")


def run_wrk(
    port: int, ids_file: Path, seconds: int, connections: int
) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA)
    env = dict(os.environ, SERVERLORD_BENCH_IDS=str(ids_file))
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            script.name,
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    os.unlink(script.name)
    return parse_wrk(out)


def parse_wrk(out: str) -> dict[str, float]:
    def ms(text: str) -> float:
        found = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
        assert found is not None, text
        value, unit = found.groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rate is not None, out
    result = {"requests_per_s": float(rate[1])}
    for pct in ("50", "90", "99"):
        found = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+\w+)", out)
        if found:
            result[f"p{pct}_ms"] = ms(found[1])
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = float(errors[1]) if errors else 0.0
    total = re.search(r"(\d+) requests in", out)
    result["requests"] = float(total[1]) if total else 0.0
    return result


async def builtin_load(
    port: int, ids: list[str], seconds: int, connections: int
) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < stop:
            began = time.perf_counter()
            response = await client.get(f"/ping/{random.choice(ids)}")
            latencies.append((time.perf_counter() - began) * 1000)
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits
    ) as client:
        began = time.monotonic()
        await asyncio.gather(*(worker(client) for _ in range(connections)))
        elapsed = time.monotonic() - began
    latencies.sort()
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2],
        "p90_ms": latencies[int(len(latencies) * 0.9)],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
        "non_2xx": float(errors),
        "requests": float(len(latencies)),
    }


async def ping_all(port: int, ids: list[str]) -> None:
    import httpx

    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=httpx.Limits(max_connections=32)
    ) as client:
        for start in range(0, len(ids), 200):
            responses = await asyncio.gather(
                *(client.get(f"/ping/{cid}") for cid in ids[start : start + 200])
            )
            assert all(r.status_code == 200 for r in responses)


def lag_figures(db: Path, ids: list[str]) -> dict[str, float]:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TEMP TABLE wanted (id TEXT PRIMARY KEY)")
    conn.executemany("INSERT INTO wanted VALUES (?)", [(i,) for i in ids])
    lags = sorted(
        (row[0] - row[1]) * 1000
        for row in conn.execute(
            "SELECT detected, at FROM flips JOIN wanted ON flips.check_id = wanted.id"
            " WHERE new_status = 'down'"
        )
    )
    conn.close()
    if not lags:
        return {"flips": 0}
    return {
        "flips": len(lags),
        "p50_ms": statistics.median(lags),
        "p99_ms": lags[min(len(lags) - 1, int(len(lags) * 0.99))],
        "max_ms": lags[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--lag-checks", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="serverlord-bench-"))
    db = data_dir / "serverlord.sqlite3"
    began = time.monotonic()
    steady, lagging = asyncio.run(create_checks(db, args.checks, args.lag_checks))
    setup_s = time.monotonic() - began
    ids_file = data_dir / "ids.txt"
    ids_file.write_text("\n".join(steady) + "\n")

    port = free_port()
    started = time.monotonic()
    server = start_server(data_dir, port)
    startup_s = time.monotonic() - started
    try:
        use_wrk = shutil.which("wrk") is not None
        if use_wrk:
            load = run_wrk(port, ids_file, args.seconds, args.connections)
        else:
            load = asyncio.run(
                builtin_load(port, steady, args.seconds, args.connections)
            )

        # Detection lag: arm the short checks, then keep the load going while
        # their deadlines (2 s period + 1 s grace) pass.
        asyncio.run(ping_all(port, lagging))
        if use_wrk:
            run_wrk(port, ids_file, 5, args.connections)
        else:
            asyncio.run(builtin_load(port, steady, 5, args.connections))
        time.sleep(1)
    finally:
        server.terminate()
        server.wait(30)
    lag = lag_figures(db, lagging)
    shutil.rmtree(data_dir)

    report = {
        "checks": args.checks,
        "connections": args.connections,
        "seconds": args.seconds,
        "load_generator": "wrk" if use_wrk else "builtin",
        "setup_s": round(setup_s, 2),
        "startup_s": round(startup_s, 2),
        "ingest": load,
        "detection_lag": lag,
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"checks loaded            {args.checks:,} (setup {setup_s:.1f} s, "
        f"server up in {startup_s:.2f} s)"
    )
    print(
        f"durable pings/s          {load['requests_per_s']:,.0f} at "
        f"{args.connections} connections ({report['load_generator']}), "
        f"non-200: {load['non_2xx']:.0f}"
    )
    print(
        f"ping latency p50/p90/p99 {load.get('p50_ms', 0):.2f} / "
        f"{load.get('p90_ms', 0):.2f} / {load.get('p99_ms', 0):.2f} ms"
    )
    if lag.get("flips"):
        print(
            f"detection lag p50/p99/max {lag['p50_ms']:.1f} / {lag['p99_ms']:.1f} / "
            f"{lag['max_ms']:.1f} ms over {lag['flips']} flips"
        )
    else:
        print("detection lag: no flips recorded")


if __name__ == "__main__":
    main()
