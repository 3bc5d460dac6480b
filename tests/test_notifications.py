"""Alerts from a live server to real peers: an HTTP receiver and an SMTP server.

Checks are pinged over HTTP and go down on their own deadlines; the alerts go
through Apprise to a ``json://`` receiver or a ``mailto://`` server on
127.0.0.1. Nothing in the delivery path is mocked.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from serverlord.apprise_urls import describe_url
from serverlord.channels import Channel
from serverlord.checks import DOWN, NEW, PAUSED, UP, Check, Flip
from serverlord.config import Settings
from serverlord.schedules import Schedule
from serverlord.store import Store
from tests.conftest import Live, quick_notify_settings
from tests.database import fetch, url_of
from tests.receivers import (
    CLOSE,
    HANG,
    MailSink,
    Post,
    WebhookReceiver,
    closed_port,
)

# Apprise's e-mail plugin imports imghdr, deprecated since Python 3.11.
pytestmark = pytest.mark.filterwarnings(
    "ignore:'imghdr' is deprecated:DeprecationWarning"
)

DAY = 86400.0
QUIET = 0.6
"""How long to wait to be fairly sure that no further message is on its way."""
LAG = 1.0
"""Longest accepted time from a deadline to its flip being stored."""


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return quick_notify_settings(tmp_path, database_url)


# Helpers.


async def add_channel(store: Store, url: str, name: str = "ops") -> Channel:
    kind, masked = describe_url(url)
    channel = Channel(str(uuid.uuid4()), name, url, kind, masked, time.time())
    await store.add_channel(channel)
    return channel


async def add_check(
    store: Store, channels: list[Channel], name: str = "backup", **fields: Any
) -> Check:
    """A check linked to ``channels``: every day with an hour of grace, unless
    told otherwise."""
    fields.setdefault("schedule", Schedule.simple(DAY))
    fields.setdefault("grace", 3600.0)
    check = Check(id=str(uuid.uuid4()), name=name, created=time.time(), **fields)
    await store.add_check(check)
    await store.set_check_channels(check.id, [c.id for c in channels])
    return check


async def ping(live: Live, check: Check, suffix: str = "", body: bytes = b"") -> None:
    path = f"/ping/{check.id}" + (f"/{suffix}" if suffix else "")
    response = await live.client.post(path, content=body)
    assert response.status_code == 200, response.text


async def flips_of(store: Store, check: Check) -> list[Flip]:
    """The check's flips, oldest first."""
    return list(reversed(await store.recent_flips(check.id, 100)))


async def eventually(
    condition: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0
) -> None:
    give_up = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > give_up:
            raise AssertionError(f"not so within {timeout} s")
        await asyncio.sleep(0.01)


async def outbox(settings: Settings, check: Check) -> list[tuple[str, str]]:
    """The kind and state of each delivery written for the check, oldest first."""
    rows = await fetch(
        url_of(settings),
        "SELECT kind, state FROM deliveries WHERE check_id = ? ORDER BY id",
        check.id,
    )
    return [(kind, state) for kind, state in rows]


async def outbox_is(
    settings: Settings, check: Check, expected: list[tuple[str, str]]
) -> bool:
    return await outbox(settings, check) == expected


async def attempts_of(store: Store, check: Check) -> list[dict[str, object]]:
    """The check's delivery attempts, oldest first."""
    return list(reversed(await store.recent_attempts(check.id, 100)))


async def channel_of(store: Store, channel: Channel) -> Channel:
    found = await store.get_channel(channel.id)
    assert found is not None
    return found


def titles(posts: list[Post]) -> list[str]:
    return [post.title for post in posts]


# What is sent, and when.


async def test_a_check_that_goes_down_and_comes_back_sends_one_message_each_way(
    live: Live, receiver: WebhookReceiver
) -> None:
    channel = await add_channel(live.store, receiver.url())
    check = await add_check(live.store, [channel], schedule=Schedule.simple(1), grace=1)

    # The first ping (new -> up) says nothing; the missed deadline does.
    await ping(live, check)
    [down] = await receiver.arrived(1, timeout=10)
    [_, down_flip] = await flips_of(live.store, check)
    assert (down_flip.old_status, down_flip.new_status) == (UP, DOWN)
    assert down.path == "/hook"
    assert down.title == "DOWN: backup (missed deadline)"
    assert down.type == "failure"
    lines = down.message.splitlines()
    assert lines[:3] == [
        "Check: backup",
        "Status: down (was up)",
        "Reason: missed deadline",
    ]
    assert f"Flip: #{down_flip.id}" in lines
    assert f"Check id: {check.id}" in lines
    assert any(line.startswith("Last ping: ") for line in lines)
    assert any(line.startswith("Down since: ") for line in lines)
    assert any(line.startswith("Schedule: ") for line in lines)

    # Down for a second or so, then a ping brings it back.
    await asyncio.sleep(1.2)
    await ping(live, check)
    posts = await receiver.arrived(2)
    up = posts[1]
    up_flip = (await flips_of(live.store, check))[-1]
    assert (up_flip.old_status, up_flip.new_status) == (DOWN, UP)
    match = re.fullmatch(r"UP: backup after ([\d.]+)s down", up.title)
    assert match is not None, up.title
    assert float(match[1]) == pytest.approx(up_flip.at - down_flip.at, abs=1.0)
    assert up.type == "success"
    assert "Reason: success ping" in up.message
    assert f"Down for: {match[1]}s" in up.message
    assert f"Flip: #{up_flip.id}" in up.message

    await asyncio.sleep(QUIET)
    assert len(receiver.posts()) == 2
    assert await outbox(live.settings, check) == [("down", "sent"), ("up", "sent")]


