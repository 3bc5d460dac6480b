"""Schemathesis against the OpenAPI document the real server serves.

``serverlord serve`` runs as a process; Schemathesis loads the document from
it and sends generated requests (coverage, fuzzing and stateful phases) with a
read-write key. Every response must be documented, match its schema, and no
request may end in a 5xx. Its ``positive_data_acceptance`` check is left out:
some rules cannot be written in JSON Schema (a time zone must be a known IANA
name, a schedule a valid cron or OnCalendar expression, reminders at least a
minute apart), so schema-valid bodies can rightly be refused with 400.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.database import Database
from tests.test_end_to_end import ServerProcess, cli, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    data = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    user = cli(Database(data, ""), base, "user", "add", "fuzz@example.com", "--json")
    assert user.returncode == 0, user.stderr
    key = json.loads(user.stdout)["api_key"]
    process = ServerProcess(
        data, port, tmp_path / "serve.log", env={"SERVERLORD_API_RATE_LIMIT": "100000"}
    )
    process.start()
    try:
        process.wait_ready()
        yield process, key
    finally:
        process.cleanup()


def test_the_api_keeps_to_its_openapi_document_under_schemathesis(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    process, key = server
    st = Path(sys.executable).parent / "st"

    done = subprocess.run(
        [
            str(st), "run", f"{process.base_url}/api/v3/schema/openapi.json",
            "--header", f"X-Api-Key: {key}",
            "--exclude-checks", "positive_data_acceptance",
            # A stream of live events never ends: it has its own tests.
            "--exclude-path", "/api/v3/events",
            "--max-examples", "30",
            "--seed", "1",
            "--request-timeout", "10",
            "--generation-database", "none",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
    )  # fmt: skip

    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
    assert "Traceback" not in process.log()
