"""``serverlord user``, ``project`` and ``key``, and ``--project`` on the check and
channel commands, run in this process on a store in the test's folder."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from serverlord.accounts import DEFAULT_PROJECT, digest, new_api_key
from serverlord.config import Settings
from serverlord.store import open_store
from serverlord.store.queries import load_migrations
from serverlord.store.sqlite import _statements, connect
from tests.cli_runner import Run, runner


@pytest.fixture
def run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Run:
    return runner(capsys, monkeypatch, tmp_path, base_url="http://127.0.0.1:9999")


def add_user(run: Run, email: str = "alice@example.com") -> dict[str, Any]:
    result = run("user", "add", email, "--json")
    assert result.code == 0, result.err
    data: dict[str, Any] = result.json()
    return data


def test_user_add_prints_its_keys_and_ping_key_once_as_json(run: Run) -> None:
    user = add_user(run, "Alice@Example.com")

    assert set(user) == {"email", "project", "api_key", "api_key_readonly", "ping_key"}
    assert user["email"] == "alice@example.com"
    assert uuid.UUID(user["project"])
    assert len(user["api_key"]) == len(user["api_key_readonly"]) == 32
    assert user["api_key"] != user["api_key_readonly"]
    assert len(user["ping_key"]) >= 16


def test_user_add_in_text_says_the_keys_are_shown_once(run: Run) -> None:
    result = run("user", "add", "bob@example.com")

    assert result.code == 0
    assert "API key (read-write): " in result.out
    assert "API key (read-only):  " in result.out
    assert "shown this once" in result.out


def test_the_store_keeps_a_digest_of_each_key_never_the_key(
    run: Run, tmp_path: Path
) -> None:
    user = add_user(run)

    conn = sqlite3.connect(tmp_path / "serverlord.sqlite3")
    rows = conn.execute("SELECT id, digest, read_only FROM api_keys").fetchall()
    dump = "\n".join(conn.iterdump())
    conn.close()
    assert user["api_key"] not in dump
    assert user["api_key_readonly"] not in dump
    assert sorted(rows) == sorted(
        [
            (user["api_key"][:8], digest(user["api_key"]), 0),
            (user["api_key_readonly"][:8], digest(user["api_key_readonly"]), 1),
        ]
    )


def test_a_second_user_with_the_same_email_is_refused(run: Run) -> None:
    add_user(run)

    again = run("user", "add", "ALICE@example.com")

    assert again.code == 1
    assert "a user with the e-mail alice@example.com exists" in again.err
    assert len(run("project", "list", "--json").json()) == 2  # default + alice's


@pytest.mark.parametrize("email", ["", "nobody", "a@b@c", "x" * 250 + "@ex.com"])
def test_a_user_needs_an_email_address(run: Run, email: str) -> None:
    result = run("user", "add", email)

    assert result.code == 2
    assert "is not an e-mail address" in result.err


def test_project_add_needs_a_known_owner(run: Run) -> None:
    add_user(run)

    missing = run("project", "add", "ops", "--owner", "carol@example.com")
    made = run("project", "add", "ops", "--owner", "alice@example.com", "--json")

    assert missing.code == 1
    assert "no user has the e-mail carol@example.com" in missing.err
    assert made.code == 0
    project = made.json()
    assert project["name"] == "ops"
    assert project["owner"] == "alice@example.com"
    listed = run("project", "list", "--json").json()
    assert [p["name"] for p in listed] == ["default", "alice@example.com", "ops"]


def test_key_create_prints_a_key_once_and_key_list_never_shows_it(run: Run) -> None:
    user = add_user(run)

    created = run("key", "create", user["project"], "--read-only", "--json")
    listed = run("key", "list", "alice@example.com", "--json")

    assert created.code == 0
    key = created.json()
    assert key["read_only"] is True
    assert len(key["key"]) == 32
    assert key["id"] == key["key"][:8]
    assert listed.code == 0
    assert key["key"] not in listed.out
    assert [k["id"] for k in listed.json()][-1] == key["id"]
    assert all("key" not in k for k in listed.json())


def test_key_create_for_an_unknown_project_fails(run: Run) -> None:
    result = run("key", "create", "nope")

    assert result.code == 1
    assert "no project has the id or name 'nope'" in result.err


def test_api_keys_are_letters_and_digits_so_a_command_line_takes_them() -> None:
    keys = [new_api_key("p", False, 0.0)[0] for _ in range(500)]

    assert all(len(key) == 32 and key.isascii() and key.isalnum() for key in keys)
    assert len(set(keys)) == 500


def test_key_revoke_takes_the_key_or_its_id_and_only_once(run: Run) -> None:
    user = add_user(run)

    first = run("key", "revoke", user["api_key"])
    again = run("key", "revoke", user["api_key"][:8])
    listed = run("key", "list", user["project"], "--json").json()

    assert first.code == 0
    assert f"revoked API key {user['api_key'][:8]}" in first.out
    assert again.code == 1
    assert "no API key in use" in again.err
    revoked = {k["id"]: k["revoked"] for k in listed}
    assert revoked[user["api_key"][:8]] is not None
    assert revoked[user["api_key_readonly"][:8]] is None


def test_check_add_goes_to_the_default_project_without_project(run: Run) -> None:
    run("check", "add", "backup")
    user = add_user(run)
    run("check", "add", "theirs", "--project", user["project"])

    default = run("check", "list", "--project", "default", "--json").json()
    theirs = run("check", "list", "--project", "alice@example.com", "--json").json()
    every = run("check", "list", "--json").json()

    assert [c["name"] for c in default] == ["backup"]
    assert [c["name"] for c in theirs] == ["theirs"]
    assert [c["name"] for c in every] == ["backup", "theirs"]


def test_a_check_of_another_project_is_not_found_with_project(run: Run) -> None:
    user = add_user(run)
    check = run("check", "add", "backup", "--json").json()

    for action in ("show", "pause", "rm"):
        result = run("check", action, check["uuid"], "--project", user["project"])
        assert result.code == 1, action
        assert f"no check has the id {check['uuid']}" in result.err
    assert run("check", "show", check["uuid"], "--project", "default").code == 0


def test_new_checks_alert_the_channels_of_their_own_project_only(run: Run) -> None:
    user = add_user(run)
    run("channel", "add", "json://127.0.0.1:9/default")
    theirs = run(
        "channel", "add", "json://127.0.0.1:9/theirs", "--project", user["project"]
    )
    mine = run("channel", "list", "--project", user["project"], "--json").json()

    check = run("check", "add", "b", "--project", user["project"], "--json").json()

    assert theirs.code == 0
    assert [c["id"] for c in mine] == check["channels"]
    assert len(run("channel", "list", "--json").json()) == 2


def test_a_check_cannot_alert_a_channel_of_another_project(run: Run) -> None:
    user = add_user(run)
    channel = run("channel", "add", "json://127.0.0.1:9/x", "--json").json()

    result = run(
        "check", "add", "b", "--project", user["project"], "--channel", channel["id"]
    )

    assert result.code == 1
    assert f"no channel has the id {channel['id']}" in result.err
    assert run("check", "list", "--json").json() == []


def test_two_projects_of_one_name_need_an_id(run: Run) -> None:
    add_user(run)
    run("project", "add", "ops", "--owner", "alice@example.com")
    run("project", "add", "ops", "--owner", "alice@example.com")

    result = run("check", "add", "b", "--project", "ops")

    assert result.code == 1
    assert "2 projects are named 'ops'; give an id" in result.err


async def test_checks_and_channels_made_before_projects_move_to_the_default_project(
    tmp_path: Path,
) -> None:
    path = tmp_path / "serverlord.sqlite3"
    conn = connect(path)
    for number, _, sql in load_migrations("sqlite"):
        if number > 2:
            break
        for statement in _statements(sql):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
    check_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO checks (id, shard, name, kind, timeout, grace, created) "
        "VALUES (?, 1, 'old', 'simple', 60, 60, ?)",
        (check_id, time.time()),
    )
    conn.execute(
        "INSERT INTO channels (id, name, url, kind, masked_url, created) "
        "VALUES ('c1', 'old', 'json://localhost', 'json', 'json://localhost', 0)"
    )
    conn.close()

    store = open_store(Settings(data_dir=tmp_path))
    await store.open()
    try:
        default = await store.get_project(DEFAULT_PROJECT)
        checks = await store.project_checks(DEFAULT_PROJECT)
        channels = await store.project_channels(DEFAULT_PROJECT)
    finally:
        await store.close()

    assert default is not None and default.name == "default"
    assert len(default.ping_key) == 32
    assert [check.id for check in checks] == [check_id]
    assert [channel.id for channel in channels] == ["c1"]