async def test_the_first_ping_of_a_new_check_sends_nothing(
    live: Live, receiver: WebhookReceiver
) -> None:
    channel = await add_channel(live.store, receiver.url())
    check = await add_check(live.store, [channel])

    await ping(live, check)
    await asyncio.sleep(QUIET)

    [flip] = await flips_of(live.store, check)
    assert (flip.old_status, flip.new_status) == (NEW, UP)
    assert receiver.posts() == []
    assert await outbox(live.settings, check) == []


async def test_a_paused_check_that_is_pinged_again_sends_nothing(
    live: Live, receiver: WebhookReceiver
) -> None:
    channel = await add_channel(live.store, receiver.url())
    check = await add_check(live.store, [channel])
    await ping(live, check)
    await ping(live, check, "fail")
    await receiver.arrived(1)

    await live.store.pause_check(check.id, time.time())
    await ping(live, check)
    await asyncio.sleep(QUIET)

    statuses = [(f.old_status, f.new_status) for f in await flips_of(live.store, check)]
    assert statuses == [(NEW, UP), (UP, DOWN), (DOWN, PAUSED), (PAUSED, UP)]
    assert titles(receiver.posts()) == ["DOWN: backup (failure ping)"]
    assert await outbox(live.settings, check) == [("down", "sent")]


async def test_a_failure_ping_sends_a_down_alert_naming_the_reason(
    live: Live, receiver: WebhookReceiver
) -> None:
    channel = await add_channel(live.store, receiver.url())
    check = await add_check(live.store, [channel], name="db dump")
    await ping(live, check)

    await ping(live, check, "3")
    [by_status] = await receiver.arrived(1)
    await ping(live, check)
    await ping(live, check, "fail")
    posts = await receiver.arrived(3)

    flips = await flips_of(live.store, check)
    assert by_status.title == "DOWN: db dump (exit status 3)"
    assert "Reason: exit status 3" in by_status.message
    assert f"Flip: #{flips[1].id}" in by_status.message
    assert posts[1].title.startswith("UP: db dump")
    assert posts[2].title == "DOWN: db dump (failure ping)"
    assert "Reason: failure ping" in posts[2].message
    assert f"Flip: #{flips[3].id}" in posts[2].message


async def test_an_email_arrives_with_the_subject_and_a_safe_excerpt_of_the_body(
    live: Live, mail: MailSink
) -> None:
    channel = await add_channel(live.store, mail.url())
    check = await add_check(live.store, [channel], name="nightly rsync")
    await ping(live, check)

    body = b"rsync: \xff\xfe read error\x1b[31m\r\nsecond line \xc3\xa9\n"
    await ping(live, check, "fail", body)
    [message] = await mail.arrived(1)

    [flip] = [f for f in await flips_of(live.store, check) if f.new_status == DOWN]
    assert mail.envelopes[0].mail_from == "serverlord@example.test"
    assert mail.envelopes[0].rcpt_tos == ["ops@example.test"]
    assert message["Subject"] == "DOWN: nightly rsync (failure ping)"
    # SMTP ends lines with CRLF; the ping's own CRLF must not add a stray CR.
    text = message.get_content().replace("\r\n", "\n")
    assert "Check: nightly rsync" in text
    assert "Reason: failure ping" in text
    assert f"Flip: #{flip.id}" in text
    # Bad UTF-8 is replaced, control characters are shown, good UTF-8 is kept.
    assert "  rsync: \ufffd\ufffd read error\\x1b[31m\n" in text
    assert "  second line \u00e9" in text
    assert "\x1b" not in text and "\r" not in text
    await asyncio.sleep(QUIET)
    assert len(mail.messages) == 1


