"""The ``serverlord`` command line: checks, schedule previews, settings, bad input."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from serverlord import __version__
from serverlord.cli import build_parser
from serverlord.config import Settings, settings_from
from serverlord.pings import Ping
from serverlord.store import open_store
from tests.cli_runner import Run, runner
from tests.conftest import on_both_backends

BASE_URL = "http://127.0.0.1:9999"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

V3_FIELDS = {
    "name",
    "slug",
    "tags",
    "desc",
    "grace",
    "n_pings",
    "status",
    "started",
    "last_ping",
    "next_ping",
    "manual_resume",
    "ping_url",
    "uuid",
    "max_runtime",
    "last_duration",
}


@pytest.fixture
def backend() -> str:
    """SQLite, unless a test is marked to run on both backends."""
    return "sqlite"


@pytest.fixture
def run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
) -> Run:
    """`serverlord ARGS...` in this process, on the backend's store."""
    database = {"database_url": database_url} if database_url else {}
    return runner(capsys, monkeypatch, tmp_path, base_url=BASE_URL, **database)


def add(run: Run, *args: str) -> dict[str, Any]:
    result = run("check", "add", *args, "--json")
    assert result.code == 0, result.err
    data: dict[str, Any] = result.json()
    return data


def record_pings(settings: Settings, check_id: str, *kinds: str) -> None:
    async def go() -> None:
        store = open_store(settings)
        await store.open()
        try:
            for kind in kinds:
                await store.record_ping(
                    Ping(check_id, time.time(), kind, body=f"{kind} ping".encode())
                )
        finally:
            await store.close()

    asyncio.run(go())


def test_version_of_the_installed_package_says_the_version_only(run: Run) -> None:
    # Only a built executable knows its commit (tests/test_executable.py).
    result = run("--version")

    assert (result.code, result.out) == (0, f"serverlord {__version__}\n")


# check add


@on_both_backends
def test_check_add_prints_the_id_and_the_ping_url(run: Run) -> None:
    result = run("check", "add", "nightly backup", "--period", "1d", "--grace", "1h")

    assert result.code == 0
    match = re.search(r"^id:\s+(\S+)$", result.out, re.MULTILINE)
    assert match and UUID.fullmatch(match[1])
    assert f"ping URL: {BASE_URL}/ping/{match[1]}" in result.out


@on_both_backends
def test_check_add_json_of_a_simple_check_uses_healthchecks_v3_names(run: Run) -> None:
    data = add(
        run,
        "db dump",
        "--period",
        "1h30m",
        "--grace",
        "5m",
        "--max-runtime",
        "20m",
        "--tag",
        "db",
        "--tag",
        "nightly",
        "--desc",
        "pg_dump of prod",
        "--slug",
        "db-dump",
    )

    assert V3_FIELDS | {"timeout"} <= set(data)
    assert "schedule" not in data and "tz" not in data
    assert UUID.fullmatch(data["uuid"])
    assert data["ping_url"] == f"{BASE_URL}/ping/{data['uuid']}"
    assert data | {"uuid": "", "ping_url": ""} == data | {
        "name": "db dump",
        "slug": "db-dump",
        "tags": "db nightly",
        "desc": "pg_dump of prod",
        "grace": 300,
        "timeout": 5400,
        "max_runtime": 1200,
        "n_pings": 0,
        "status": "new",
        "started": False,
        "last_ping": None,
        "next_ping": None,
        "manual_resume": False,
        "last_duration": None,
        "uuid": "",
        "ping_url": "",
    }


@on_both_backends
def test_check_add_json_of_a_cron_check_has_schedule_and_tz(run: Run) -> None:
    data = add(
        run, "report", "--cron", "30 2 * * *", "--tz", "Europe/Berlin", "--grace", "90s"
    )

    assert V3_FIELDS | {"schedule", "tz"} <= set(data)
    assert "timeout" not in data
    assert (data["schedule"], data["tz"], data["grace"]) == (
        "30 2 * * *",
        "Europe/Berlin",
        90,
    )


def test_check_add_takes_an_oncalendar_expression(run: Run) -> None:
    data = add(
        run, "weekdays", "--oncalendar", "Mon..Fri 09:00", "--tz", "America/New_York"
    )

    assert (data["schedule"], data["tz"]) == ("Mon..Fri 09:00", "America/New_York")


