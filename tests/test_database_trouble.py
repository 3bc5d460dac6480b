"""``serverlord serve`` when its PostgreSQL goes away and comes back.

These tests stop and start a PostgreSQL cluster of their own, so they never
disturb the one the other tests share.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from serverlord.checks import SHARD_COUNT
from tests.postgres import Cluster
from tests.test_end_to_end import ServerProcess, free_port
from tests.test_shards_processes import add_check, serverlord, wait_for_holders

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = Cluster.start()
    yield started
    started.stop()


@pytest.fixture
async def url(cluster: Cluster) -> AsyncIterator[str]:
    name = await cluster.create_database()
    yield cluster.url(name)
    await cluster.drop_database(name)


@pytest.fixture
def server(tmp_path: Path, url: str) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path / "data",
        free_port(),
        tmp_path / "serve.log",
        # The load pings 20 checks far faster than any job would.
        env={"SERVERLORD_DATABASE_URL": url, "SERVERLORD_PING_RATE_LIMIT": "0"},
    )
    yield process
    process.cleanup()


@dataclass
class Load:
    """Threads pinging checks over and over, counting answers per check."""

    base_url: str
    check_ids: list[str]
    acked: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, count: int = 4) -> None:
        for index in range(count):
            mine = self.check_ids[index::count]
            thread = threading.Thread(target=self._run, args=(mine,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, check_ids: list[str]) -> None:
        while not self.stop.is_set():
            for check_id in check_ids:
                status = ping(f"{self.base_url}/ping/{check_id}")
                self.statuses[status] += 1
                if status == 200:
                    self.acked[check_id] += 1

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def ping(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            status: int = answer.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


async def stored_pings(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT id, n_pings FROM checks")
    finally:
        await conn.close()
    return {row[0]: row[1] for row in rows}


async def test_a_postgresql_restart_under_load_loses_no_acknowledged_ping(
    cluster: Cluster, url: str, server: ServerProcess
) -> None:
    server.start().wait_ready()
    check_ids = [add_check(url, f"job{i}", "--period", "1h")["uuid"] for i in range(20)]
    load = Load(server.base_url, check_ids)
    load.start()
    try:
        await asyncio.sleep(1.0)
        cluster.halt("fast")
        await asyncio.sleep(1.5)
        during = load.statuses.copy()
        cluster.resume()
        # The server finds the database again by itself.
        ok_before = load.statuses[200]
        began = time.monotonic()
        while load.statuses[200] < ok_before + 100:
            assert time.monotonic() - began < 20, f"no recovery: {load.statuses}"
            await asyncio.sleep(0.1)
    finally:
        load.finish()

    stored = await stored_pings(url)
    assert set(load.statuses) <= {200, 503}, load.statuses
    assert during[503] > 0
    for check_id in check_ids:
        assert stored[check_id] >= load.acked[check_id], check_id
    # The shards come back once the ownership connection has reconnected
    # (its back-off reaches 5 s); a busy machine may need a few seconds more.
    try:
        await wait_for_holders(url, [SHARD_COUNT], timeout=20)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; the server said:\n{server.log()[-4000:]}"
        ) from None
    assert "Traceback" not in server.log()


async def test_serve_waits_for_an_unreachable_database_and_starts_when_it_comes(
    cluster: Cluster, url: str, server: ServerProcess
) -> None:
    cluster.halt("fast")
    try:
        server.start()
        began = time.monotonic()
        while "cannot reach the store" not in server.log():
            assert time.monotonic() - began < 20, server.log()
            await asyncio.sleep(0.1)
        assert server.proc is not None and server.proc.poll() is None
    finally:
        cluster.resume()

    server.wait_ready()
    check = add_check(url, "job", "--period", "1h")
    assert ping(f"{server.base_url}/ping/{check['uuid']}") == 200


async def test_a_database_that_does_not_exist_stops_serve_with_a_clear_error(
    cluster: Cluster, tmp_path: Path
) -> None:
    missing = cluster.url("no_such_database")
    process = ServerProcess(
        tmp_path / "data",
        free_port(),
        tmp_path / "serve.log",
        env={"SERVERLORD_DATABASE_URL": missing},
    )
    process.start()
    try:
        assert process.proc is not None
        code = process.proc.wait(timeout=30)
    finally:
        process.cleanup()

    assert code == 1
    assert 'database "no_such_database" does not exist' in process.log()
    assert "Traceback" not in process.log()
    listed = serverlord(missing, "check", "list")
    assert listed.returncode == 1
    assert 'database "no_such_database" does not exist' in listed.stderr
