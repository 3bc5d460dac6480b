"""``serverlord channel`` and the channel options of ``serverlord check``.

The CLI runs in this process on a store in the test's folder; ``channel test``
sends to a real HTTP receiver on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from serverlord.config import Settings
from serverlord.notifier import Notifier
from serverlord.pings import FAIL, SUCCESS_KIND, Ping
from serverlord.store import open_store
from tests.cli_runner import Run, runner
from tests.conftest import on_both_backends
from tests.receivers import WebhookReceiver, closed_port

# Apprise's e-mail plugin imports imghdr, deprecated since Python 3.11.
pytestmark = pytest.mark.filterwarnings(
    "ignore:'imghdr' is deprecated:DeprecationWarning"
)

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SECRET = "s3cr3t-pw"


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
    return runner(
        capsys,
        monkeypatch,
        tmp_path,
        base_url="http://127.0.0.1:9999",
        notify_timeout="5s",
        **database,
    )


def add_channel(run: Run, url: str, *args: str) -> dict[str, Any]:
    result = run("channel", "add", url, *args, "--json")
    assert result.code == 0, result.err
    data: dict[str, Any] = result.json()
    return data


def add_check(run: Run, *args: str) -> dict[str, Any]:
    result = run("check", "add", "backup", *args, "--json")
    assert result.code == 0, result.err
    data: dict[str, Any] = result.json()
    return data


def linked(run: Run, check_id: str) -> list[str]:
    result = run("check", "channels", check_id, "--json")
    assert result.code == 0, result.err
    channels: list[str] = result.json()["channels"]
    return channels


# channel add


def test_channel_add_prints_the_name_the_masked_url_and_the_id(
    run: Run, receiver: WebhookReceiver
) -> None:
    result = run("channel", "add", receiver.url(), "--name", "ops team")

    assert result.code == 0, result.err
    assert result.out.startswith(
        f"added channel 'ops team' (json://127.0.0.1:{receiver.port}/****"
    )
    match = re.search(r"^id: (\S+)$", result.out, re.MULTILINE)
    assert match and UUID.fullmatch(match[1])
    assert f"check channels CHECK_ID --set {match[1]}" in result.out


def test_channel_add_json_names_the_channel_after_its_service_by_default(
    run: Run, receiver: WebhookReceiver
) -> None:
    data = add_channel(run, receiver.url())

    assert UUID.fullmatch(data["id"])
    assert data["name"] == "json"
    assert data["kind"] == "json"
    assert data["url"].startswith(f"json://127.0.0.1:{receiver.port}/****")
    assert (data["last_attempt"], data["last_ok"], data["last_error"]) == (
        None,
        None,
        None,
    )
    [listed] = run("channel", "list", "--json").json()
    assert listed == data


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("xyz://nope", 'unknown scheme "xyz"'),
        ("json://", "Apprise could not parse it"),
        ("", "it has no scheme like json:// or mailto://"),
        ("   ", "it has no scheme like json:// or mailto://"),
        ("just some words", "it has no scheme"),
        ("slack://", "Apprise could not parse it"),
    ],
)
def test_channel_add_refuses_a_url_apprise_cannot_parse(
    run: Run, url: str, why: str
) -> None:
    result = run("channel", "add", url, "--name", "bad")

    assert result.code == 2
    assert result.out == ""
    assert result.err.startswith("serverlord: error: url: ")
    assert "is not a URL Apprise can send to" in result.err
    assert why in result.err
    assert run("channel", "list", "--json").json() == []


def test_channel_add_refuses_a_name_that_is_not_printable(
    run: Run, receiver: WebhookReceiver
) -> None:
    result = run("channel", "add", receiver.url(), "--name", "ops\x1b[2J")

    assert result.code == 2
    assert "--name" in result.err
    assert run("channel", "list", "--json").json() == []


# channel list


@on_both_backends
def test_channel_list_masks_the_password_in_text_and_in_json(
    run: Run, receiver: WebhookReceiver
) -> None:
    url = receiver.url("/x", userinfo=f"user:{SECRET}")

    added = run("channel", "add", url, "--name", "with password")
    as_json = run("channel", "add", url, "--name", "again", "--json")
    text = run("channel", "list")
    listed = run("channel", "list", "--json")

    for result in (added, as_json, text, listed):
        assert result.code == 0, result.err
        assert SECRET not in result.out + result.err
    assert f"json://user:****@127.0.0.1:{receiver.port}/****" in text.out
    assert [c["name"] for c in listed.json()] == ["with password", "again"]
    assert all("user:****@" in c["url"] for c in listed.json())


def test_channel_list_masks_secrets_in_headers_and_payload_fields(
    run: Run, receiver: WebhookReceiver
) -> None:
    url = receiver.url(f"/x?+Authorization=Bearer%20{SECRET}&:token={SECRET}")

    added = run("channel", "add", url, "--name", "header", "--json")
    text = run("channel", "list")
    listed = run("channel", "list", "--json")

    for result in (added, text, listed):
        assert result.code == 0, result.err
        assert SECRET not in result.out + result.err
    [data] = listed.json()
    assert "%2BAuthorization=****" in data["url"]
    assert "%3Atoken=****" in data["url"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"json://127.0.0.1:9/hooks/{SECRET}", "json://127.0.0.1:9/****/****?"),
        (f"jsons://{SECRET}@127.0.0.1/x", "jsons://****@127.0.0.1/****?"),
        (f"form://127.0.0.1/{SECRET}", "form://127.0.0.1/****?"),
        (f"ntfys://ntfy.example/{SECRET}", "ntfys://ntfy.example/****?"),
        (f"ntfy://{SECRET}", "ntfys://****?"),
    ],
)
def test_a_webhook_path_a_bare_user_or_an_ntfy_topic_is_masked(
    run: Run, url: str, shown: str
) -> None:
    added = run("channel", "add", url, "--json")
    listed = run("channel", "list", "--json")

    assert added.code == 0, added.err
    assert SECRET.lower() not in (added.out + listed.out).lower()
    assert listed.json()[0]["url"].startswith(shown)


def test_channel_list_without_channels_says_how_to_add_one(run: Run) -> None:
    result = run("channel", "list")

    assert result.code == 0
    assert "no channels yet" in result.out
    assert "serverlord channel add" in result.out


# channel test


@on_both_backends
def test_channel_test_sends_a_message_and_prints_the_result(
    run: Run, receiver: WebhookReceiver
) -> None:
    channel = add_channel(run, receiver.url(), "--name", "ops")

    result = run("channel", "test", channel["id"])

    assert result.code == 0, result.err
    assert re.fullmatch(r"sent a test message to 'ops' in \d+\.\d\ds\n", result.out)
    receiver.wait(1)
    [post] = receiver.posts()
    assert post.title == "TEST: serverlord to ops"
    assert post.type == "info"
    assert "Channel: ops" in post.message
    listed = run("channel", "list")
    assert "last delivery: ok at " in listed.out


def test_channel_test_json_reports_success(run: Run, receiver: WebhookReceiver) -> None:
    channel = add_channel(run, receiver.url(), "--name", "ops")

    result = run("channel", "test", channel["id"], "--json")

    assert result.code == 0, result.err
    data = result.json()
    assert (data["id"], data["ok"], data["error"]) == (channel["id"], True, None)
    assert data["latency"] >= 0
    [listed] = run("channel", "list", "--json").json()
    assert listed["last_ok"] is True and listed["last_error"] is None
    assert listed["last_attempt"] is not None


def test_channel_test_to_a_receiver_that_is_down_exits_1_with_the_error(
    run: Run,
) -> None:
    channel = add_channel(
        run, f"json://127.0.0.1:{closed_port()}/hook", "--name", "nobody"
    )

    result = run("channel", "test", channel["id"])
    as_json = run("channel", "test", channel["id"], "--json")

    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith("serverlord: test message to 'nobody' failed: ")
    assert "Connection error" in result.err
    assert as_json.code == 1
    assert as_json.json()["ok"] is False
    assert "Connection error" in as_json.json()["error"]
    listed = run("channel", "list")
    assert "last delivery: FAILED at " in listed.out
    assert "Connection error" in listed.out
    [data] = run("channel", "list", "--json").json()
    assert data["last_ok"] is False and "Connection error" in data["last_error"]


def test_channel_test_to_a_receiver_that_answers_500_exits_1(
    run: Run, receiver: WebhookReceiver
) -> None:
    receiver.scripts["/broken"] = [500]
    channel = add_channel(run, receiver.url("/broken"), "--name", "broken")

    result = run("channel", "test", channel["id"])

    assert result.code == 1
    assert "error=500" in result.err


# channel rm and channel ids


@on_both_backends
def test_channel_rm_removes_the_channel_and_its_links(
    run: Run, receiver: WebhookReceiver
) -> None:
    channel = add_channel(run, receiver.url(), "--name", "old")
    check = add_check(run)
    assert linked(run, check["uuid"]) == [channel["id"]]

    result = run("channel", "rm", channel["id"])

    assert result.code == 0, result.err
    assert result.out == f"removed channel 'old' ({channel['id']})\n"
    assert run("channel", "list", "--json").json() == []
    assert linked(run, check["uuid"]) == []
    again = run("channel", "rm", channel["id"], "--json")
    assert again.code == 1
    assert f"no channel has the id {channel['id']}" in again.err


def test_channel_rm_json(run: Run, receiver: WebhookReceiver) -> None:
    channel = add_channel(run, receiver.url())

    result = run("channel", "rm", channel["id"], "--json")

    assert result.code == 0
    assert result.json() == {"id": channel["id"], "deleted": True}


@pytest.mark.parametrize("action", ["test", "rm"])
def test_an_unknown_channel_id_exits_1(run: Run, action: str) -> None:
    unknown = str(uuid.uuid4())

    result = run("channel", action, unknown)

    assert result.code == 1
    assert result.err == f"serverlord: no channel has the id {unknown}\n"


@pytest.mark.parametrize("text", ["nope", "", "12345", "a,b"])
@pytest.mark.parametrize("action", ["test", "rm"])
def test_a_malformed_channel_id_exits_2(run: Run, action: str, text: str) -> None:
    result = run("channel", action, text)

    assert result.code == 2
    assert result.err.startswith("serverlord: error: ")
    assert "is not a channel id" in result.err


def test_two_channel_ids_where_one_is_expected_exit_2(
    run: Run, receiver: WebhookReceiver
) -> None:
    first = add_channel(run, receiver.url("/a"))
    second = add_channel(run, receiver.url("/b"))

    result = run("channel", "rm", f"{first['id']},{second['id']}")

    assert result.code == 2
    assert "is not a channel id" in result.err
    assert len(run("channel", "list", "--json").json()) == 2


# channel services


def test_channel_services_lists_every_apprise_service_with_its_schemes(
    run: Run,
) -> None:
    result = run("channel", "services", "--json")

    assert result.code == 0, result.err
    services = result.json()
    by_scheme = {scheme: s for s in services for scheme in s["schemes"]}
    assert len(services) > 100
    assert by_scheme["json"] == {
        "name": "JSON",
        "schemes": ["json", "jsons"],
        "enabled": True,
    }
    assert {"mailto", "mailtos", "slack", "discord"} <= by_scheme.keys()


def test_channel_services_marks_the_services_that_cannot_send_from_here(
    run: Run,
) -> None:
    listed = run("channel", "services", "--json").json()
    text = run("channel", "services").out.splitlines()

    assert len(text) == len(listed)
    for service, line in zip(listed, text, strict=True):
        assert line.startswith(service["name"])
        assert ("disabled" in line) == (not service["enabled"])
    assert any(line.startswith("JSON ") and "json://" in line for line in text)


# check add and check channels


@on_both_backends
def test_a_new_check_alerts_every_channel_by_default(
    run: Run, receiver: WebhookReceiver
) -> None:
    ids = sorted(add_channel(run, receiver.url(f"/{n}"))["id"] for n in range(3))

    data = add_check(run)
    text = run("check", "add", "other")

    assert sorted(data["channels"]) == ids
    assert linked(run, data["uuid"]) == ids
    assert "alerts go to 3 channel(s)" in text.out


def test_a_new_check_without_any_channel_alerts_none(run: Run) -> None:
    data = add_check(run)

    assert data["channels"] == []
    assert linked(run, data["uuid"]) == []


@on_both_backends
def test_check_add_with_channel_links_only_those(
    run: Run, receiver: WebhookReceiver
) -> None:
    first, second, _ = (add_channel(run, receiver.url(f"/{n}")) for n in range(3))

    one = add_check(run, "--channel", first["id"])
    two = add_check(run, "--channel", first["id"], "--channel", second["id"])
    commas = add_check(run, "--channel", f"{second['id']},{first['id']}")

    assert one["channels"] == [first["id"]]
    assert linked(run, one["uuid"]) == [first["id"]]
    both = sorted([first["id"], second["id"]])
    assert sorted(linked(run, two["uuid"])) == both
    assert sorted(linked(run, commas["uuid"])) == both


def test_a_channel_named_twice_is_linked_and_counted_once(
    run: Run, receiver: WebhookReceiver
) -> None:
    channel = add_channel(run, receiver.url())

    twice = add_check(run, "--channel", channel["id"], "--channel", channel["id"])
    said = run("check", "add", "other", "--channel", f"{channel['id']},{channel['id']}")

    assert twice["channels"] == [channel["id"]]
    assert linked(run, twice["uuid"]) == [channel["id"]]
    assert "alerts go to 1 channel(s)" in said.out


def test_check_add_with_no_channels_links_none(
    run: Run, receiver: WebhookReceiver
) -> None:
    add_channel(run, receiver.url())

    data = add_check(run, "--no-channels")

    assert data["channels"] == []
    assert linked(run, data["uuid"]) == []


@on_both_backends
def test_check_add_with_an_unknown_channel_adds_no_check(run: Run) -> None:
    unknown = str(uuid.uuid4())

    result = run("check", "add", "backup", "--channel", unknown)

    assert result.code == 1
    assert result.err == f"serverlord: no channel has the id {unknown}\n"
    assert run("check", "list", "--json").json() == []


def test_check_add_with_a_malformed_channel_id_exits_2(run: Run) -> None:
    result = run("check", "add", "backup", "--channel", "nope")

    assert result.code == 2
    assert "channel: 'nope' is not a channel id" in result.err
    assert run("check", "list", "--json").json() == []


def test_check_add_refuses_channel_and_no_channels_together(
    run: Run, receiver: WebhookReceiver
) -> None:
    channel = add_channel(run, receiver.url())

    result = run("check", "add", "x", "--channel", channel["id"], "--no-channels")

    assert result.code == 2
    assert "--no-channels" in result.err


@on_both_backends
def test_check_channels_set_replaces_the_links(
    run: Run, receiver: WebhookReceiver
) -> None:
    first, second, third = (add_channel(run, receiver.url(f"/{n}")) for n in range(3))
    check = add_check(run, "--channel", first["id"])

    result = run(
        "check", "channels", check["uuid"], "--set", f"{second['id']},{third['id']}"
    )

    assert result.code == 0, result.err
    assert sorted(linked(run, check["uuid"])) == sorted([second["id"], third["id"]])
    text = run("check", "channels", check["uuid"])
    assert text.out.startswith("check 'backup' alerts: ")
    assert second["id"] in text.out and first["id"] not in text.out


def test_check_channels_set_empty_unlinks_every_channel(
    run: Run, receiver: WebhookReceiver
) -> None:
    add_channel(run, receiver.url())
    check = add_check(run)

    result = run("check", "channels", check["uuid"], "--set", "", "--json")

    assert result.code == 0, result.err
    assert result.json() == {"uuid": check["uuid"], "channels": []}
    text = run("check", "channels", check["uuid"])
    assert text.out == "check 'backup' alerts no channel\n"


@on_both_backends
def test_check_channels_set_with_an_unknown_channel_changes_nothing(
    run: Run, receiver: WebhookReceiver
) -> None:
    channel = add_channel(run, receiver.url())
    check = add_check(run)
    unknown = str(uuid.uuid4())

    result = run(
        "check", "channels", check["uuid"], "--set", f"{channel['id']},{unknown}"
    )
    malformed = run("check", "channels", check["uuid"], "--set", "nope")

    assert result.code == 1
    assert f"no channel has the id {unknown}" in result.err
    assert malformed.code == 2
    assert "channel: 'nope' is not a channel id" in malformed.err
    assert linked(run, check["uuid"]) == [channel["id"]]


@on_both_backends
def test_check_channels_of_an_unknown_check_exits_1(run: Run) -> None:
    unknown = str(uuid.uuid4())

    result = run("check", "channels", unknown, "--set", "")

    assert result.code == 1
    assert f"no check has the id {unknown}" in result.err


# Thresholds and reminders


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--failure-threshold", "0"),
        ("--failure-threshold", "-1"),
        ("--failure-threshold", "1001"),
        ("--recovery-threshold", "abc"),
        ("--recovery-threshold", "0"),
        ("--remind-every", "5x"),
        ("--remind-every", "0s"),
    ],
)
def test_check_add_refuses_a_bad_threshold_or_reminder_naming_the_flag(
    run: Run, flag: str, value: str
) -> None:
    result = run("check", "add", "backup", f"{flag}={value}")

    assert result.code == 2
    assert flag in result.err
    assert run("check", "list", "--json").json() == []


@on_both_backends
def test_check_add_takes_thresholds_and_reminders_and_show_prints_them(
    run: Run,
) -> None:
    data = add_check(
        run,
        "--failure-threshold",
        "3",
        "--recovery-threshold",
        "2",
        "--remind-every",
        "1h",
    )

    shown = run("check", "show", data["uuid"])

    assert shown.code == 0, shown.err
    assert "down after 3 failed runs, up after 2 successes" in shown.out
    assert "reminders     every 1h" in shown.out


# check show: the deliveries of a check


@on_both_backends
def test_check_show_lists_each_delivery_attempt_with_its_error(
    run: Run, receiver: WebhookReceiver, settings: Settings
) -> None:
    receiver.scripts["/flaky"] = [500]
    add_channel(run, receiver.url("/flaky"), "--name", "flaky")
    check = add_check(run)
    deliver_alerts(settings, check["uuid"], receiver, count=2)

    text = run("check", "show", check["uuid"])
    data = run("check", "show", check["uuid"], "--json").json()

    # Newest first.
    ok, failed = text.out.split("recent deliveries:\n")[1].splitlines()
    assert re.search(r"down\s+to flaky: FAILED: .*error=500", failed)
    assert re.search(r"down\s+to flaky: ok$", ok)
    assert [d["ok"] for d in data["deliveries"]] == [True, False]
    assert "error=500" in data["deliveries"][1]["error"]
    assert {d["state"] for d in data["deliveries"]} == {"sent"}


def deliver_alerts(
    settings: Settings, check_id: str, receiver: WebhookReceiver, count: int
) -> None:
    """Make the check go down with pings, then run a notifier until ``count``
    messages have reached ``receiver``."""
    settings = dataclasses.replace(
        settings,
        notify_timeout=5.0,
        notify_retry_base=0.05,
        notify_retry_max=0.1,
    )

    async def go() -> None:
        store = open_store(settings)
        await store.open()
        notifier = Notifier(store, settings)
        try:
            for kind in (SUCCESS_KIND, FAIL):
                await store.record_ping(Ping(check_id, time.time(), kind))
            notifier.start()
            await receiver.arrived(count)
            # The last attempt is recorded just after the receiver answers.
            give_up = time.monotonic() + 5
            while len(await store.recent_attempts(check_id, 10)) < count:
                assert time.monotonic() < give_up, "attempt not recorded"
                await asyncio.sleep(0.01)
        finally:
            await notifier.stop(wait=1.0)
            await store.close()

    asyncio.run(go())
