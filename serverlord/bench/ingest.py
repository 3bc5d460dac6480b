"""``ingest``: durable pings per second and their latency, against a bare
asyncio responder loaded the same way in the same run.

Each round loads serverlord, then the bare responder, at every connection count
in turn, so that the noise of a busy machine falls on both alike; the figures
are medians over the rounds. Every 200 is a committed ping.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import time
from typing import Any
from urllib.parse import urlsplit

from serverlord.bench.api import api_client, call
from serverlord.bench.load import load
from serverlord.bench.setup import populate
from serverlord.bench.target import Target, free_port, http_get, serverlord_command
from serverlord.errors import CommandError

FIGURES = ("ok_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms")


def start_bare() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        serverlord_command("bench", "responder", "--port", str(port)),
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            http_get(port, "/")
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise CommandError("the bare responder did not start within 30 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def api_ids(url: str, key: str) -> list[str]:
    async with api_client(url, key) as client:
        answer = await call(client, "GET", "/api/v3/checks/")
    if answer.status_code != 200:
        raise CommandError(f"{url}/api/v3/checks/ answered {answer.status_code}")
    return [c["ping_url"].rsplit("/", 1)[-1] for c in answer.json()["checks"]]


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in FIGURES}
    merged["errors"] = sum(r["errors"] for r in runs)
    merged["requests"] = sum(r["requests"] for r in runs)
    merged["generator"] = runs[0]["generator"]
    return merged


def run(args: argparse.Namespace, target: Target | None) -> dict[str, Any]:
    if target is None:
        parts = urlsplit(args.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        ids = asyncio.run(api_ids(args.url, args.api_key))
        if not ids:
            raise CommandError("the API key's project has no checks to ping")
        startup = None
    else:
        asyncio.run(populate(target, 0, args.checks, not args.quiet))
        startup = target.start()
        host, port = "127.0.0.1", target.port
        ids = asyncio.run(stored_ids(target))
    rng = random.Random(2)
    rng.shuffle(ids)

    bare, bare_port = start_bare()
    levels: dict[int, dict[str, list[dict[str, Any]]]] = {
        n: {"serverlord": [], "bare": []} for n in args.connections
    }
    cpu_used = 0.0
    answered = 0.0
    try:
        for _ in range(args.rounds):
            for n in args.connections:
                cpu = target.cpu_seconds() if target else 0.0
                result = load(
                    port, ids, args.seconds, n, args.rate, not args.no_wrk, host
                )
                if target is not None:
                    cpu_used += target.cpu_seconds() - cpu
                    answered += result["requests"]
                levels[n]["serverlord"].append(result)
                levels[n]["bare"].append(
                    load(bare_port, ids, args.seconds, n, args.rate, not args.no_wrk)
                )
    finally:
        stop(bare)

    report: dict[str, Any] = {
        "checks": len(ids),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "rate": args.rate,
        "startup_s": startup,
        "levels": [],
    }
    for n, runs in levels.items():
        ours = median_of(runs["serverlord"])
        bare_figures = median_of(runs["bare"])
        report["levels"].append(
            {
                "connections": n,
                "serverlord": ours,
                "bare": bare_figures,
                "ratio": ours["ok_per_s"] / bare_figures["ok_per_s"]
                if bare_figures["ok_per_s"]
                else 0.0,
            }
        )
    if target is not None and answered:
        report["cpu_us_per_ping"] = cpu_used / answered * 1e6
    return report


async def stored_ids(target: Target) -> list[str]:
    store = target.open_store()
    await store.open()
    try:
        return [check.id for check in await store.list_checks()]
    finally:
        await store.close()


def rows(report: dict[str, Any]) -> list[tuple[str, Any]]:
    lines: list[tuple[str, Any]] = [("checks pinged at random", report["checks"])]
    for level in report["levels"]:
        ours, bare = level["serverlord"], level["bare"]
        n = level["connections"]
        lines += [
            (f"[{n} conn] durable pings/s", ours["ok_per_s"]),
            (
                f"[{n} conn] latency p50/p90/p99/max ms",
                " / ".join(f"{ours[k]:.1f}" for k in FIGURES[1:]),
            ),
            (f"[{n} conn] errors", int(ours["errors"])),
            (f"[{n} conn] bare responder answers/s", bare["ok_per_s"]),
            (f"[{n} conn] ratio to bare", f"{level['ratio']:.3f}"),
        ]
    if "cpu_us_per_ping" in report:
        lines.append(("server CPU per ping (us)", report["cpu_us_per_ping"]))
    lines.append(("load generator", report["levels"][0]["serverlord"]["generator"]))
    return lines