def test_check_add_defaults_to_a_daily_period_and_an_hour_of_grace(run: Run) -> None:
    data = add(run, "defaults")

    assert (data["timeout"], data["grace"], data["max_runtime"]) == (86400, 3600, None)


def test_check_add_refuses_two_schedules_at_once(run: Run) -> None:
    result = run("check", "add", "x", "--period", "5m", "--cron", "* * * * *")

    assert result.code == 2
    assert "--cron" in result.err


# list, show, pause, resume, rm


@on_both_backends
def test_check_list_shows_every_check(run: Run) -> None:
    first = add(run, "first", "--period", "5m")
    second = add(run, "second", "--cron", "0 * * * *")

    listed = run("check", "list", "--json")
    text = run("check", "list")

    assert [c["uuid"] for c in listed.json()] == [first["uuid"], second["uuid"]]
    assert first["uuid"] in text.out and "second" in text.out


@on_both_backends
def test_check_list_says_how_to_add_a_check_when_there_is_none(run: Run) -> None:
    assert run("check", "list", "--json").json() == []
    assert "check add" in run("check", "list").out


@on_both_backends
def test_check_show_gives_recent_pings_and_flips(run: Run, settings: Settings) -> None:
    check = add(run, "job", "--period", "5m")
    record_pings(settings, check["uuid"], "start", "success", "fail")

    data = run("check", "show", check["uuid"], "--json").json()
    text = run("check", "show", check["uuid"]).out

    assert data["n_pings"] == 3 and data["status"] == "down"
    assert data["last_duration"] is not None
    assert [p["type"] for p in data["pings"]] == ["fail", "success", "start"]
    assert data["pings"][0]["body"] == "fail ping"
    assert [(f["old_status"], f["new_status"]) for f in data["flips"]] == [
        ("up", "down"),
        ("new", "up"),
    ]
    assert "recent pings:" in text and "recent flips:" in text
    assert "new -> up" in text and "up -> down" in text


@on_both_backends
def test_check_pause_and_resume_change_the_status(run: Run, settings: Settings) -> None:
    check = add(run, "job", "--period", "5m")
    record_pings(settings, check["uuid"], "success")

    paused = run("check", "pause", check["uuid"], "--json")
    resumed = run("check", "resume", check["uuid"])

    assert paused.json()["status"] == "paused"
    assert resumed.code == 0 and "resumed" in resumed.out
    assert run("check", "show", check["uuid"], "--json").json()["status"] == "new"


@on_both_backends
def test_resuming_a_check_that_is_not_paused_fails_clearly(run: Run) -> None:
    check = add(run, "job", "--period", "5m")

    result = run("check", "resume", check["uuid"])

    assert result.code == 1
    assert check["uuid"] in result.err and "not paused" in result.err
    assert result.out == ""


@on_both_backends
def test_check_rm_removes_the_check(run: Run) -> None:
    check = add(run, "job", "--period", "5m")

    removed = run("check", "rm", check["uuid"], "--json")

    assert removed.json() == {"uuid": check["uuid"], "deleted": True}
    assert run("check", "list", "--json").json() == []
    assert run("check", "show", check["uuid"]).code == 1


@on_both_backends
@pytest.mark.parametrize("action", ["show", "pause", "resume", "rm"])
def test_an_unknown_check_id_fails_with_exit_code_1(run: Run, action: str) -> None:
    unknown = str(uuid.uuid4())

    result = run("check", action, unknown)

    assert result.code == 1
    assert f"no check has the id {unknown}" in result.err


@pytest.mark.parametrize("action", ["show", "pause", "resume", "rm"])
def test_a_malformed_check_id_is_refused_as_bad_input(run: Run, action: str) -> None:
    result = run("check", action, "not-a-uuid")

    assert result.code == 2
    assert "id" in result.err and "not-a-uuid" in result.err


# schedule preview


