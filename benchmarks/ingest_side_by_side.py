"""``serverlord bench ingest`` for two checkouts of serverlord, alternating.

On a shared machine the noise between two runs minutes apart is larger than
most changes: this runs the old and the new code in turns (old, new, then
new, old, ...) on the same Python, each round on a fresh store, and prints
the medians of each side. A checkout is chosen by putting it first on
PYTHONPATH, so both need the same dependencies. On PostgreSQL it starts a
throwaway cluster (as tests/postgres.py does) and gives each run a fresh
database.

Usage: python benchmarks/ingest_side_by_side.py OUT_DIR OLD_TREE NEW_TREE \\
       ROUNDS sqlite|postgres -- --checks 10000 --seconds 5 --connections 64
Each run's JSON report goes to OUT_DIR/<backend>-<old|new>-<round>.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.postgres import Cluster


def bench(tree: str, args: list[str]) -> dict[str, Any]:
    # Run from an empty folder: ``python -m`` puts the working folder first
    # on the path, ahead of PYTHONPATH.
    command = [sys.executable, "-m", "serverlord", "bench", "ingest", *args]
    with tempfile.TemporaryDirectory(prefix="serverlord-side-") as folder:
        done = subprocess.run(
            [*command, "--json", "--quiet"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": tree},
            cwd=folder,
        )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def line(report: dict[str, Any]) -> str:
    levels = []
    for level in report["levels"]:
        ours = level["serverlord"]
        levels.append(
            f"{level['connections']} conn {ours['ok_per_s']:,.0f}/s "
            f"p50 {ours['p50_ms']:.1f} p99 {ours['p99_ms']:.1f} ms "
            f"ratio {level['ratio']:.3f}"
        )
    return "; ".join(levels) + f"; {report.get('cpu_us_per_ping', 0):.0f} us CPU/ping"


def medians(reports: list[dict[str, Any]]) -> list[str]:
    lines = []
    for index, level in enumerate(reports[0]["levels"]):

        def median(key: str, index: int = index) -> float:
            return float(
                statistics.median(
                    r["levels"][index]["serverlord"][key] for r in reports
                )
            )

        ratio = statistics.median(r["levels"][index]["ratio"] for r in reports)
        lines.append(
            f"{level['connections']} conn: {median('ok_per_s'):,.0f} pings/s, "
            f"p50 {median('p50_ms'):.1f} ms, p99 {median('p99_ms'):.1f} ms, "
            f"ratio to bare {ratio:.3f}"
        )
    cpu = statistics.median(r.get("cpu_us_per_ping", 0.0) for r in reports)
    lines.append(f"server CPU per ping {cpu:.0f} us")
    return lines


def main() -> int:
    if len(sys.argv) < 7 or sys.argv[6] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    out, old, new = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    rounds, backend, args = int(sys.argv[4]), sys.argv[5], sys.argv[7:]
    out.mkdir(parents=True, exist_ok=True)
    cluster = Cluster.start() if backend == "postgres" else None
    reports: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    try:
        for round_ in range(rounds):
            sides = [("old", old), ("new", new)]
            for side, tree in sides if round_ % 2 == 0 else sides[::-1]:
                extra, database = [], None
                if cluster is not None:
                    # Empty: each checkout migrates it to its own schema.
                    database = asyncio.run(cluster.create_empty_database())
                    extra = ["--database-url", cluster.url(database)]
                report = bench(tree, args + extra)
                if cluster is not None and database is not None:
                    asyncio.run(cluster.drop_database(database))
                (out / f"{backend}-{side}-{round_}.json").write_text(json.dumps(report))
                reports[side].append(report)
                print(f"round {round_} {side}: {line(report)}", flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
    for side, done in reports.items():
        print(f"{side} ({len(done)} runs, medians):")
        for text in medians(done):
            print(f"  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
