"""``serverlord db migrate``, migrating on start or not, and where the database
settings come from: SERVERLORD_* variables, PG* and the older DB_* names.

The commands run in this process (see ``cli_runner``), on SQLite and on a real
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import pytest

from serverlord.cli import build_parser
from serverlord.config import Settings, SettingsError, settings_from
from serverlord.store import sqlite
from serverlord.store.queries import load_migrations
from tests.cli_runner import Run, runner

if TYPE_CHECKING:
    from tests.postgres import Cluster

MIGRATIONS = load_migrations("sqlite")
ALL_APPLIED = [f"applied {number:04d}_{name}" for number, name, _ in MIGRATIONS]
LATEST = f"{MIGRATIONS[-1][0]:04d}"
ODD_PASSWORD = "p@ss:w/rd?#[]%20 &=+'\"\\ é€"
"""A password with every character a URL treats specially."""


@pytest.fixture
def run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Run:
    return runner(capsys, monkeypatch, tmp_path)


@pytest.fixture
async def empty_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """The URL of a database without any table (for SQLite: no file yet)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'checks.sqlite3'}"
        return
    cluster: Cluster = request.getfixturevalue("postgres_cluster")
    name = await cluster.create_empty_database()
    yield cluster.url(name)
    await cluster.drop_database(name)


@pytest.fixture
async def odd_role(postgres_cluster: Cluster) -> str:
    """A role of the test cluster that logs in with ODD_PASSWORD only."""
    return await postgres_cluster.add_password_role(ODD_PASSWORD)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# db migrate


def test_db_migrate_applies_every_migration_once_and_says_so(
    run: Run, empty_url: str
) -> None:
    first = run("db", "migrate", "--database-url", empty_url)
    again = run("db", "migrate", "--database-url", empty_url)
    as_json = run("db", "migrate", "--database-url", empty_url, "--json")

    assert first.code == again.code == as_json.code == 0, first.err + again.err
    assert first.out.splitlines() == [
        *ALL_APPLIED,
        f"{empty_url} is at migration {LATEST}",
    ]
    assert again.out.splitlines() == [
        f"nothing to apply: {empty_url} is at migration {LATEST}"
    ]
    assert as_json.json() == {
        "database": empty_url,
        "applied": [],
        "version": MIGRATIONS[-1][0],
    }


def test_db_migrate_applies_only_what_the_database_lacks(
    run: Run, tmp_path: Path
) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite.connect(path)
    sqlite.migrate(conn, load_migrations("sqlite")[:1])
    conn.close()

    result = run("db", "migrate", "--database-url", f"sqlite:///{path}", "--json")

    assert result.code == 0, result.err
    assert result.json()["applied"] == [
        {"number": number, "name": name} for number, name, _ in MIGRATIONS[1:]
    ]


def test_db_migrate_uses_the_data_dir_by_default(run: Run, tmp_path: Path) -> None:
    result = run("db", "migrate")

    assert result.code == 0, result.err
    assert result.out.splitlines()[: len(ALL_APPLIED)] == ALL_APPLIED
    assert (tmp_path / "serverlord.sqlite3").exists()


def test_db_migrate_on_an_unreachable_database_says_so_in_one_line(
    run: Run,
) -> None:
    url = f"postgresql://lord:s3cret@127.0.0.1:{closed_port()}/serverlord"

    result = run("db", "migrate", "--database-url", url)

    assert result.code == 1
    line = one_line(result.err)
    assert line.startswith("serverlord: cannot connect to postgresql://lord:***@")
    assert "refused" in line.lower() or "failed" in line.lower()
    assert "s3cret" not in result.err


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("mysql://db.example/serverlord", "use sqlite:///PATH or postgresql://"),
        ("postgresql://lord:s3cret@127.0.0.1:99999/x", "port out of range"),
        ("postgresql://lord:s3cret@127.0.0.1:port/x", "port could not be cast"),
        ("postgresql://[::1/x", "invalid ipv6 url"),
        ("postgresql://127.0.0.1:1/x?sslmode=sometimes", "sslmode"),
        ("sqlite:///", "use sqlite:///PATH"),
    ],
)
def test_db_migrate_with_a_bad_url_says_what_is_wrong_in_one_line(
    run: Run, url: str, said: str
) -> None:
    result = run("db", "migrate", "--database-url", url)

    assert result.code == 2
    line = one_line(result.err)
    assert said in line
    assert "database" in line.lower()
    assert "s3cret" not in line


# Migrating on start, or not