async def test_a_down_and_an_up_email_in_quick_succession_each_go_out_once(
    live: Live, mail: MailSink
) -> None:
    # Apprise spaces messages sent through one e-mail plugin 5.5 s apart: a
    # send must not sleep that long under the per-attempt timeout.
    live.settings.notify_timeout = 2.0
    channel = await add_channel(live.store, mail.url())
    check = await add_check(live.store, [channel], name="quick")
    await ping(live, check)

    await ping(live, check, "fail")
    await mail.arrived(1)
    await ping(live, check)
    messages = await mail.arrived(2)
    await eventually(
        lambda: outbox_is(live.settings, check, [("down", "sent"), ("up", "sent")])
    )
    await asyncio.sleep(QUIET)

    assert messages[0]["Subject"] == "DOWN: quick (failure ping)"
    assert messages[1]["Subject"].startswith("UP: quick after ")
    assert len(mail.messages) == 2
    attempts = await attempts_of(live.store, check)
    assert [(a["kind"], a["ok"]) for a in attempts] == [("down", 1), ("up", 1)]


# Failed deliveries.


async def test_a_receiver_that_answers_500_twice_gets_the_message_the_third_time(
    live: Live, receiver: WebhookReceiver
) -> None:
    receiver.scripts["/flaky"] = [500, 500]
    channel = await add_channel(live.store, receiver.url("/flaky"), name="flaky")
    check = await add_check(live.store, [channel])
    await ping(live, check)

    await ping(live, check, "fail")
    posts = await receiver.arrived(3)
    await eventually(lambda: outbox_is(live.settings, check, [("down", "sent")]))

    assert titles(posts) == ["DOWN: backup (failure ping)"] * 3
    attempts = await attempts_of(live.store, check)
    assert [a["ok"] for a in attempts] == [0, 0, 1]
    for failed in attempts[:2]:
        assert "error=500" in str(failed["error"])
    assert attempts[2]["error"] is None
    assert {(a["kind"], a["channel_name"], a["state"]) for a in attempts} == {
        ("down", "flaky", "sent")
    }
    shown = await channel_of(live.store, channel)
    assert (shown.last_ok, shown.last_error) == (True, None)
    assert shown.last_attempt == attempts[2]["at"]
    await asyncio.sleep(QUIET)
    assert len(receiver.posts()) == 3


async def test_a_receiver_that_closes_the_connection_is_tried_again(
    live: Live, receiver: WebhookReceiver
) -> None:
    receiver.scripts["/rude"] = [CLOSE]
    channel = await add_channel(live.store, receiver.url("/rude"))
    check = await add_check(live.store, [channel])
    await ping(live, check)

    await ping(live, check, "fail")
    await receiver.arrived(2)
    await eventually(lambda: outbox_is(live.settings, check, [("down", "sent")]))

    attempts = await attempts_of(live.store, check)
    assert [a["ok"] for a in attempts] == [0, 1]
    assert "Connection error" in str(attempts[0]["error"])


async def test_a_message_to_a_receiver_that_is_down_goes_out_once_it_is_up(
    live: Live,
) -> None:
    port = closed_port()
    channel = await add_channel(live.store, f"json://127.0.0.1:{port}/late")
    check = await add_check(live.store, [channel])
    await ping(live, check)

    await ping(live, check, "fail")

    async def failed_twice() -> bool:
        attempts = await attempts_of(live.store, check)
        return len(attempts) >= 2

    await eventually(failed_twice)
    shown = await channel_of(live.store, channel)
    assert shown.last_ok is False
    assert "Connection error" in (shown.last_error or "")

    late = WebhookReceiver(port)
    try:
        [post] = await late.arrived(1)
        await eventually(lambda: outbox_is(live.settings, check, [("down", "sent")]))
        await asyncio.sleep(QUIET)
        assert len(late.posts()) == 1
    finally:
        late.close()

    assert post.title == "DOWN: backup (failure ping)"
    attempts = await attempts_of(live.store, check)
    assert [a["ok"] for a in attempts][-1] == 1
    assert all(a["ok"] == 0 for a in attempts[:-1])
    assert all("Connection error" in str(a["error"]) for a in attempts[:-1])
    shown = await channel_of(live.store, channel)
    assert (shown.last_ok, shown.last_error) == (True, None)


