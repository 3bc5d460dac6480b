"""Secrets in Apprise URLs stay out of the server's log, even at debug level.

A channel whose URLs carry a password, a secret path and a secret header
points at a closed local port; a check fails, the alert fails again and
again, and the log of ``serverlord serve --log-level debug`` says so without
a word of the secrets.
"""

from __future__ import annotations

import time

import pytest

from tests.database import Database
from tests.test_end_to_end import (
    ServerProcess,
    cli,
    curl,
    free_port,
)
from tests.test_notifications_end_to_end import (
    FAST_RETRIES,
    failed_attempts,
    wait_until,
)


@pytest.fixture
def backend() -> str:
    return "sqlite"


SECRETS = ("s3cretPass", "s3cretPath", "s3cretHeader", "s3cretForm")


def test_failing_alerts_never_log_the_secrets_of_their_urls(
    database: Database, servers: list[ServerProcess]
) -> None:
    port, closed = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    urls = (
        f"json://ops:{SECRETS[0]}@127.0.0.1:{closed}/{SECRETS[1]}?+X-Token={SECRETS[2]}",
        f"form://127.0.0.1:{closed}/hook/{SECRETS[3]}",
    )
    for n, url in enumerate(urls):
        added = cli(database, base, "channel", "add", url, "--name", f"pager {n}")
        assert added.returncode == 0, added.stderr
    check = cli(database, base, "check", "add", "job")
    assert check.returncode == 0, check.stderr
    [(check_id,)] = database.query("SELECT id FROM checks")
    env = {**database.env(), **FAST_RETRIES}
    server = ServerProcess(
        database.data_dir,
        port,
        database.data_dir.parent / "serve.log",
        env=env,
        args=["--log-level", "debug"],
    )
    servers.append(server.start())
    server.wait_ready()

    assert curl(f"{base}/ping/{check_id}/fail") == (200, "OK")
    wait_until(lambda: failed_attempts(database) >= 4, 20, "four attempts", server)
    time.sleep(0.5)
    listed = cli(database, base, "channel", "list")

    log = server.log()
    assert "failed (attempt" in log
    for secret in SECRETS:
        assert secret not in log, secret
    # The listing masks passwords and header values; a URL's path it shows.
    for secret in (SECRETS[0], SECRETS[2]):
        assert secret not in listed.stdout, secret
