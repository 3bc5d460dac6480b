"""``serverlord bench``: load a server and report how it held up.

One module per scenario (setup, ingest, lag, wave, memory); each returns a
report (a dict, printed as a table or as JSON) from ``run(args, target)``,
where the target is a server the bench starts on 127.0.0.1 with a fresh store,
or None when ``--url`` names a running one. Everything the bench starts stops
when the scenario ends, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
from typing import Any
from urllib.parse import urlsplit

from serverlord.config import Settings
from serverlord.errors import UsageError

SCENARIOS = {
    "setup": "create users and checks of a realistic mix of schedules",
    "ingest": "durable pings/s and latency, as a share of a bare responder",
    "lag": "detection lag of silent checks while pings keep coming",
    "wave": "K checks due at the same instant: until flipped, until alerted",
    "memory": "server memory per loaded check and start-up time",
    "responder": "a bare HTTP responder answering OK on --port until stopped "
    "(ingest's yardstick, for your own load tools)",
}
OVER_URL = ("setup", "ingest")
"""Scenarios that can load a running server; the others read its store."""

LIMITS = {
    "users": (0, 10_000_000),
    "checks": (0, 10_000_000),
    "seconds": (1, 3600),
    "rounds": (1, 100),
    "lag_checks": (1, 1_000_000),
    "wave": (1, 10_000_000),
}


def _connections(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers"
        ) from None
    if not counts or any(not 1 <= n <= 10_000 for n in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: each count must be 1-10000")
    return counts


def add_bench_command(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="load a server and report how it held up",
        description="Load serverlord and report how it held up. By default "
        "each scenario starts its own server on 127.0.0.1 with a fresh SQLite "
        "store in a temporary folder (PostgreSQL with --database-url, which "
        "must name an empty database) and stops it at the end. "
        + "; ".join(f"{name}: {text}" for name, text in SCENARIOS.items()),
    )
    bench.add_argument(
        "scenario",
        choices=list(SCENARIOS),
        metavar="SCENARIO",
        help=", ".join(SCENARIOS),
    )
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    bench.add_argument("--url", help="a running server to load (setup, ingest)")
    bench.add_argument("--api-key", help="API key of the project --url loads")
    bench.add_argument(
        "--port",
        dest="responder_port",
        type=int,
        default=None,
        help="responder: the port on 127.0.0.1 to answer on",
    )
    bench.add_argument(
        "--database-url",
        metavar="URL",
        help="an empty PostgreSQL database for the started server",
    )
    bench.add_argument(
        "--users",
        type=int,
        default=10_000,
        help="users to create (setup; default 10000)",
    )
    bench.add_argument(
        "--checks",
        type=int,
        default=None,
        help="checks to create (default: 100000; 10000 for ingest)",
    )
    bench.add_argument(
        "--seconds", type=float, default=10, help="length of each load (default 10)"
    )
    bench.add_argument(
        "--connections",
        type=_connections,
        default=[64],
        metavar="N[,N...]",
        help="concurrent connections, one load per count (default 64)",
    )
    bench.add_argument(
        "--rate",
        type=float,
        default=None,
        help="pings per second in all (built-in client); default: flat out",
    )
    bench.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="ingest: interleaved rounds, medians reported",
    )
    bench.add_argument(
        "--no-wrk",
        action="store_true",
        help="use the built-in load generator even if wrk is installed",
    )
    bench.add_argument(
        "--lag-checks",
        type=int,
        default=1000,
        help="lag: checks that fall silent (default 1000)",
    )
    bench.add_argument(
        "--wave",
        type=int,
        default=10_000,
        help="wave: checks due at once (default 10000)",
    )
    bench.add_argument(
        "--lead",
        type=float,
        default=None,
        help="wave: seconds from writing the checks to their "
        "common deadline (default 5 + 1 per 10000 checks)",
    )
    bench.add_argument(
        "--timeout",
        type=float,
        default=120,
        help="wave: longest wait for the alerts (default 120)",
    )
    bench.set_defaults(run=run_bench)


def check_args(args: argparse.Namespace) -> None:
    """Refuse what cannot run, before anything starts."""
    port = args.responder_port
    if (args.scenario == "responder") != (port is not None):
        raise UsageError("--port goes with the responder, and the responder needs it")
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"--port: {port} is not between 1 and 65,535")
    if args.checks is None:
        args.checks = 10_000 if args.scenario == "ingest" else 100_000
    for name, (low, high) in LIMITS.items():
        value = getattr(args, name)
        if not low <= value <= high:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag}: {value:g} is not between {low:,} and {high:,}")
    if args.rate is not None and not 1 <= args.rate <= 10_000_000:
        raise UsageError(f"--rate: {args.rate:g} is not between 1 and 10,000,000")
    if args.lead is None:
        args.lead = 5 + args.wave / 10_000
    if not 1 <= args.lead <= 3600:
        raise UsageError(f"--lead: {args.lead:g} is not between 1 and 3,600")
    if not 1 <= args.timeout <= 3600:
        raise UsageError(f"--timeout: {args.timeout:g} is not between 1 and 3,600")
    if args.url is not None:
        parts = urlsplit(args.url)
        try:
            port = parts.port  # raises on a port that is no number or too big
        except ValueError:
            port = None
        if parts.scheme != "http" or not parts.hostname or not port:
            raise UsageError(
                f"--url: {args.url!r} must be http://HOST:PORT of a running server"
            )
        if args.scenario not in OVER_URL:
            raise UsageError(
                f"--url: {args.scenario} reads the server's store and memory: "
                f"it runs on its own server only ({', '.join(OVER_URL)} take --url)"
            )
        if not args.api_key:
            raise UsageError(
                "--url needs --api-key: the checks are the key's project's"
            )
        if args.database_url:
            raise UsageError("--url and --database-url: give one of them")
    elif args.api_key:
        raise UsageError("--api-key goes with --url")
    if args.scenario == "ingest" and args.checks < 1:
        raise UsageError("--checks: ingest needs at least 1 check to ping")


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    check_args(args)
    if args.scenario == "responder":
        from serverlord.bench.bare import run_responder

        return run_responder(args.responder_port)
    scenario = importlib.import_module(f"serverlord.bench.{args.scenario}")
    database_url = settings.database_url if args.database_url else ""
    if database_url and not database_url.startswith("postgres"):
        raise UsageError("--database-url: the bench takes a postgresql:// URL only")
    from serverlord.bench.target import own_target

    if args.url is not None:
        report = scenario.run(args, None)
    else:
        with own_target(database_url) as target:
            if database_url:
                _require_empty(target)
            report = scenario.run(args, target)
    report = {"scenario": args.scenario, "machine": machine(), **report}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        from serverlord.bench.results import table

        title = f"serverlord bench {args.scenario}"
        print(table(title, scenario.rows(report)))
    return 0


def _require_empty(target: Any) -> None:
    import asyncio

    from serverlord.store import open_for_command

    async def count() -> int:
        store = target.open_store()
        await open_for_command(store)
        try:
            return int(await store.count_checks())
        finally:
            await store.close()

    held = asyncio.run(count())
    if held:
        raise UsageError(
            f"--database-url: the database holds {held:,} checks already; "
            "the bench needs an empty one"
        )


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "executable": sys.executable,
    }
