"""The one-file executable built from serverlord.spec, end to end.

Every test here runs the frozen build, made once per session by
tests/executable.py: the server on a free port of 127.0.0.1, on SQLite and on
a real PostgreSQL, checks and channels added with its CLI, pings over HTTP, an
alert to a real ``json://`` receiver, ``--version`` and Apprise's plugins.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from serverlord.apprise_urls import services
from tests.receivers import WebhookReceiver
from tests.terminal import Terminal
from tests.test_end_to_end import ServerProcess, clean_env, curl, free_port

if TYPE_CHECKING:
    # Imported by pytest as a plugin below; importing it here first would keep
    # pytest from rewriting its asserts.
    from tests.executable import Executable

pytest_plugins = ("tests.executable", "tests.postgres")
pytestmark = [
    pytest.mark.slow,
    # Apprise's e-mail plugin imports imghdr, deprecated since Python 3.11.
    pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning"),
]

SIZE_LIMIT = 40 * 1024 * 1024
ALERT_TIMEOUT = 15.0

COMMANDS = [
    "serve", "check", "channel", "schedule", "run", "user", "key", "project", "db",
    "tui", "bench",
]  # fmt: skip
# Commands still to be written. Each must work frozen once it lands: then
# `serverlord NAME --help` succeeds, this strict xfail fails, and NAME moves to
# COMMANDS with an end-to-end test below against the executable.
PENDING: list[str] = []


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The settings that choose the store: a data folder, or a PostgreSQL URL."""
    settings = {"SERVERLORD_DATA_DIR": str(tmp_path / "data")}
    if request.param == "postgresql":
        settings["SERVERLORD_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    return settings


def succeeds(done: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a command printed, once it is sure that the command succeeded."""
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


def test_version_names_the_version_and_the_commit_it_was_built_from(
    executable: Executable,
) -> None:
    done = executable.run("--version")

    assert done.returncode == 0, done.stderr
    if executable.version is not None:
        assert done.stdout.strip() == executable.version
    else:
        assert re.fullmatch(
            r"serverlord \S+ \(commit ([0-9a-f]{12}(-dirty)?|unknown)\)\n", done.stdout
        )


def test_the_executable_is_under_40_mb(executable: Executable) -> None:
    assert executable.path.stat().st_size < SIZE_LIMIT


def test_the_executable_lists_the_same_apprise_services_as_the_package(
    executable: Executable,
) -> None:
    frozen = succeeds(executable.run("channel", "services", "--json"))

    installed = [{**asdict(s), "schemes": list(s.schemes)} for s in services()]
    assert frozen == installed
    assert sum(service["enabled"] for service in frozen) > 100


@pytest.mark.parametrize(
    "command",
    [
        *COMMANDS,
        *(
            pytest.param(name, marks=pytest.mark.xfail(strict=True, reason="to come"))
            for name in PENDING
        ),
    ],
)
def test_every_command_answers_help_in_the_executable(
    executable: Executable, command: str
) -> None:
    done = executable.run(command, "--help")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: serverlord {command}")


@pytest.mark.parametrize(
    "argv",
    [
        # Time zones from tzdata, cron across a DST change, OnCalendar.
        [
            "schedule",
            "preview",
            "30 2 * * *",
            "--tz",
            "Europe/Berlin",
            "--after",
            "2024-10-26T00:00:00Z",
            "-n",
            "3",
        ],
        [
            "schedule",
            "preview",
            "Sun *-*-* 04:00",
            "--tz",
            "America/New_York",
            "--after",
            "2024-03-01T00:00:00Z",
            "--json",
        ],
        # Refusals: the same message and exit status.
        ["check", "add", "x", "--period", "0s"],
        ["check", "add", "x", "--cron", "61 * * * *"],
        ["channel", "add", "xyz://nope"],
        ["channel", "add", "json://"],
        ["check", "show", "not-a-uuid"],
        ["--help"],
    ],
    ids=lambda argv: " ".join(argv)[:40],
)
def test_the_executable_answers_as_the_installed_package_does(
    executable: Executable, tmp_path: Path, argv: list[str]
) -> None:
    settings = {"SERVERLORD_DATA_DIR": str(tmp_path / "frozen"), "COLUMNS": "100"}
    frozen = executable.run(*argv, env=settings)
    settings["SERVERLORD_DATA_DIR"] = str(tmp_path / "package")
    package = subprocess.run(
        [sys.executable, "-m", "serverlord", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(**settings),
    )

    assert (frozen.returncode, frozen.stdout, frozen.stderr) == (
        package.returncode,
        package.stdout,
        package.stderr,
    )


def test_a_check_goes_down_and_its_alert_reaches_a_webhook(
    executable: Executable,
    database: dict[str, str],
    tmp_path: Path,
    receiver: WebhookReceiver,
    servers: list[ServerProcess],
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = {**database, "SERVERLORD_BASE_URL": base}

    # A channel and a 1 s check, added with the executable's CLI.
    channel = succeeds(
        executable.run(
            "channel", "add", receiver.url("/alerts"), "--json", env=settings
        )
    )
    check = succeeds(
        executable.run(
            "check",
            "add",
            "e2e",
            "--period",
            "1s",
            "--grace",
            "1s",
            "--json",
            env=settings,
        )
    )
    assert check["channels"] == [channel["id"]]
    assert check["ping_url"] == f"{base}/ping/{check['uuid']}"

    data_dir = Path(database["SERVERLORD_DATA_DIR"])
    server = ServerProcess(
        data_dir,
        port,
        tmp_path / "serve.log",
        env=database,
        command=(str(executable.path),),
    )
    servers.append(server.start())
    server.wait_ready()
    assert "1 checks loaded" in server.log()

    # A ping, then silence: down after period and grace, and the alert arrives.
    assert curl(check["ping_url"]) == (200, "OK")
    receiver.wait(1, timeout=ALERT_TIMEOUT)
    [down] = receiver.posts()
    assert down.path == "/alerts"
    assert down.title == "DOWN: e2e (missed deadline)"
    assert f"Check id: {check['uuid']}" in down.message

    # The next ping brings it up again, and says so. (Two seconds later it is
    # down again: what follows must not depend on how soon it is read.)
    assert curl(check["ping_url"]) == (200, "OK")
    receiver.wait(2, timeout=ALERT_TIMEOUT)
    assert receiver.posts()[1].title.startswith("UP: e2e")
    # Each delivery is recorded just after the receiver has answered.
    give_up = time.monotonic() + ALERT_TIMEOUT
    while True:
        shown = succeeds(
            executable.run("check", "show", check["uuid"], "--json", env=settings)
        )
        if len(shown["deliveries"]) >= 2 or time.monotonic() > give_up:
            break
        time.sleep(0.1)
    assert shown["n_pings"] == 2
    oldest_first = [(d["kind"], d["ok"]) for d in reversed(shown["deliveries"])]
    assert oldest_first[:2] == [("down", True), ("up", True)]

    # SIGTERM reaches the server through the bootloader and stops it cleanly.
    assert server.signal(signal.SIGTERM) == 0
    log = server.log()
    assert "stopping on SIGTERM" in log and "serverlord stopped" in log
    assert "Traceback" not in log


def test_accounts_the_api_and_the_job_wrapper_work_frozen(
    executable: Executable,
    database: dict[str, str],
    tmp_path: Path,
    servers: list[ServerProcess],
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = {**database, "SERVERLORD_BASE_URL": base}
    account = succeeds(
        executable.run("user", "add", "ops@example.com", "--json", env=settings)
    )
    read_only = succeeds(
        executable.run(
            "key", "create", account["project"], "--read-only", "--json", env=settings
        )
    )
    check = succeeds(
        executable.run(
            "check", "add", "backup", "--period", "1h", "--project",
            account["project"], "--json", env=settings,
        )
    )  # fmt: skip
    server = ServerProcess(
        Path(database["SERVERLORD_DATA_DIR"]),
        port,
        tmp_path / "serve.log",
        env=database,
        command=(str(executable.path),),
    )
    servers.append(server.start())
    server.wait_ready()

    # The job wrapper runs the command, pings start and exit status, and
    # exits with the command's own status.
    wrapped = executable.run(
        "run", "--url", check["ping_url"], "--", "sh", "-c", "echo backing up; exit 3"
    )
    assert wrapped.returncode == 3, wrapped.stderr
    assert "backing up" in wrapped.stdout

    # The management API answers the project's keys, and only them.
    with httpx.Client(base_url=base) as client:
        listed = client.get(
            "/api/v3/checks/", headers={"X-Api-Key": account["api_key"]}
        )
        hidden = client.get("/api/v3/checks/", headers={"X-Api-Key": read_only["key"]})
        refused = client.get("/api/v3/checks/", headers={"X-Api-Key": "x" * 32})
        document = client.get("/api/v3/schema/openapi.json")
    [seen] = listed.json()["checks"]
    assert (seen["name"], seen["status"], seen["n_pings"]) == ("backup", "down", 2)
    assert "ping_url" not in hidden.json()["checks"][0]
    assert (refused.status_code, refused.json()) == (401, {"error": "wrong api key"})
    assert document.status_code == 200, document.text
    assert "/api/v3/checks" in document.json()["paths"]
    assert server.signal(signal.SIGTERM) == 0


def test_the_bench_loads_a_frozen_server_beside_the_frozen_responder(
    executable: Executable,
) -> None:
    # The bench starts the executable itself twice: as the server it loads
    # and as the bare responder it compares against.
    done = executable.run(
        "bench", "ingest", "--checks", "5", "--seconds", "1",
        "--connections", "2", "--json", "--quiet",
        timeout=180,
    )  # fmt: skip

    level = succeeds(done)["levels"][0]
    assert level["serverlord"]["ok_per_s"] > 0
    assert level["serverlord"]["errors"] == 0
    assert level["bare"]["ok_per_s"] > 0


def test_the_tui_shows_the_frozen_servers_checks_in_a_terminal(
    executable: Executable, tmp_path: Path, servers: list[ServerProcess]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = {"SERVERLORD_DATA_DIR": str(tmp_path / "data"),
                "SERVERLORD_BASE_URL": base}  # fmt: skip
    account = succeeds(
        executable.run("user", "add", "ops@example.com", "--json", env=settings)
    )
    server = ServerProcess(
        tmp_path / "data", port, tmp_path / "serve.log",
        command=(str(executable.path),),
    )  # fmt: skip
    servers.append(server.start())
    server.wait_ready()
    with httpx.Client(base_url=base) as client:
        made = client.post(
            "/api/v3/checks/",
            json={"name": "frozen-nightly", "tags": "db", "timeout": 3600},
            headers={"X-Api-Key": account["api_key"]},
        )
        assert made.status_code == 201, made.text
        assert client.get(made.json()["ping_url"]).status_code == 200

    config = tmp_path / "tui.json"
    terminal = Terminal(
        [str(executable.path), "tui", "--url", base, "--api-key",
         account["api_key"], "--save", "--config", str(config),
         "--log-file", str(tmp_path / "tui.log")],
        env=clean_env(),
        size=(140, 30),
    )  # fmt: skip
    try:
        drawn = terminal.read_until(b"frozen-nightly", b"every 1h", b" up ")
        assert drawn, terminal.output[-3000:].decode(errors="replace")
        terminal.type(b"q")
        assert terminal.wait() == 0
    finally:
        terminal.close()
    # The key was accepted, so --save wrote it, readable by its owner only.
    assert config.stat().st_mode & 0o777 == 0o600
    assert json.loads(config.read_text())["api_key"] == account["api_key"]
