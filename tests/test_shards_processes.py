"""Real ``serverlord serve`` processes sharing one PostgreSQL database.

Two servers split the shards; one is killed with SIGKILL and the other takes
its shards over and flips, exactly once, the checks that fell due meanwhile.
``--workers N`` does the same inside one command.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from serverlord.checks import SHARD_COUNT
from serverlord.store.postgres_writes import SHARD_SPACE
from tests.test_end_to_end import (
    ServerProcess,
    clean_env,
    curl,
    free_port,
)

pytestmark = pytest.mark.slow

HANDOVER = 5.0
"""Longest accepted time for one server to take over another's shards."""


def serverlord(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serverlord", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(SERVERLORD_DATABASE_URL=url),
    )


def add_check(url: str, name: str, *args: str) -> Any:
    result = serverlord(url, "check", "add", name, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def start_serve(
    servers: list[ServerProcess], tmp_path: Path, url: str, name: str, *args: str
) -> ServerProcess:
    server = ServerProcess(
        tmp_path / name,
        free_port(),
        tmp_path / f"{name}.log",
        env={"SERVERLORD_DATABASE_URL": url},
        args=list(args),
    )
    servers.append(server.start())
    return server


async def shard_holders(url: str) -> dict[int, int]:
    """How many shards each database session holds, by backend pid."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pid, count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND objsubid = 2 AND granted AND classid = $1::bigint::oid "
            "GROUP BY pid",
            SHARD_SPACE,
        )
    finally:
        await conn.close()
    return {row[0]: row[1] for row in rows}


async def wait_for_holders(url: str, counts: list[int], timeout: float) -> float:
    """Wait until the sessions hold these numbers of shards; return how long."""
    began = time.monotonic()
    while True:
        held = sorted((await shard_holders(url)).values())
        if held == sorted(counts):
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise AssertionError(f"shards held {held}, not {counts}, after {timeout} s")
        await asyncio.sleep(0.05)


async def flips_of(url: str, check_id: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(
            "SELECT at, detected, reason FROM flips WHERE check_id = $1 ORDER BY id",
            check_id,
        )
    finally:
        await conn.close()


HALF = [SHARD_COUNT // 2] * 2


async def test_killing_one_of_two_servers_hands_every_shard_to_the_other(
    tmp_path: Path, postgres_url: str, servers: list[ServerProcess]
) -> None:
    first = start_serve(servers, tmp_path, postgres_url, "first")
    second = start_serve(servers, tmp_path, postgres_url, "second")
    first.wait_ready()
    second.wait_ready()
    await wait_for_holders(postgres_url, HALF, timeout=10)
    checks = [
        add_check(postgres_url, f"job{i}", "--period", "1s", "--grace", "1s")
        for i in range(12)
    ]

    # Every ping goes to the second server; the first sweeps about half of
    # them and dies just before their deadlines.
    for check in checks:
        assert curl(f"{second.base_url}/ping/{check['uuid']}")[0] == 200
    await asyncio.sleep(1.7)
    first.signal(signal.SIGKILL)
    took = await wait_for_holders(postgres_url, [SHARD_COUNT], timeout=HANDOVER)
    await asyncio.sleep(HANDOVER - took)

    flips = {
        check["uuid"]: await flips_of(postgres_url, check["uuid"]) for check in checks
    }
    assert took < HANDOVER
    for check_id, found in flips.items():
        assert [flip["reason"] for flip in found] == ["success", "missed"], check_id
        missed = found[1]
        assert missed["detected"] - missed["at"] < HANDOVER


async def test_workers_share_the_shards_and_a_killed_worker_is_started_again(
    tmp_path: Path, postgres_url: str, servers: list[ServerProcess]
) -> None:
    server = start_serve(servers, tmp_path, postgres_url, "workers", "--workers", "2")
    server.wait_ready()
    await wait_for_holders(postgres_url, HALF, timeout=10)
    check = add_check(postgres_url, "job", "--period", "1h")
    statuses = [curl(f"{server.base_url}/ping/{check['uuid']}")[0] for _ in range(20)]
    assert statuses == [200] * 20

    workers = _children(server.pid)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    began = time.monotonic()
    while workers[0] in _children(server.pid) or len(_children(server.pid)) < 2:
        assert time.monotonic() - began < 10, "the killed worker was not replaced"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    await wait_for_holders(postgres_url, HALF, timeout=10)
    restarted = _children(server.pid)

    assert len(restarted) == 2 and workers[0] not in restarted
    assert "was killed by SIGKILL; starting it again" in server.log()
    assert curl(f"{server.base_url}/ping/{check['uuid']}")[0] == 200
    assert server.signal(signal.SIGTERM) == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in restarted)


def test_more_than_one_worker_needs_postgresql(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "serverlord", "serve", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(SERVERLORD_DATA_DIR=str(tmp_path)),
    )

    assert done.returncode == 2
    assert "--workers: more than one worker needs a PostgreSQL store" in done.stderr


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()]


async def test_workers_stop_when_their_parent_is_killed(
    tmp_path: Path, postgres_url: str, servers: list[ServerProcess]
) -> None:
    server = start_serve(servers, tmp_path, postgres_url, "workers", "--workers", "2")
    server.wait_ready()
    workers = _children(server.pid)

    server.signal(signal.SIGKILL)
    began = time.monotonic()
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() - began < 15, "workers outlived their parent"
        await asyncio.sleep(0.1)

    await wait_for_holders(postgres_url, [], timeout=5)
