"""Alert storms: many alerts due at once for one channel arrive as digests.

The alerts are written by real flips in a real store (SQLite and PostgreSQL)
before the notifier starts, so that they are all due at once; the notifier
sends them through Apprise to a ``json://`` receiver or an SMTP server on
127.0.0.1. Nothing in the delivery path is mocked.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from serverlord.apprise_urls import describe_url
from serverlord.channels import Channel, Delivery
from serverlord.checks import Check
from serverlord.config import Settings
from serverlord.digests import DIGEST_CHARS, PER_DIGEST, STORM_AT, parts
from serverlord.notifier import CHANNEL_SLOTS, Notifier
from serverlord.pings import Ping
from serverlord.schedules import Schedule
from serverlord.store import Store, open_store
from tests.conftest import quick_notify_settings
from tests.database import fetch, url_of
from tests.receivers import HANG, MailSink, Post, WebhookReceiver

# Apprise's e-mail plugin imports imghdr, deprecated since Python 3.11.
pytestmark = pytest.mark.filterwarnings(
    "ignore:'imghdr' is deprecated:DeprecationWarning"
)

FLIP = re.compile(r"Flip: #(\d+)")
QUIET = 0.6
"""How long to wait to be fairly sure that no further message is on its way."""


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return quick_notify_settings(tmp_path, database_url)


@pytest.fixture
async def notifiers() -> AsyncIterator[list[Notifier]]:
    """Every notifier a test starts; all are stopped afterwards."""
    started: list[Notifier] = []
    yield started
    for notifier in started:
        await notifier.stop(wait=0.5)


# Helpers.


async def add_channel(store: Store, url: str) -> Channel:
    kind, masked = describe_url(url)
    channel = Channel(str(uuid.uuid4()), "ops", url, kind, masked, time.time())
    await store.add_channel(channel)
    return channel


async def storm(store: Store, channel: Channel, count: int) -> dict[int, Check]:
    """``count`` checks of ``channel`` that go down at once; by flip id."""
    checks = [
        Check(
            id=str(uuid.uuid4()),
            name=f"job-{i}",
            schedule=Schedule.simple(86400),
            grace=3600,
            created=time.time(),
        )
        for i in range(count)
    ]
    for check in checks:
        await store.add_check(check)
        await store.set_check_channels(check.id, [channel.id])
    await asyncio.gather(*(store.record_ping(ping(c, "success")) for c in checks))
    await asyncio.gather(*(store.record_ping(ping(c, "fail")) for c in checks))

    by_flip = {}
    for check in checks:
        [flip, _] = await store.recent_flips(check.id, 2)
        assert flip.id is not None
        by_flip[flip.id] = check
    return by_flip


def ping(check: Check, kind: str) -> Ping:
    return Ping(check_id=check.id, received=time.time(), kind=kind, body=b"")


def start(store: Store, settings: Settings, started: list[Notifier]) -> Notifier:
    notifier = Notifier(store, settings)
    notifier.start()
    started.append(notifier)
    return notifier


def flips_in(posts: list[Post]) -> list[int]:
    return [int(found) for post in posts for found in FLIP.findall(post.message)]


async def all_arrived(
    receiver: WebhookReceiver, flips: set[int], timeout: float = 20
) -> list[Post]:
    give_up = time.monotonic() + timeout
    while not flips <= set(flips_in(receiver.posts())):
        if time.monotonic() > give_up:
            missing = flips - set(flips_in(receiver.posts()))
            raise AssertionError(f"{len(missing)} flips never arrived")
        await asyncio.sleep(0.02)
    return receiver.posts()


async def states(settings: Settings) -> Counter[tuple[str, int]]:
    """How many deliveries are in each (state, attempts)."""
    rows = await fetch(url_of(settings), "SELECT state, attempts FROM deliveries")
    return Counter((state, attempts) for state, attempts in rows)


async def settled(settings: Settings, count: int, timeout: float = 20) -> None:
    """Wait until ``count`` deliveries are sent."""
    give_up = time.monotonic() + timeout
    while True:
        sent = sum(
            n for (state, _), n in (await states(settings)).items() if state == "sent"
        )
        if sent == count:
            return
        if time.monotonic() > give_up:
            raise AssertionError(f"{sent} of {count} deliveries sent")
        await asyncio.sleep(0.02)


# What is sent.


def test_a_storm_is_more_than_a_channel_may_send_at_once() -> None:
    assert STORM_AT == CHANNEL_SLOTS + 1


async def test_a_storm_to_one_channel_arrives_as_digests_listing_each_flip_once(
    store: Store,
    settings: Settings,
    receiver: WebhookReceiver,
    notifiers: list[Notifier],
) -> None:
    channel = await add_channel(store, receiver.url())
    flips = await storm(store, channel, 100)

    start(store, settings, notifiers)
    posts = await all_arrived(receiver, set(flips))
    await settled(settings, 100)
    await asyncio.sleep(QUIET)

    # All due at once: one claim, digests of PER_DIGEST and what is left.
    assert len(receiver.posts()) == 3
    assert sorted(flips_in(posts)) == sorted(flips)
    for post in posts:
        listed = FLIP.findall(post.message)
        assert len(listed) <= PER_DIGEST
        assert len(post.message) <= DIGEST_CHARS
        assert post.title == f"{len(listed)} ALERTS: {len(listed)} down"
        assert post.type == "failure"
    for line in posts[0].message.splitlines()[1:]:
        flip_id = int(FLIP.findall(line)[0])
        assert line.startswith(f"- DOWN: {flips[flip_id].name} (failure ping)")
    assert await states(settings) == {("sent", 1): 100}


async def test_a_storm_by_email_arrives_as_one_digest(
    store: Store, settings: Settings, mail: MailSink, notifiers: list[Notifier]
) -> None:
    channel = await add_channel(store, mail.url())
    flips = await storm(store, channel, 30)

    start(store, settings, notifiers)
    [message] = await mail.arrived(1)
    await settled(settings, 30)
    await asyncio.sleep(QUIET)

    assert len(mail.messages) == 1
    assert message["Subject"] == "30 ALERTS: 30 down"
    text = message.get_content()
    assert sorted(int(f) for f in FLIP.findall(text)) == sorted(flips)


async def test_a_few_alerts_to_one_channel_are_sent_one_by_one(
    store: Store,
    settings: Settings,
    receiver: WebhookReceiver,
    notifiers: list[Notifier],
) -> None:
    channel = await add_channel(store, receiver.url())
    flips = await storm(store, channel, STORM_AT - 1)

    start(store, settings, notifiers)
    posts = await all_arrived(receiver, set(flips))
    await asyncio.sleep(QUIET)

    assert len(receiver.posts()) == STORM_AT - 1
    for post in posts:
        [flip_id] = [int(f) for f in FLIP.findall(post.message)]
        assert post.title == f"DOWN: {flips[flip_id].name} (failure ping)"
        assert post.message.startswith(f"Check: {flips[flip_id].name}\n")


async def test_a_single_alert_is_a_single_message(
    store: Store,
    settings: Settings,
    receiver: WebhookReceiver,
    notifiers: list[Notifier],
) -> None:
    channel = await add_channel(store, receiver.url())
    [flip_id] = await storm(store, channel, 1)

    start(store, settings, notifiers)
    [post] = await all_arrived(receiver, {flip_id})
    await asyncio.sleep(QUIET)

    assert len(receiver.posts()) == 1
    assert post.title == "DOWN: job-0 (failure ping)"
    assert "Status: down (was up)" in post.message.splitlines()


# Failures and restarts.


async def test_a_failed_digest_is_retried_for_every_alert_it_carries(
    store: Store,
    settings: Settings,
    receiver: WebhookReceiver,
    notifiers: list[Notifier],
) -> None:
    receiver.scripts["/hook"] = [500]
    channel = await add_channel(store, receiver.url())
    flips = await storm(store, channel, 60)

    start(store, settings, notifiers)
    await all_arrived(receiver, set(flips))
    await settled(settings, 60)
    await asyncio.sleep(QUIET)

    # The first POST got the 500: its alerts came back as one digest again.
    failed, *accepted = receiver.posts()
    assert len(accepted) == 2
    assert sorted(flips_in(accepted)) == sorted(flips)
    retried = [p for p in accepted if set(flips_in([p])) == set(flips_in([failed]))]
    assert len(retried) == 1
    carried = len(flips_in([failed]))
    assert await states(settings) == {("sent", 2): carried, ("sent", 1): 60 - carried}
    rows = await fetch(
        url_of(settings),
        "SELECT ok, error FROM attempts ORDER BY at, id",
    )
    failures = [error for ok, error in rows if not ok]
    assert len(failures) == carried
    assert all("error=500" in str(error) for error in failures)


async def test_a_digest_whose_alerts_are_past_retrying_fails_them_for_good(
    store: Store,
    settings: Settings,
    receiver: WebhookReceiver,
    notifiers: list[Notifier],
) -> None:
    settings.notify_retry_for = 0.0
    receiver.scripts["/hook"] = [500]
    channel = await add_channel(store, receiver.url())
    await storm(store, channel, 20)

    start(store, settings, notifiers)
    await receiver.arrived(1)
    give_up = time.monotonic() + 10
    while await states(settings) != {("failed", 1): 20}:
        assert time.monotonic() < give_up, await states(settings)
        await asyncio.sleep(0.02)
    await asyncio.sleep(QUIET)

    assert len(receiver.posts()) == 1
    shown = await store.get_channel(channel.id)
    assert shown is not None and shown.last_ok is False
    assert "error=500" in (shown.last_error or "")


async def test_a_restart_in_the_middle_of_a_storm_loses_no_alert(
    store: Store,
    settings: Settings,
    receiver: WebhookReceiver,
    notifiers: list[Notifier],
) -> None:
    # The first digest hangs until the notifier is gone, its claim unfinished.
    receiver.scripts["/hook"] = [HANG]
    channel = await add_channel(store, receiver.url())
    flips = await storm(store, channel, 100)
    first = start(store, settings, notifiers)
    await receiver.arrived(3, timeout=20)
    hung = set(flips_in(receiver.posts()[:1]))
    await settled(settings, 100 - len(hung))

    await first.stop(wait=0.1)
    await store.close()
    receiver.release()
    reopened = open_store(settings)
    await reopened.open()
    try:
        start(reopened, settings, notifiers)
        await settled(settings, 100)
        await asyncio.sleep(QUIET)
    finally:
        for notifier in notifiers:
            await notifier.stop(wait=0.5)
        await reopened.close()

    # The hung digest went out again; every flip arrived, none was lost.
    arrived = Counter(flips_in(receiver.posts()))
    assert set(arrived) == set(flips)
    assert {f for f, n in arrived.items() if n == 2} == hung
    assert await states(settings) == {
        ("sent", 2): len(hung),
        ("sent", 1): 100 - len(hung),
    }


def delivery(n: int, kind: str = "down") -> Delivery:
    return Delivery(
        id=n,
        flip_id=None if kind == "reminder" else 100 + n,
        check_id=f"check-{n}",
        channel_id="channel",
        channel_url="json://127.0.0.1:9/hook",
        kind=kind,
        title=f"{kind.upper()}: job-{n} " + "x" * 200,
        body=f"the whole alert of job-{n}",
        attempts=1,
        created=time.time(),
    )


def test_a_digest_fits_the_services_message_size_and_lists_reminders() -> None:
    deliveries = [delivery(n) for n in range(30)] + [delivery(30, "reminder")]

    found = parts(deliveries, 2000)

    assert len(found) > 1
    assert [d for part in found for d in part.deliveries] == deliveries
    assert all(len(part.body) <= 2000 for part in found)
    assert "1 still down" in found[-1].title
    assert found[-1].body.endswith("| Check id: check-30")


def test_a_service_too_small_for_two_lines_gets_each_alert_as_it_is() -> None:
    deliveries = [delivery(n) for n in range(3)]

    found = parts(deliveries, 160)

    assert [(p.title, p.body) for p in found] == [(d.title, d.body) for d in deliveries]
