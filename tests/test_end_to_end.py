"""The real executable over real sockets: ``serverlord serve`` as a subprocess,
checks added with the CLI, pings sent with curl, the server killed and restarted.

Each test runs on SQLite and on a real PostgreSQL (see conftest).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from serverlord.config import LEGACY_VARIABLES
from tests.database import Database

pytestmark = pytest.mark.slow

START_TIMEOUT = 20.0
PERIOD, GRACE = 2.0, 1.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any variable serverlord or asyncpg would read."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SERVERLORD_", "PG")) and name not in LEGACY_VARIABLES
    }
    env.update(extra)
    return env


@dataclass
class ServerProcess:
    """One ``serverlord serve`` subprocess writing its log to a file."""

    data_dir: Path
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    """SERVERLORD_* variables the server gets; none other is passed on."""
    args: list[str] = field(default_factory=list)
    """More arguments of ``serve``."""
    command: tuple[str, ...] = (sys.executable, "-m", "serverlord")
    """How serverlord is run: this Python's package, or a built executable."""
    _log: Any = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> ServerProcess:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                *self.command,
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                *self.args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=clean_env(**self.env),
            # A group of its own, killed whole by cleanup(): the executable's
            # bootloader runs the server as a child that outlives a kill -9
            # of the bootloader.
            start_new_session=True,
        )
        return self

    def wait_ready(self) -> None:
        assert self.proc is not None
        end = time.monotonic() + START_TIMEOUT
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"serverlord exited with {self.proc.returncode}:\n" + self.log()
                )
            if "listening on" in self.log() and self._answers():
                return
            time.sleep(0.05)
        pytest.fail("serverlord did not start in time:\n" + self.log())

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/api/health", timeout=1):
                return True
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)
        code = self.proc.wait(timeout=15)
        self._close_log()
        return code

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # The group's leader runs still, so the group is this server's.
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def start_server(
    servers: list[ServerProcess], database: Database, port: int, name: str
) -> ServerProcess:
    log_path = database.data_dir.parent / f"{name}.log"
    server = ServerProcess(database.data_dir, port, log_path, env=database.env())
    servers.append(server.start())
    return server


def cli(
    database: Database, base_url: str, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serverlord", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(**database.env(), SERVERLORD_BASE_URL=base_url),
    )