def test_schedule_preview_prints_utc_and_zone_times(run: Run) -> None:
    result = run(
        "schedule",
        "preview",
        "30 2 * * *",
        "--tz",
        "America/New_York",
        "--after",
        "2024-03-09T00:00:00Z",
        "-n",
        "3",
    )

    assert result.code == 0
    times = [line.split() for line in result.out.splitlines()[1:]]
    assert times == [
        ["2024-03-09T07:30:00+00:00", "2024-03-09T02:30:00-05:00", "America/New_York"],
        ["2024-03-10T07:00:00+00:00", "2024-03-10T03:00:00-04:00", "America/New_York"],
        ["2024-03-11T06:30:00+00:00", "2024-03-11T02:30:00-04:00", "America/New_York"],
    ]


def test_schedule_preview_json_skips_the_repeated_autumn_hour(run: Run) -> None:
    result = run(
        "schedule",
        "preview",
        "30 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--after",
        "2024-10-26T12:00:00+00:00",
        "-n",
        "2",
        "--json",
    )

    assert result.json() == [
        {"utc": "2024-10-27T00:30:00+00:00", "local": "2024-10-27T02:30:00+02:00"},
        {"utc": "2024-10-28T01:30:00+00:00", "local": "2024-10-28T02:30:00+01:00"},
    ]


def test_schedule_preview_reads_oncalendar_and_defaults_to_five_times(
    run: Run,
) -> None:
    result = run(
        "schedule", "preview", "*-*-* 06:00", "--after", "2024-01-01", "--json"
    )

    assert [t["utc"] for t in result.json()] == [
        f"2024-01-0{day}T06:00:00+00:00" for day in range(1, 6)
    ]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["0 0 30 2 *"], "never fires"),
        (["61 * * * *"], "schedule"),
        (["* * * * * *"], "schedule"),
        (["* * * * *", "--tz", "Mars/Olympus_Mons"], "tz"),
        (["* * * * *", "-n", "0"], "-n"),
        (["* * * * *", "--after", "yesterday"], "--after"),
    ],
)
def test_schedule_preview_refuses_bad_input(
    run: Run, args: list[str], named: str
) -> None:
    result = run("schedule", "preview", *args)

    assert result.code == 2
    assert named in result.err
    assert result.out == ""


# Bad input to check add: exit code 2, the field named, nothing stored.


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--cron", "61 * * * *"], "schedule"),
        (["--cron", "* * * * * *"], "5 fields"),
        (["--cron", "every day"], "schedule"),
        (["--cron", "* * * * *", "--tz", "Mars/Olympus_Mons"], "tz"),
        (["--oncalendar", "Mon 09:00", "--tz", "Europe/Atlantis"], "tz"),
        (["--oncalendar", "Funday 25:00"], "schedule"),
        (["--cron", "0 0 30 2 *"], "never fires"),
        (["--oncalendar", "2001-01-01 00:00:00"], "never fires"),
        (["--period", "0s"], "--period"),
        (["--period", "366d"], "--period"),
        (["--period", "5x"], "--period"),
        (["--period", "0.5s"], "--period"),
        (["--grace", "5x"], "--grace"),
        (["--grace", "0"], "--grace"),
        (["--grace", "400d"], "--grace"),
        (["--max-runtime=-1m"], "--max-runtime"),
        (["--max-runtime", "1y"], "--max-runtime"),
        (["--tag", "two words"], "tag"),
    ],
)
def test_check_add_refuses_bad_input_naming_the_field(
    run: Run, args: list[str], named: str
) -> None:
    result = run("check", "add", "job", *args)

    assert result.code == 2
    assert named in result.err
    assert run("check", "list", "--json").json() == []


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "tab\there"])
def test_check_add_refuses_a_bad_name(run: Run, name: str) -> None:
    result = run("check", "add", name)

    assert result.code == 2
    assert "name" in result.err


# Settings: flags, SERVERLORD_* variables, --help.

