"""Ping throughput with telemetry off and on, side by side in one run.

Creates C checks in a fresh SQLite store, then for each round starts
``serverlord serve`` once per configuration, in turn, and loads it with wrk
(64 connections, T seconds, random checks):

- off: ``--metrics false`` and no OTEL_* variables: nothing is measured;
- metrics: the default, /metrics scraped every 5 s during the load;
- otlp: metrics and traces sent every second to an OTLP/HTTP sink on
  127.0.0.1 that this script runs, /metrics scraped too (pings untraced);
- otlp+pings: the same with ``--trace-pings 1``: every ping is a span.

The rounds interleave the configurations so that the noise of a shared
machine falls on all of them alike; the figures are medians over the rounds.
CPU per request is the server process's user+system time over the requests
it answered, the steadier figure on a busy box. Then, in-process, the cost
per ping of the measurement itself and of the tracing wrapper's pass-through.

Usage: python benchmarks/telemetry_load.py [--checks 10000] [--seconds 8]
       [--rounds 3] [--json]
Everything it starts listens on 127.0.0.1 and stops when the run ends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from serverlord.bench.ingest import stored_ids
from serverlord.bench.load import run_wrk
from serverlord.bench.setup import populate
from serverlord.bench.target import Target, free_port

CONFIGS: dict[str, tuple[list[str], bool]] = {
    "off": (["--metrics", "false"], False),
    "metrics": ([], False),
    "otlp": ([], True),
    "otlp+pings": (["--trace-pings", "1"], True),
}
"""Extra flags, and whether OTLP export goes to the local sink."""
SCRAPE_EVERY = 5.0


class Sink:
    """An OTLP/HTTP endpoint that takes everything and counts the bytes."""

    def __init__(self) -> None:
        self.received: dict[str, int] = {}
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", 0))
                self.rfile.read(size)
                sink.received[self.path] = sink.received.get(self.path, 0) + size
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_server(
    data_dir: Path, port: int, flags: list[str], otlp: str | None
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if otlp is not None:
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp,
            OTEL_METRIC_EXPORT_INTERVAL="1000",
            OTEL_BSP_SCHEDULE_DELAY="1000",
        )
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
        *flags,
    ]
    proc = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("serverlord did not start within 60 s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape_while(port: int, stop: threading.Event) -> None:
    while not stop.wait(SCRAPE_EVERY):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5):
                pass
        except OSError:
            # /metrics is off in that configuration.
            return


def one_run(
    data_dir: Path, ids: list[str], config: str, seconds: int, sink: Sink
) -> dict[str, float]:
    flags, otlp = CONFIGS[config]
    port = free_port()
    server = start_server(data_dir, port, flags, sink.url if otlp else None)
    stop = threading.Event()
    scraper = threading.Thread(target=scrape_while, args=(port, stop), daemon=True)
    try:
        time.sleep(1.0)
        cpu_before = cpu_seconds(server.pid)
        scraper.start()
        load = run_wrk(f"http://127.0.0.1:{port}", ids, seconds, 64)
        cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        stop.set()
        server.terminate()
        server.wait(30)
    load["cpu_us_per_request"] = cpu / max(load["requests"], 1) * 1e6
    return load


def micro() -> dict[str, float]:
    """In-process cost per ping of the meter and of the tracing pass-through."""
    from opentelemetry.sdk.trace import TracerProvider

    from serverlord.telemetry.meters import PingMeter
    from serverlord.telemetry.tracing import traced_http

    meter = PingMeter()
    n = 200_000
    # The measured route adds one perf_counter() and the meter's call.
    measured = timeit.timeit(
        lambda: meter.ping(None, 200, time.perf_counter()),
        number=n,
        timer=time.thread_time,
    )

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    tracer = TracerProvider().get_tracer("bench")
    wrapped = traced_http(app, tracer, 0.0)
    scope = {"type": "http", "path": "/ping/x", "method": "GET", "headers": []}

    async def calls(target: Any) -> float:
        began = time.thread_time()
        for _ in range(n):
            await target(scope, None, None)
        return time.thread_time() - began

    direct = asyncio.run(calls(app))
    through = asyncio.run(calls(wrapped))
    return {
        "meter_us_per_ping": measured / n * 1e6,
        "trace_passthrough_us_per_ping": (through - direct) / n * 1e6,
        **asgi_pings(tracer),
    }


def asgi_pings(tracer: Any, n: int = 20_000) -> dict[str, float]:
    """µs per ping through the whole application as serve runs it (the ping
    fast path in front of Litestar), the store left out."""
    from serverlord.http.app import create_app
    from serverlord.http.fast_ping import PingFastPath
    from serverlord.http.ping import PingService
    from serverlord.telemetry.meters import PingMeter
    from serverlord.telemetry.tracing import traced_http

    async def ingest(ping: Any) -> None:
        return None

    def app_with(meter: PingMeter | None) -> Any:
        service = PingService(ingest, 100_000, False, meter=meter)
        return PingFastPath(create_app(service, 10**7), service)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/ping/0b9d3c5e-1111-4222-8333-944455556666",
        "raw_path": b"/ping/0b9d3c5e-1111-4222-8333-944455556666",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    async def per_ping(app: Any) -> float:
        for _ in range(2000):
            await app(dict(scope), receive, send)
        # CPU time of this thread: what other processes do to the box does
        # not count, as it would in wall-clock time.
        began = time.thread_time()
        for _ in range(n):
            await app(dict(scope), receive, send)
        return (time.thread_time() - began) / n * 1e6

    async def all_of() -> dict[str, float]:
        # Interleaved, best of five.
        apps = {
            "asgi_off_us": app_with(None),
            "asgi_metrics_us": app_with(PingMeter()),
            "asgi_metrics_traced_wrapper_us": traced_http(
                app_with(PingMeter()), tracer, 0.0
            ),
        }
        best = dict.fromkeys(apps, float("inf"))
        for _ in range(5):
            for name, app in apps.items():
                best[name] = min(best[name], await per_ping(app))
        return best

    return asyncio.run(all_of())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("this benchmark needs wrk (Debian package wrk)")

    data_dir = Path(tempfile.mkdtemp(prefix="serverlord-telemetry-bench-"))
    target = Target(data_dir)
    asyncio.run(populate(target, 0, args.checks, shown=False))
    steady = asyncio.run(stored_ids(target))
    sink = Sink()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
    try:
        for _ in range(args.rounds):
            for config in CONFIGS:
                runs[config].append(
                    one_run(data_dir, steady, config, args.seconds, sink)
                )
    finally:
        sink.close()
        shutil.rmtree(data_dir)

    figures = {
        config: {
            key: statistics.median(run[key] for run in results)
            for key in ("ok_per_s", "cpu_us_per_request", "p50_ms", "p99_ms")
        }
        for config, results in runs.items()
    }
    report = {
        "checks": args.checks,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "figures": figures,
        "runs": runs,
        "otlp_bytes_received": sink.received,
        "in_process": micro(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    off = figures["off"]
    print(f"{'telemetry':<12} {'pings/s':>8} {'vs off':>7} {'CPU µs/ping':>12} "
          f"{'p50 ms':>7} {'p99 ms':>7}")  # fmt: skip
    for config, row in figures.items():
        ratio = row["ok_per_s"] / off["ok_per_s"]
        print(
            f"{config:<12} {row['ok_per_s']:>8,.0f} {ratio:>7.1%} "
            f"{row['cpu_us_per_request']:>12.1f} {row['p50_ms']:>7.2f} "
            f"{row['p99_ms']:>7.2f}"
        )
    costs = report["in_process"]
    print(
        f"in process: the meter costs {costs['meter_us_per_ping']:.2f} µs per ping, "
        "the tracing wrapper's pass-through "
        f"{costs['trace_passthrough_us_per_ping']:.2f} µs"
    )
    print(
        "in process, whole app without the store, µs per ping: "
        f"off {costs['asgi_off_us']:.1f}, metrics {costs['asgi_metrics_us']:.1f}, "
        f"metrics and tracing on {costs['asgi_metrics_traced_wrapper_us']:.1f}"
    )
    print(f"OTLP bytes received by the sink: {sink.received}")


if __name__ == "__main__":
    main()
