"""A down alert survives kill -9: ``serverlord serve`` as a subprocess, its
channel's receiver down, the server killed and restarted, then the receiver
started on the channel's port.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from tests.database import Database
from tests.receivers import WebhookReceiver
from tests.test_end_to_end import (
    ServerProcess,
    cli,
    curl,
    free_port,
    wait_for_down_flip,
)

pytestmark = pytest.mark.slow

FAST_RETRIES = {
    "SERVERLORD_NOTIFY_RETRY_BASE": "0.2s",
    "SERVERLORD_NOTIFY_RETRY_MAX": "1s",
    "SERVERLORD_NOTIFY_TIMEOUT": "5s",
}


def start(
    servers: list[ServerProcess], database: Database, port: int, name: str
) -> ServerProcess:
    # Failed alerts are retried within a second.
    log_path = database.data_dir.parent / f"{name}.log"
    env = {**database.env(), **FAST_RETRIES}
    server = ServerProcess(database.data_dir, port, log_path, env=env)
    servers.append(server.start())
    server.wait_ready()
    return server


def failed_attempts(database: Database) -> int:
    [(count,)] = database.query("SELECT count(*) FROM attempts WHERE NOT ok")
    return int(count)


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, server: ServerProcess
) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            pytest.fail(f"{what} not within {timeout} s\n{server.log()}")
        time.sleep(0.05)


def test_a_down_alert_owed_to_a_dead_receiver_is_delivered_after_kill_9(
    database: Database, servers: list[ServerProcess]
) -> None:
    port, receiver_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    added = cli(
        database,
        base,
        "channel",
        "add",
        f"json://127.0.0.1:{receiver_port}/alerts",
        "--name",
        "pager",
        "--json",
    )
    assert added.returncode == 0, added.stderr
    check = cli(
        database, base, "check", "add", "e2e", "--period", "1s", "--grace", "1s"
    )
    assert check.returncode == 0, check.stderr
    [(check_id,)] = database.query("SELECT id FROM checks")

    # The check goes down while nothing listens on the channel's port.
    first = start(servers, database, port, "first")
    assert curl(f"{base}/ping/{check_id}") == (200, "OK")
    seen = wait_for_down_flip(database, check_id, time.time() + 15)
    assert seen is not None, first.log()
    wait_until(lambda: failed_attempts(database) >= 2, 15, "two failed attempts", first)
    [(state,)] = database.query("SELECT state FROM deliveries")
    assert state in ("pending", "sending")

    assert first.signal(signal.SIGKILL) == -signal.SIGKILL

    # Restarted, the server keeps trying; the receiver comes up; it gets the alert.
    second = start(servers, database, port, "second")
    receiver = WebhookReceiver(receiver_port)
    try:
        receiver.wait(1, timeout=20)
        wait_until(
            lambda: database.query("SELECT state FROM deliveries") == [("sent",)],
            10,
            "the delivery marked sent",
            second,
        )
        time.sleep(1.0)
        posts = receiver.posts()
    finally:
        receiver.close()

    [(flip_id,)] = database.query(
        "SELECT id FROM flips WHERE check_id = ? AND new_status = 'down'",
        check_id,
    )
    # At least once: a repeat is allowed, each copy the same alert.
    assert len(posts) >= 1
    for post in posts:
        assert post.path == "/alerts"
        assert post.title == "DOWN: e2e (missed deadline)"
        assert f"Flip: #{flip_id}" in post.message
        assert f"Check id: {check_id}" in post.message
    attempts = database.query("SELECT ok, error FROM attempts ORDER BY id")
    assert attempts[-1] == (True, None)
    assert all(not ok and "Connection error" in error for ok, error in attempts[:-1])
    assert "Traceback" not in first.log() + second.log()
