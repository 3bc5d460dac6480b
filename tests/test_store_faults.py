"""SQLite store faults through a live server on a real socket.

A full disk (SQLite's own SQLITE_FULL, made real by ``PRAGMA max_page_count``
on the writer's connection) and a write lock held by another process: pings
get 503 with Retry-After while it lasts, the log says so once and once more
when it ends, no acknowledged ping is lost, none refused is stored, and the
server recovers without help.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from serverlord.checks import Check
from serverlord.config import Settings
from serverlord.schedules import Schedule
from serverlord.store.base import StoreUnavailableError
from serverlord.store.sqlite import SqliteStore
from tests.conftest import Live
from tests.database import Database
from tests.test_end_to_end import ServerProcess, add_check, curl, free_port

DISK_FULL_CYCLES = 5
LOCK_CYCLES = 2
BODY = b"x" * 3000
SQLITE_DEFAULT_MAX_PAGES = 1073741823

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The pingers here send without pause: no rate limit in their way.
    return Settings(data_dir=tmp_path, shards=4, ping_rate_limit=0)


async def add_checks(live: Live, count: int) -> list[Check]:
    checks = []
    for n in range(count):
        check = Check(
            id=str(uuid.uuid4()),
            name=f"job {n}",
            created=time.time(),
            schedule=Schedule.simple(86400.0),
            grace=3600.0,
        )
        await live.store.add_check(check)
        checks.append(check)
    return checks


async def set_max_pages(live: Live, pages: int) -> None:
    """Set the writer connection's page limit; SQLite clamps it to the file.

    The pragma shares its batch with pings. When one of those fails on a full
    disk the rest of the batch does not run, so it is sent again until it
    ran; having run, it holds even though its batch was rolled back.
    """
    store = live.store
    assert isinstance(store, SqliteStore)
    ran = False

    def limit(conn: sqlite3.Connection) -> None:
        nonlocal ran
        conn.execute(f"PRAGMA max_page_count = {pages}")
        ran = True

    while not ran:
        with contextlib.suppress(StoreUnavailableError):
            await store._write(limit)


class Pinger:
    """Clients pinging checks without pause, counting every answer."""

    def __init__(self, live: Live, checks: list[Check]) -> None:
        self.live = live
        self.checks = checks
        self.acknowledged: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.refusals: list[httpx.Response] = []
        self.running = True

    async def run(self, check: Check) -> None:
        url = f"/ping/{check.id}"
        while self.running:
            resp = await self.live.client.post(url, content=BODY, timeout=30)
            self.statuses[resp.status_code] += 1
            if resp.status_code == 200:
                self.acknowledged[check.id] += 1
            else:
                self.refusals.append(resp)
                await asyncio.sleep(0.01)

    @contextlib.asynccontextmanager
    async def pinging(self) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(self.run(check)) for check in self.checks]
        try:
            yield
        finally:
            self.running = False
            await asyncio.gather(*tasks)

    async def until(self, status: int, at_least: int = 1) -> None:
        start = self.statuses[status]
        for _ in range(3000):
            if self.statuses[status] - start >= at_least:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {status} answer came: {self.statuses}")


async def stored_counts(live: Live, checks: list[Check]) -> dict[str, int]:
    counts = {}
    for check in checks:
        stored = await live.store.get_check(check.id)
        assert stored is not None
        counts[check.id] = stored.n_pings
    return counts


def fault_lines(caplog: pytest.LogCaptureFixture, action: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if getattr(record, "action", None) == action
    ]


async def test_a_full_disk_answers_503_loses_no_acknowledged_ping_and_recovers(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    checks = await add_checks(live, 4)
    pinger = Pinger(live, checks)
    caplog.set_level(logging.INFO)
    async with pinger.pinging():
        for _ in range(DISK_FULL_CYCLES):
            await pinger.until(200, 20)
            await set_max_pages(live, 1)  # clamped to the pages in use: full
            await pinger.until(503, 8)
            await set_max_pages(live, SQLITE_DEFAULT_MAX_PAGES)
        await pinger.until(200, 20)

    assert await stored_counts(live, checks) == dict(pinger.acknowledged)
    assert set(pinger.statuses) == {200, 503}
    for refused in pinger.refusals:
        assert refused.text == "store unavailable, try again"
        assert refused.headers["retry-after"] == "1"
    # SQLite reuses pages that pruned pings freed, so a full disk may let a
    # batch through now and then: a line each time it starts and ends.
    failed = fault_lines(caplog, "store_write_failed")
    recovered = fault_lines(caplog, "store_write_failed_recovered")
    assert DISK_FULL_CYCLES <= len(failed) == len(recovered)
    assert len(failed) < pinger.statuses[503]
    assert all("database or disk is full" in line for line in failed)


def hold_write_lock(path: Path) -> subprocess.Popen[str]:
    """Another process that takes the database's write lock and keeps it."""
    script = (
        "import sqlite3, sys\n"
        # A long wait: the server's writer, busy with pings, may hold the
        # lock in turns for a while before this process gets it.
        "conn = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)\n"
        "conn.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
        "conn.execute('ROLLBACK')\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


def release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.wait(timeout=10) == 0


async def test_a_write_lock_held_by_another_process_answers_503_then_recovers(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    store = live.store
    assert isinstance(store, SqliteStore)
    checks = await add_checks(live, 2)
    pinger = Pinger(live, checks)
    caplog.set_level(logging.INFO)
    async with pinger.pinging():
        for _ in range(LOCK_CYCLES):
            await pinger.until(200, 10)
            holder = await asyncio.to_thread(hold_write_lock, store.path)
            try:
                # The writer waits out SQLite's busy timeout, then gives up.
                await pinger.until(503, 2)
            finally:
                await asyncio.to_thread(release, holder)
        await pinger.until(200, 10)

    assert await stored_counts(live, checks) == dict(pinger.acknowledged)
    assert set(pinger.statuses) == {200, 503}
    for refused in pinger.refusals:
        assert refused.headers["retry-after"] == "1"
    failed = fault_lines(caplog, "store_write_failed")
    assert len(failed) == LOCK_CYCLES
    assert all("database is locked" in line for line in failed)
    assert len(fault_lines(caplog, "store_write_failed_recovered")) == LOCK_CYCLES


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs of its own, for a disk that really fills up."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(path: Path) -> None:
    # Unbuffered: a buffered file would hold back what did not fit and raise
    # ENOSPC again when the block closes it.
    with path.open("wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_really_full_disk_answers_503_and_the_server_recovers_when_space_returns(
    small_disk: Path, servers: list[ServerProcess]
) -> None:
    database = Database(small_disk / "data", "")
    port = free_port()
    check = add_check(database, f"http://127.0.0.1:{port}", "backup")
    server = ServerProcess(small_disk / "data", port, small_disk.parent / "log")
    servers.append(server)
    server.start()
    server.wait_ready()
    url = f"{server.base_url}/ping/{check['uuid']}"
    codes: Counter[int] = Counter()

    for _ in range(DISK_FULL_CYCLES):
        codes.update(curl(url, "x" * 2000)[0] for _ in range(5))
        fill(small_disk / "filler")
        # SQLite may still commit into space its files already hold (a WAL
        # that starts over): go on until the disk refuses.
        refused = 0
        for _ in range(100):
            code = curl(url, "x" * 2000)[0]
            codes[code] += 1
            refused += code == 503
            if refused == 3:
                break
        (small_disk / "filler").unlink()
        assert refused == 3
    codes.update(curl(url, "x" * 2000)[0] for _ in range(5))

    stored = database.query("SELECT n_pings FROM checks WHERE id = ?", check["uuid"])[
        0
    ][0]
    assert stored == codes[200]
    assert set(codes) == {200, 503}
    log = server.log()
    failed = log.count('"action": "store_write_failed"')
    recovered = log.count('"action": "store_write_failed_recovered"')
    assert DISK_FULL_CYCLES <= failed == recovered
    assert "sqlite store refuses writes: database or disk is full" in log
    assert "Traceback" not in log