def add_check(database: Database, base_url: str, name: str, *args: str) -> Any:
    result = cli(database, base_url, "check", "add", name, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def curl(url: str, body: str | None = None) -> tuple[int, str]:
    """The status and body of one ping sent by curl; status 0 if none came."""
    command = ["curl", "-s", "-m", "5", "-w", "\n%{http_code}", url]
    if body is not None:
        command += ["--data-binary", body]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    text, _, code = done.stdout.rpartition("\n")
    return int(code or 0), text


@dataclass
class Pinger:
    """A thread pinging one check with curl until a ping is not answered 200."""

    url: str
    name: str
    limit: int
    acked: list[str] = field(default_factory=list)
    sent: int = 0
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for i in range(self.limit):
            body = f"{self.name}-{i}"
            self.sent += 1
            status, _ = curl(self.url, body)
            if status != 200:
                return
            self.acked.append(body)

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def wait_for_down_flip(database: Database, check_id: str, until: float) -> float | None:
    """Poll the store until the check has a down flip; the time it was seen."""
    while time.time() < until:
        rows = database.query(
            "SELECT 1 FROM flips WHERE check_id = ? AND new_status = 'down'",
            check_id,
        )
        if rows:
            return time.time()
        time.sleep(0.02)
    return None


def test_a_late_check_goes_down_in_time_and_no_acknowledged_ping_is_lost(
    database: Database, servers: list[ServerProcess]
) -> None:
    port = free_port()
    server = start_server(servers, database, port, "first")
    server.wait_ready()
    base = server.base_url

    # A 2 s check with 1 s of grace, added with the CLI while the server runs.
    check = add_check(database, base, "e2e", "--period", "2s", "--grace", "1s")
    assert (check["timeout"], check["grace"]) == (PERIOD, GRACE)
    assert check["ping_url"] == f"{base}/ping/{check['uuid']}"

    for _ in range(3):
        assert curl(check["ping_url"]) == (200, "OK")
        time.sleep(0.2)
    shown = json.loads(
        cli(database, base, "check", "show", check["uuid"], "--json").stdout
    )
    assert (shown["status"], shown["n_pings"], len(shown["pings"])) == ("up", 3, 3)

    # Stop pinging: down within 1 s after the deadline, and not before it.
    [(last_ping,)] = database.query(
        "SELECT last_ping FROM checks WHERE id = ?", check["uuid"]
    )
    deadline = last_ping + PERIOD + GRACE
    seen = wait_for_down_flip(database, check["uuid"], deadline + 5)
    assert seen is not None, server.log()
    assert seen <= deadline + 1.0
    [(at, detected, reason)] = database.query(
        "SELECT at, detected, reason FROM flips WHERE check_id = ? "
        "AND new_status = 'down'",
        check["uuid"],
    )
    assert at == pytest.approx(deadline, abs=0.001)
    assert reason == "missed"
    assert 0 <= detected - at < 1.0

    # One more ping brings it up.
    assert curl(check["ping_url"]) == (200, "OK")
    shown = json.loads(
        cli(database, base, "check", "show", check["uuid"], "--json").stdout
    )
    assert shown["status"] == "up"
    assert [(f["old_status"], f["new_status"]) for f in shown["flips"][:2]] == [
        ("down", "up"),
        ("up", "down"),
    ]

    # Under a stream of pings, kill -9 the server and start it again.
    others = [
        add_check(database, base, f"stream {i}", "--period", "1h") for i in range(3)
    ]
    targets = [check, *others]
    before = {c["uuid"]: n for c, n in zip(targets, [4, 0, 0, 0], strict=True)}
    # Fewer pings per check than the store keeps, so none is pruned.
    pingers = [Pinger(c["ping_url"], f"p{i}", limit=80) for i, c in enumerate(targets)]
    for pinger in pingers:
        pinger.start()
    end = time.monotonic() + 20
    while sum(len(p.acked) for p in pingers) < 60 and time.monotonic() < end:
        time.sleep(0.005)
    assert server.signal(signal.SIGKILL) == -signal.SIGKILL
    for pinger in pingers:
        pinger.join()
    assert sum(len(p.acked) for p in pingers) >= 60
    assert any(p.sent > len(p.acked) for p in pingers), "the kill came too late"

    restarted = start_server(servers, database, port, "second")
    restarted.wait_ready()
    assert "4 checks loaded" in restarted.log()

    for target, pinger in zip(targets, pingers, strict=True):
        [(n_pings,)] = database.query(
            "SELECT n_pings FROM checks WHERE id = ?", target["uuid"]
        )
        bodies = {
            row[0].decode()
            for row in database.query(
                "SELECT body FROM pings WHERE check_id = ?", target["uuid"]
            )
        }
        assert set(pinger.acked) <= bodies
        assert (
            before[target["uuid"]] + len(pinger.acked)
            <= n_pings
            <= before[target["uuid"]] + pinger.sent
        )

    # The restarted server takes pings, and SIGTERM stops it cleanly.
    assert curl(check["ping_url"]) == (200, "OK")
    assert restarted.signal(signal.SIGTERM) == 0
    log = restarted.log()
    assert "stopping on SIGTERM" in log and "serverlord stopped" in log
    assert "Traceback" not in log


@pytest.fixture
def running(database: Database, servers: list[ServerProcess]) -> ServerProcess:
    """A server on a free port over a store that already holds two checks."""
    for name in ("one", "two"):
        assert cli(database, "http://127.0.0.1", "check", "add", name).returncode == 0
    server = start_server(servers, database, free_port(), "server")
    server.wait_ready()
    return server


def test_the_start_up_log_says_where_it_listens_the_store_and_the_checks_loaded(
    running: ServerProcess, database: Database
) -> None:
    log = running.log()

    assert f"listening on http://127.0.0.1:{running.port}" in log
    assert f"store {database.url}," in log
    assert "2 checks loaded" in log


def test_sigterm_stops_the_server_cleanly_with_exit_code_0(
    running: ServerProcess,
) -> None:
    code = running.signal(signal.SIGTERM)

    log = running.log()
    assert code == 0
    assert "stopping on SIGTERM" in log and "serverlord stopped" in log
    assert "Traceback" not in log


def test_a_second_server_on_a_busy_port_fails_clearly_without_a_traceback(
    running: ServerProcess, database: Database
) -> None:
    server = running

    second = subprocess.run(
        [sys.executable, "-m", "serverlord", "serve", "--port", str(server.port)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(**database.env()),
    )

    assert second.returncode != 0
    assert "Traceback" not in second.stderr
    assert "address already in use" in second.stderr
    assert str(server.port) in second.stderr
    assert server.proc is not None and server.proc.poll() is None
