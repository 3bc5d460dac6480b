"""``memory``: server memory per loaded check, and start-up time with C checks.

The same server starts twice: on an empty store, then on one holding C checks
of the usual mix (each with a deadline, so every one sits in a sweeper's heap).
Memory is the resident set of the serverlord process (not PostgreSQL's) once it
answers pings and has settled; the figure per check is the difference over C.
Start-up is from launching the process to its first answered ping.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from serverlord.bench.setup import populate
from serverlord.bench.target import Target, own_target
from serverlord.errors import CommandError

SETTLE_LIMIT = 30.0


def settled_rss(target: Target) -> int:
    """The resident set once two readings half a second apart agree to 1%."""
    last = target.rss_bytes()
    stop = time.monotonic() + SETTLE_LIMIT
    while time.monotonic() < stop:
        time.sleep(0.5)
        now = target.rss_bytes()
        if abs(now - last) <= now / 100:
            return now
        last = now
    return last


def run(args: argparse.Namespace, target: Target | None) -> dict[str, Any]:
    if target is None:
        raise CommandError("unreachable: memory needs its own server")
    # On PostgreSQL both runs use the one empty database: the empty server
    # has stopped before the checks are written.
    with own_target(target.database_url) as empty:
        empty_startup = empty.start()
        empty_rss = settled_rss(empty)
    written = asyncio.run(populate(target, 0, args.checks, not args.quiet))
    startup = target.start()
    loaded_rss = settled_rss(target)
    per_check = (loaded_rss - empty_rss) / args.checks if args.checks else 0.0
    return {
        "checks": args.checks,
        "setup_s": written["checks_s"],
        "empty_startup_s": empty_startup,
        "startup_s": startup,
        "empty_rss_bytes": empty_rss,
        "loaded_rss_bytes": loaded_rss,
        "bytes_per_check": per_check,
    }


def rows(report: dict[str, Any]) -> list[tuple[str, Any]]:
    mib = 1024 * 1024
    return [
        ("checks loaded", report["checks"]),
        ("empty server memory MiB", report["empty_rss_bytes"] / mib),
        ("loaded server memory MiB", report["loaded_rss_bytes"] / mib),
        ("bytes per loaded check", report["bytes_per_check"]),
        ("start-up, empty s", report["empty_startup_s"]),
        ("start-up, loaded s", report["startup_s"]),
    ]
