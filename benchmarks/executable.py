"""Figures of the one-file executable: its size, cold start, build time and
whether two builds are identical.

Cold start is the time from starting ``serverlord serve`` to the first ping it
answers 200, on a new data folder holding one check: the executable unpacks
itself, imports, opens the store, loads the checks and commits the ping.

Usage:
    python benchmarks/executable.py [--executable dist/serverlord] [--starts 9]
    python benchmarks/executable.py --build   # build twice first, compare bytes

``--build`` runs packaging/build.sh twice into temporary folders, with this
Python, and measures the second of those. The server listens on 127.0.0.1 and
is stopped after each start.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serverlord.bench.target import free_port

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVERLORD_")}
    env.update(extra)
    return env


def build(distpath: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        ["bash", str(ROOT / "packaging" / "build.sh"), "--distpath", str(distpath)],
        cwd=ROOT,
        check=True,
        env=clean_env(PYTHON=sys.executable),
    )
    return time.monotonic() - started


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def answered(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def cold_start(executable: Path, folder: Path) -> float:
    """Seconds from starting the server to its answer to the first ping."""
    data_dir = folder / "data"
    added = subprocess.run(
        [str(executable), "check", "add", "bench", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env=clean_env(SERVERLORD_DATA_DIR=str(data_dir)),
    )
    check_id = json.loads(added.stdout)["uuid"]
    port = free_port()
    command = [
        str(executable),
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    with (folder / "serve.log").open("wb") as log:
        started = time.monotonic()
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=clean_env()
        )
        try:
            while not answered(port, f"/ping/{check_id}"):
                if (
                    server.poll() is not None
                    or time.monotonic() - started > START_TIMEOUT
                ):
                    raise RuntimeError(f"no answer: see {folder / 'serve.log'}")
                time.sleep(0.005)
            return time.monotonic() - started
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executable", type=Path, default=ROOT / "dist" / "serverlord")
    parser.add_argument("--starts", type=int, default=9)
    parser.add_argument("--build", action="store_true", help="build twice first")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="serverlord-bench-") as tmp:
        executable = args.executable
        if args.build:
            seconds = [build(Path(tmp) / f"build{i}") for i in (1, 2)]
            first, second = (Path(tmp) / f"build{i}" / "serverlord" for i in (1, 2))
            same = digest(first) == digest(second)
            print(f"build time: {seconds[0]:.1f} s, {seconds[1]:.1f} s")
            print(f"two builds identical: {same} (sha256 {digest(second)[:16]}…)")
            executable = second

        size = executable.stat().st_size
        version = subprocess.run(
            [str(executable), "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        print(f"{version}: {size:,} bytes ({size / 2**20:.1f} MiB)")

        starts = []
        for i in range(args.starts):
            folder = Path(tmp) / f"start{i}"
            folder.mkdir()
            starts.append(cold_start(executable, folder))
        print(
            f"cold start to first ping answered, {len(starts)} starts: "
            f"median {statistics.median(starts):.2f} s, "
            f"min {min(starts):.2f} s, max {max(starts):.2f} s"
        )


if __name__ == "__main__":
    main()