@pytest.mark.parametrize(
    "switch", [("--auto-migrate", "false"), ("SERVERLORD_AUTO_MIGRATE", "0")]
)
def test_serve_without_migrating_refuses_a_database_that_is_behind(
    run: Run,
    monkeypatch: pytest.MonkeyPatch,
    empty_url: str,
    switch: tuple[str, str],
) -> None:
    flag = list(switch) if switch[0].startswith("--") else []
    if not flag:
        monkeypatch.setenv(*switch)
    if empty_url.startswith("sqlite"):
        # A file with the first migration only; a missing file is refused too.
        path = Path(empty_url.removeprefix("sqlite:///"))
        missing = run("serve", "--database-url", empty_url, *flag)
        assert missing.code == 1
        assert "no database there yet" in one_line(missing.err)
        path.parent.mkdir(exist_ok=True)
        conn = sqlite.connect(path)
        sqlite.migrate(conn, load_migrations("sqlite")[:1])
        conn.close()

    result = run(
        "serve", "--database-url", empty_url, "--port", str(closed_port()), *flag
    )

    assert result.code == 1
    line = one_line(result.err)
    assert "schema is behind this serverlord" in line
    assert "0002_notifications" in line
    assert "serverlord db migrate" in line
    assert run("db", "migrate", "--database-url", empty_url).code == 0
    listed = run("check", "list", "--database-url", empty_url, *flag)
    assert listed.code == 0, listed.err


def stamp_future_migration(url: str) -> None:
    """Mark the database as migrated by a newer serverlord (migration 9999)."""
    if url.startswith("sqlite"):
        conn = sqlite.connect(Path(url.removeprefix("sqlite:///")))
        conn.execute("PRAGMA user_version = 9999")
        conn.close()
        return

    async def stamp() -> None:
        import asyncpg

        conn = await asyncpg.connect(url)
        await conn.execute(
            "INSERT INTO schema_migrations (number, name, applied) "
            "VALUES (9999, 'future', 0)"
        )
        await conn.close()

    asyncio.run(stamp())


def test_a_database_from_a_newer_serverlord_is_refused_by_every_command(
    run: Run, empty_url: str
) -> None:
    assert run("db", "migrate", "--database-url", empty_url).code == 0
    stamp_future_migration(empty_url)
    port = str(closed_port())

    attempts = [
        run("serve", "--database-url", empty_url, "--port", port),
        run(
            "serve", "--database-url", empty_url, "--port", port, "--auto-migrate", "0"
        ),
        run("db", "migrate", "--database-url", empty_url),
        run("check", "add", "nightly", "--database-url", empty_url),
    ]

    for result in attempts:
        assert result.code == 1, result.err
        line = one_line(result.err)
        assert "newer than this serverlord (migration 9999" in line
        assert f"knows up to {LATEST}" in line


def test_commands_migrate_on_open_unless_told_not_to(run: Run, empty_url: str) -> None:
    refused = run("check", "list", "--database-url", empty_url, "--auto-migrate", "0")
    added = run("check", "add", "nightly", "--database-url", empty_url)
    again = run("db", "migrate", "--database-url", empty_url)

    assert refused.code == 1
    assert added.code == 0, added.err
    assert again.out.startswith("nothing to apply")


# PG* variables fill in what a postgresql:// URL leaves out


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_bare_postgresql_url_takes_everything_else_from_pg_variables(
    run: Run, monkeypatch: pytest.MonkeyPatch, empty_url: str
) -> None:
    parts = urlsplit(empty_url)
    monkeypatch.setenv("PGHOST", parts.hostname or "")
    monkeypatch.setenv("PGPORT", str(parts.port))
    monkeypatch.setenv("PGUSER", parts.username or "")
    monkeypatch.setenv("PGDATABASE", parts.path[1:])
    monkeypatch.setenv("SERVERLORD_DATABASE_URL", "postgresql://")

    migrated = run("db", "migrate")
    added = run("check", "add", "nightly", "--json")
    listed = run("check", "list", "--json")

    assert migrated.code == 0, migrated.err
    assert migrated.out.splitlines()[: len(ALL_APPLIED)] == ALL_APPLIED
    assert added.code == 0, added.err
    assert [check["name"] for check in listed.json()] == ["nightly"]


@pytest.mark.parametrize(
    "command",
    [["serve"], ["db", "migrate"], ["check", "list"], ["key", "list", "default"]],
)
def test_a_bad_url_option_is_a_usage_error_of_every_command(
    run: Run, command: list[str]
) -> None:
    url = f"postgresql://u@127.0.0.1:{closed_port()}/db?sslmode=sometimes"

    port = ["--port", str(closed_port())] if command == ["serve"] else []

    result = run(*command, "--database-url", url, *port)

    assert result.code == 2, result.err
    line = one_line(result.err)
    assert "the database URL is not valid" in line
    assert "sslmode" in line


def test_pgpassword_logs_in_a_role_that_needs_its_password(
    run: Run, monkeypatch: pytest.MonkeyPatch, postgres_url: str, odd_role: str
) -> None:
    url = postgres_url.replace("postgres@", f"{odd_role}@")

    without = run("check", "list", "--database-url", url)
    monkeypatch.setenv("PGPASSWORD", ODD_PASSWORD)
    listed = run("check", "list", "--database-url", url)

    assert without.code == 1
    assert listed.code == 0, listed.err


