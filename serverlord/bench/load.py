"""Ping traffic: wrk when it is installed, else a built-in asyncio client.

Both send ``GET /ping/<id>`` for random ids over keep-alive connections for a
fixed time and report answers per second, latency percentiles and the count of
answers other than 200 (every 200 is a committed ping). The built-in client can
also hold a target rate, which wrk cannot.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from serverlord.errors import CommandError

WRK_SCRIPT = """
local ids = {}
for line in io.lines(os.getenv("SERVERLORD_BENCH_IDS")) do ids[#ids + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/ping/" .. ids[math.random(#ids)])
end
"""

REQUEST_LIMIT = 50_000_000
"""Most requests the built-in client sends in one run, whatever the time."""


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of latencies in ms (all zero for no values)."""
    if not values:
        return {"p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]

    return {
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "max_ms": ordered[-1],
    }


def run_wrk(
    url: str, ids: list[str], seconds: float, connections: int
) -> dict[str, float]:
    """wrk with 2 threads; ``ids`` are the checks pinged at random."""
    with tempfile.TemporaryDirectory(prefix="serverlord-wrk-") as folder:
        script = Path(folder) / "ping.lua"
        script.write_text(WRK_SCRIPT)
        ids_file = Path(folder) / "ids.txt"
        ids_file.write_text("\n".join(ids) + "\n")
        env = dict(os.environ, SERVERLORD_BENCH_IDS=str(ids_file))
        done = subprocess.run(
            [
                "wrk",
                f"-t{min(2, connections)}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=seconds + 60,
        )
    if done.returncode != 0:
        raise CommandError(f"wrk failed: {done.stderr.strip() or done.stdout}")
    return parse_wrk(done.stdout)


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if found is None:
        raise CommandError(f"cannot read wrk's latency {text!r}")
    value, unit = found.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out: str) -> dict[str, float]:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    latency = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    if rate is None or total is None or latency is None:
        raise CommandError(f"cannot read wrk's report:\n{out}")
    result = {"max_ms": _ms(latency[1])}
    for pct in ("50", "90", "99"):
        found = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+\w+)", out)
        result[f"p{pct}_ms"] = _ms(found[1]) if found else 0.0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    errors = int(non_2xx[1]) if non_2xx else 0
    if sock:
        errors += sum(int(n) for n in sock.groups())
    requests = int(total[1])
    return {
        "requests": float(requests),
        "ok_per_s": float(rate[1])
        * (requests - min(errors, requests))
        / max(requests, 1),
        "errors": float(errors),
        **result,
    }


async def builtin_load(
    port: int,
    ids: list[str],
    seconds: float,
    connections: int,
    rate: float | None = None,
    host: str = "127.0.0.1",
) -> dict[str, float]:
    """Keep-alive connections sending pings; at ``rate`` per second in all, or
    flat out when None."""
    latencies: list[float] = []
    errors = 0
    began = time.monotonic()
    stop = began + seconds
    interval = connections / rate if rate else 0.0

    async def connection(index: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        due = began + (interval * index / connections if interval else 0.0)
        try:
            while time.monotonic() < stop and len(latencies) < REQUEST_LIMIT:
                if interval:
                    due += interval
                    wait = due - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                sent = time.perf_counter()
                writer.write(
                    f"GET /ping/{random.choice(ids)} HTTP/1.1\r\n"
                    f"Host: {host}\r\n\r\n".encode()
                )
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                latencies.append((time.perf_counter() - sent) * 1000)
                if head[9:12] != b"200":
                    errors += 1
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
        finally:
            writer.close()

    await asyncio.wait_for(
        asyncio.gather(*(connection(i) for i in range(connections))),
        seconds + 30,
    )
    elapsed = time.monotonic() - began
    return {
        "requests": float(len(latencies)),
        "ok_per_s": (len(latencies) - errors) / elapsed,
        "errors": float(errors),
        **percentiles(latencies),
    }


def load(
    port: int,
    ids: list[str],
    seconds: float,
    connections: int,
    rate: float | None = None,
    use_wrk: bool = True,
    host: str = "127.0.0.1",
) -> dict[str, Any]:
    """Flat out with wrk when asked and installed, else the built-in client."""
    if use_wrk and rate is None and have_wrk():
        result: dict[str, Any] = run_wrk(
            f"http://{host}:{port}", ids, seconds, connections
        )
        result["generator"] = "wrk"
    else:
        result = asyncio.run(builtin_load(port, ids, seconds, connections, rate, host))
        result["generator"] = "builtin"
    result["connections"] = connections
    return result
