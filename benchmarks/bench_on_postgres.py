"""Run ``serverlord bench`` scenarios on a throwaway PostgreSQL.

Starts a PostgreSQL cluster of its own (initdb/pg_ctl on 127.0.0.1, as the
postgres user when run as root, as the tests do), gives each scenario a fresh
empty database, and stops the cluster at the end. Everything after ``--`` is
one scenario's arguments; ``;`` separates scenarios.

Usage: python benchmarks/bench_on_postgres.py OUT_DIR -- ingest --seconds 5 \\
       ';' lag --checks 100000
Each scenario's JSON report goes to OUT_DIR/postgres-<scenario>-<n>.json.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.postgres import Cluster


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    runs: list[list[str]] = [[]]
    for word in sys.argv[3:]:
        if word == ";":
            runs.append([])
        else:
            runs[-1].append(word)

    cluster = Cluster.start()
    try:
        for n, argv in enumerate(runs):
            database = asyncio.run(cluster.create_database())
            command = [
                sys.executable,
                "-m",
                "serverlord",
                "bench",
                *argv,
                "--database-url",
                cluster.url(database),
                "--json",
                "--quiet",
            ]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return done.returncode
            path = out / f"postgres-{argv[0]}-{n}.json"
            path.write_text(done.stdout)
            print(f"wrote {path}")
            asyncio.run(cluster.drop_database(database))
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