def test_a_bad_pgport_is_refused_by_name(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPORT", "fifty")

    result = run("db", "migrate", "--database-url", "postgresql://")

    assert result.code == 2
    assert "PGPORT: 'fifty' is not valid" in one_line(result.err)


# The older DB_* and SHARD_COUNT variables


def test_db_variables_make_a_url_whose_password_may_hold_any_character(
    run: Run, monkeypatch: pytest.MonkeyPatch, postgres_url: str, odd_role: str
) -> None:
    monkeypatch.setenv("DB_HOST", "127.0.0.1")
    monkeypatch.setenv("DB_PORT", str(urlsplit(postgres_url).port))
    monkeypatch.setenv("DB_USER", odd_role)
    monkeypatch.setenv("DB_PASS", ODD_PASSWORD)
    monkeypatch.setenv("DB_NAME", postgres_url.rsplit("/", 1)[1])

    migrated = run("db", "migrate")
    added = run("check", "add", "nightly", "--json")
    monkeypatch.setenv("DB_PASS", ODD_PASSWORD + "!")
    refused = run("check", "list")

    assert migrated.code == 0, migrated.err
    assert migrated.out.startswith(f"nothing to apply: postgresql://{odd_role}:***@")
    assert added.code == 0, added.err
    assert refused.code == 1
    assert "password authentication failed" in one_line(refused.err)
    assert ODD_PASSWORD not in refused.err + migrated.out


@pytest.mark.parametrize(
    ("variables", "url"),
    [
        (
            {"DB_HOST": "db.example", "DB_USER": "lord", "DB_NAME": "checks"},
            "postgresql://lord@db.example/checks",
        ),
        (
            {"DB_HOST": "::1", "DB_PORT": "5433", "DB_NAME": "checks db"},
            "postgresql://[::1]:5433/checks%20db",
        ),
        (
            {"DB_HOST": "/run/postgresql", "DB_PORT": "5433", "DB_USER": "lord"},
            "postgresql://lord@?host=%2Frun%2Fpostgresql&port=5433",
        ),
        ({"DB_PASS": "s:e/c"}, "postgresql://:s%3Ae%2Fc@"),
    ],
)
def test_db_variables_become_a_postgresql_url(
    variables: dict[str, str], url: str
) -> None:
    settings = settings_from(build_parser().parse_args(["serve"]), variables)

    assert settings.database_url == url


def test_each_part_of_the_url_reads_back_as_it_was_given() -> None:
    variables = {
        "DB_HOST": "127.0.0.1",
        "DB_USER": "ops@team:1",
        "DB_PASS": ODD_PASSWORD,
        "DB_NAME": "my/db?",
    }

    url = settings_from(build_parser().parse_args(["serve"]), variables)
    parts = urlsplit(url.database_url)

    assert parts.hostname == "127.0.0.1"
    assert unquote(parts.username or "") == "ops@team:1"
    assert unquote(parts.password or "") == ODD_PASSWORD
    assert unquote(parts.path[1:]) == "my/db?"


def test_a_database_url_wins_over_the_db_variables() -> None:
    variables = {"DB_HOST": "db.example", "DB_NAME": "checks"}
    flag = ["check", "list", "--database-url", "sqlite:////tmp/a.sqlite3"]

    from_flag = settings_from(build_parser().parse_args(flag), variables)
    from_env = settings_from(
        build_parser().parse_args(["serve"]),
        {**variables, "SERVERLORD_DATABASE_URL": "sqlite:////tmp/b.sqlite3"},
    )

    assert from_flag.database_url == "sqlite:////tmp/a.sqlite3"
    assert from_env.database_url == "sqlite:////tmp/b.sqlite3"


def test_shard_count_is_the_fall_back_of_the_shards_setting() -> None:
    def shards(argv: list[str], environ: dict[str, str]) -> int:
        return settings_from(build_parser().parse_args(argv), environ).shards

    assert shards(["serve"], {"SHARD_COUNT": "3"}) == 3
    assert shards(["serve"], {"SHARD_COUNT": "3", "SERVERLORD_SHARDS": "5"}) == 5
    assert shards(["serve", "--shards", "7"], {"SHARD_COUNT": "3"}) == 7
    assert shards(["serve"], {}) == Settings().shards


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SHARD_COUNT", "0"), ("SHARD_COUNT", "many"), ("DB_PORT", "fifty")],
)
def test_a_bad_older_variable_is_refused_by_name(
    run: Run, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    result = run("serve")

    assert result.code == 2
    assert f"{variable}: {value!r} is not valid" in one_line(result.err)


def test_a_bad_database_url_never_shows_its_password() -> None:
    args = build_parser().parse_args(["serve"])
    environ = {"SERVERLORD_DATABASE_URL": "postgresql://lord:s3cret@host:x/db"}

    with pytest.raises(SettingsError) as raised:
        settings_from(args, environ)

    assert "s3cret" not in str(raised.value)
    assert "lord:***@host" in str(raised.value)
