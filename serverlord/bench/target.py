"""The server a scenario measures: one the bench starts, or one already running.

A started server listens on 127.0.0.1 on a free port, keeps its data in a fresh
temporary folder (or in the PostgreSQL database of ``--database-url``) and is
stopped, and its folder removed, when the scenario ends, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from serverlord.errors import CommandError
from serverlord.store import Store

START_TIMEOUT = 300.0
"""Longest wait for a started server to answer its first ping."""
STOP_TIMEOUT = 30.0


def serverlord_command(*argv: str) -> list[str]:
    """The command line that runs serverlord again with ``argv``: the one-file
    executable runs itself, an installed package runs through this Python."""
    if getattr(sys, "frozen", False):
        return [sys.executable, *argv]
    return [sys.executable, "-m", "serverlord", *argv]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str, timeout: float = 2.0) -> int:
    """The status of one GET on 127.0.0.1, raising OSError when none came."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        head = sock.recv(64)
    if not head.startswith(b"HTTP/1.1 "):
        raise OSError(f"not an HTTP answer: {head[:20]!r}")
    return int(head[9:12])


@dataclass
class Target:
    """Where the scenario's store lives and how its server is reached."""

    data_dir: Path
    database_url: str = ""
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "serverlord.sqlite3"

    def open_store(self) -> Store:
        """The store of this target, unopened (the server must not be running
        for SQLite writes of a scenario's set-up)."""
        from serverlord.store.sqlite import SqliteStore

        if self.database_url:
            from serverlord.store.postgres import PostgresStore

            return PostgresStore(self.database_url)
        return SqliteStore(self.sqlite_path)

    def start(self) -> float:
        """Start ``serverlord serve``; return seconds until it answered a ping."""
        self.port = free_port()
        command = serverlord_command(
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            "error",
            # The bench pings a few checks many times a second: the per-check
            # limit against runaway loops would answer 429 to its own traffic.
            "--ping-rate-limit",
            "0",
            *self.extra,
        )
        if self.database_url:
            command += ["--database-url", self.database_url]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        began = time.monotonic()
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        probe = f"/ping/{uuid.uuid4()}"
        while time.monotonic() - began < START_TIMEOUT:
            if self.process.poll() is not None:
                raise CommandError(
                    f"serverlord serve exited with status {self.process.returncode}"
                    " before it answered a ping"
                )
            try:
                http_get(self.port, probe, timeout=5.0)
                return time.monotonic() - began
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise CommandError(f"serverlord serve did not answer within {START_TIMEOUT} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def rss_bytes(self) -> int:
        """Resident memory of the started server, from /proc."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise CommandError("cannot read the server's memory from /proc")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the started server so far."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)
        parts = fields[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def own_target(
    database_url: str = "", extra: list[str] | None = None
) -> Iterator[Target]:
    """A fresh target whose server and folder are gone when the block ends."""
    data_dir = Path(tempfile.mkdtemp(prefix="serverlord-bench-"))
    target = Target(data_dir, database_url, extra=list(extra or []))
    try:
        yield target
    finally:
        target.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