async def test_a_receiver_that_hangs_is_timed_out_and_retried_without_blocking(
    live: Live, receiver: WebhookReceiver
) -> None:
    live.settings.notify_timeout = 0.5
    receiver.scripts["/slow"] = [HANG] * 50
    slow = await add_channel(live.store, receiver.url("/slow"), name="slow")
    fast = await add_channel(live.store, receiver.url("/fast"), name="fast")
    stuck = await add_check(live.store, [slow], name="stuck")
    other = await add_check(
        live.store, [fast], name="other", schedule=Schedule.simple(1), grace=1
    )
    await ping(live, stuck)

    # While every send to /slow hangs, another check misses its deadline.
    await ping(live, stuck, "fail")
    await receiver.arrived(1, "/slow")
    await ping(live, other)
    [fast_alert] = await receiver.arrived(1, "/fast")

    [flip] = [f for f in await flips_of(live.store, other) if f.new_status == DOWN]
    assert flip.detected - flip.at < LAG
    assert fast_alert.title == "DOWN: other (missed deadline)"
    [(kind, state)] = await outbox(live.settings, stuck)
    assert (kind, state) in {("down", "pending"), ("down", "sending")}
    timed_out = await attempts_of(live.store, stuck)
    assert len(timed_out) >= 2
    assert all(a["ok"] == 0 for a in timed_out)
    assert all("timed out" in str(a["error"]) for a in timed_out)

    # The receiver answers again: the message goes out.
    receiver.scripts["/slow"].clear()
    receiver.release()
    await eventually(lambda: outbox_is(live.settings, stuck, [("down", "sent")]))
    attempts = await attempts_of(live.store, stuck)
    assert attempts[-1]["ok"] == 1
    assert all(a["ok"] == 0 for a in attempts[:-1])


# Less noise.


async def test_the_failure_threshold_holds_the_alert_until_the_third_failure(
    live: Live, receiver: WebhookReceiver
) -> None:
    channel = await add_channel(live.store, receiver.url())
    check = await add_check(live.store, [channel], failure_threshold=3)
    await ping(live, check)

    for _ in range(2):
        await ping(live, check, "fail")
    await asyncio.sleep(QUIET)
    assert receiver.posts() == []
    assert await outbox(live.settings, check) == []

    await ping(live, check, "fail")
    [alert] = await receiver.arrived(1)
    await asyncio.sleep(QUIET)

    assert alert.title == "DOWN: backup (failure ping)"
    assert len(receiver.posts()) == 1
    statuses = [(f.old_status, f.new_status) for f in await flips_of(live.store, check)]
    assert statuses == [(NEW, UP), (UP, DOWN)]


async def test_the_recovery_threshold_holds_the_up_alert_until_the_second_success(
    live: Live, receiver: WebhookReceiver
) -> None:
    channel = await add_channel(live.store, receiver.url())
    check = await add_check(live.store, [channel], recovery_threshold=2)
    await ping(live, check)
    await ping(live, check, "fail")
    await receiver.arrived(1)

    await ping(live, check)
    await asyncio.sleep(QUIET)
    assert titles(receiver.posts()) == ["DOWN: backup (failure ping)"]
    stored = await live.store.get_check(check.id)
    assert stored is not None and stored.status == DOWN

    await ping(live, check)
    posts = await receiver.arrived(2)
    await asyncio.sleep(QUIET)

    assert posts[1].title.startswith("UP: backup after ")
    assert len(receiver.posts()) == 2


async def test_reminders_come_while_the_check_is_down_and_stop_when_it_is_up(
    live: Live, receiver: WebhookReceiver
) -> None:
    channel = await add_channel(live.store, receiver.url())
    check = await add_check(live.store, [channel], reminder_every=1.0)
    await ping(live, check)
    await ping(live, check, "fail")

    # The down alert, then a reminder about every second.
    posts = await receiver.arrived(3, timeout=15)
    assert posts[0].title == "DOWN: backup (failure ping)"
    for reminder in posts[1:3]:
        assert reminder.title.startswith("STILL DOWN: backup (down for ")
        assert reminder.type == "warning"
        assert "Reminders: every 1s while down" in reminder.message
    assert posts[2].at - posts[1].at > 0.5

    await ping(live, check)

    def said_up() -> bool:
        return any(p.title.startswith("UP: ") for p in receiver.posts())

    await eventually(said_up)
    await asyncio.sleep(QUIET)
    after_up = len(receiver.posts())
    await asyncio.sleep(2.5)
    assert len(receiver.posts()) == after_up
    kinds = [kind for kind, _ in await outbox(live.settings, check)]
    assert kinds[0] == "down" and kinds[-1] == "up"
    assert set(kinds[1:-1]) == {"reminder"}


async def test_reminders_stop_when_the_check_is_paused(
    live: Live, receiver: WebhookReceiver
) -> None:
    channel = await add_channel(live.store, receiver.url())
    check = await add_check(live.store, [channel], reminder_every=1.0)
    await ping(live, check)
    await ping(live, check, "fail")
    posts = await receiver.arrived(2, timeout=15)
    assert posts[1].title.startswith("STILL DOWN: backup")

    await live.store.pause_check(check.id, time.time())
    await asyncio.sleep(QUIET)
    after_pause = len(receiver.posts())
    await asyncio.sleep(2.5)

    assert len(receiver.posts()) == after_pause
    stored = await live.store.get_check(check.id)
    assert stored is not None and stored.status == PAUSED