SAMPLES: dict[str, tuple[str, Any]] = {
    "data_dir": ("/srv/serverlord", Path("/srv/serverlord")),
    "database_url": ("sqlite:////srv/db.sqlite3", "sqlite:////srv/db.sqlite3"),
    "auto_migrate": ("0", False),
    "host": ("0.0.0.0", "0.0.0.0"),
    "port": ("9123", 9123),
    "shards": ("3", 3),
    "workers": ("4", 4),
    "base_url": ("https://cron.example.org", "https://cron.example.org"),
    "ping_body_limit": ("512", 512),
    "ping_body_cap": ("200000", 200_000),
    "ping_rate_limit": ("2.5", 2.5),
    "trusted_proxy": ("yes", True),
    "sqlite_synchronous": ("normal", "normal"),
    "log_level": ("debug", "debug"),
    "log_format": ("JSON", "json"),
    "notify_timeout": ("30s", 30.0),
    "notify_concurrency": ("4", 4),
    "notify_retry_base": ("1m", 60.0),
    "notify_retry_max": ("2h", 7200.0),
    "notify_retry_for": ("2d", 172800.0),
    "metrics": ("off", False),
    "metrics_token": ("s3cret", "s3cret"),
    "trace_pings": ("0.25", 0.25),
    "api_rate_limit": ("120", 120),
    "connections_per_address": ("50", 50),
}
SETTINGS = [setting.name for setting in fields(Settings)]


@pytest.mark.parametrize("name", SETTINGS)
def test_every_setting_is_read_from_its_environment_variable(name: str) -> None:
    if name not in SAMPLES:
        pytest.fail(f"add a sample value for the new setting {name} to this test")
    raw, expected = SAMPLES[name]
    args = build_parser().parse_args(["serve"])

    settings = settings_from(args, {f"SERVERLORD_{name.upper()}": raw})

    assert getattr(settings, name) == expected


def test_a_flag_wins_over_its_environment_variable() -> None:
    args = build_parser().parse_args(["serve", "--port", "9001"])

    settings = settings_from(args, {"SERVERLORD_PORT": "9002"})

    assert settings.port == 9001


def test_serve_help_lists_every_setting_with_its_variable(run: Run) -> None:
    result = run("serve", "--help")

    assert result.code == 0
    text = " ".join(result.out.split())
    for name in SETTINGS:
        assert "--" + name.replace("_", "-") in text
        assert f"SERVERLORD_{name.upper()}" in text


def test_the_readme_lists_the_settings_serve_help_lists(run: Run) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = set(re.findall(r"^\| `(--[a-z-]+)` \|", readme, re.MULTILINE))
    help_out = run("serve", "--help").out
    flags = set(re.findall(r"^ +(--[a-z-]+)", help_out, re.MULTILINE)) - {"--help"}
    help_text = " ".join(help_out.split())

    assert table == flags
    for variable in ("SHARD_COUNT", "DB_HOST", "DB_PASS", "PGHOST", "PGPASSWORD"):
        assert variable in readme and variable in help_text, variable


def test_check_commands_use_the_data_dir_from_the_environment(
    run: Run, tmp_path: Path
) -> None:
    add(run, "job")

    assert (tmp_path / "serverlord.sqlite3").exists()


def test_check_commands_take_the_data_dir_flag_over_the_environment(
    run: Run, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    result = run("check", "add", "job", "--data-dir", str(elsewhere))

    assert result.code == 0
    assert (elsewhere / "serverlord.sqlite3").exists()
    assert run("check", "list", "--json").json() == []


def test_check_commands_read_the_database_url_from_the_environment(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "other" / "checks.db"
    monkeypatch.setenv("SERVERLORD_DATABASE_URL", f"sqlite:///{database}")

    add(run, "job")

    assert database.exists()
    assert not (tmp_path / "serverlord.sqlite3").exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SERVERLORD_PORT", "not-a-port"),
        ("SERVERLORD_SHARDS", "0"),
        ("SERVERLORD_TRUSTED_PROXY", "maybe"),
        ("SERVERLORD_PING_RATE_LIMIT", "1e-300"),
        ("SERVERLORD_PING_RATE_LIMIT", "-1"),
        ("SERVERLORD_PING_RATE_LIMIT", "nan"),
    ],
)
def test_a_bad_environment_variable_is_refused_by_name(
    run: Run, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    result = run("serve")

    assert result.code == 2
    assert variable in result.err


def test_no_command_prints_help_and_fails(run: Run) -> None:
    result = run()

    assert result.code == 2
    assert "serve" in result.out and "check" in result.out
