"""The notifier against an in-memory outbox and a real HTTP receiver.

Messages go through Apprise's ``json://`` service to a server on 127.0.0.1
that answers as each test scripts it: 200, 500, a hang, or nothing at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest

from serverlord.channels import (
    DOWN_ALERT,
    FAILED,
    PENDING,
    SENDING,
    SENT,
    AttemptResult,
    Delivery,
    Digests,
)
from serverlord.config import Settings, settings_from
from serverlord.notifier import CHANNEL_SLOTS, Notifier, retry_at
from serverlord.sending import send_message
from serverlord.store.base import Store, StoreUnavailableError

# Apprise's e-mail plugin imports imghdr, deprecated since Python 3.11.
pytestmark = pytest.mark.filterwarnings(
    "ignore:'imghdr' is deprecated:DeprecationWarning"
)

# Test settings: short timeouts and back-off so every case takes well under 2 s.
FAST = {
    "notify_timeout": 0.5,
    "notify_concurrency": 8,
    "notify_retry_base": 0.05,
    "notify_retry_max": 0.2,
    "notify_retry_for": 60.0,
}


def fast_settings(**overrides: float) -> Settings:
    settings = Settings()
    for name, value in {**FAST, **overrides}.items():
        setattr(settings, name, value)
    return settings


# A real receiver.


@dataclass
class Received:
    path: str
    payload: dict[str, Any]


class Receiver:
    """An HTTP server on 127.0.0.1 that answers POSTs as scripted per path.

    A script is a list of answers used one per request, then 200 for ever:
    a status code, or "hang" to hold the request until ``release()``.
    """

    def __init__(self, port: int = 0) -> None:
        self.received: list[Received] = []
        self.scripts: dict[str, list[int | str]] = {}
        self.delay = 0.0
        self.active = 0
        self.peak = 0
        self.released = threading.Event()
        self._lock = threading.Lock()
        self.server = _Server(("127.0.0.1", port), self._handler())
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, path: str, payload: dict[str, Any]) -> int | str:
        with self._lock:
            self.received.append(Received(path, payload))
            script = self.scripts.get(path)
            answer = script.pop(0) if script else 200
            self.active += 1
            self.peak = max(self.peak, self.active)
        return answer

    def _done(self) -> None:
        with self._lock:
            self.active -= 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(size))
                answer = receiver._answer(self.path, payload)
                try:
                    if answer == "hang":
                        receiver.released.wait(10)
                        answer = 200
                    time.sleep(receiver.delay)
                    self.send_response(int(answer))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                finally:
                    receiver._done()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up on a hanging request leaves a broken pipe.
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (until a test starts something)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# An in-memory outbox with the store's claim and finish semantics.


@dataclass
class Row:
    delivery: Delivery
    state: str = PENDING
    next_attempt: float = 0.0
    claimed_until: float | None = None
    attempts: list[AttemptResult] = field(default_factory=list)


class MemoryOutbox:
    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self.claims = 0
        self.fail_claims = 0
        self.fail_releases = 0
        self.channels: dict[str, str] = {}
        """One channel per URL, numbered as they come: channel-1, channel-2..."""

    def add(self, url: str, *, title: str = "DOWN: job", body: str = "body") -> int:
        delivery_id = len(self.rows) + 1
        channel_id = self.channels.setdefault(url, f"channel-{len(self.channels) + 1}")
        delivery = Delivery(
            id=delivery_id,
            flip_id=delivery_id * 10,
            check_id="check-1",
            channel_id=channel_id,
            channel_url=url,
            kind=DOWN_ALERT,
            title=title,
            body=body,
            attempts=0,
            created=time.time(),
        )
        self.rows[delivery_id] = Row(delivery, next_attempt=time.time())
        return delivery_id

    async def claim_deliveries(
        self,
        now: float,
        limit: int,
        lease: float,
        crowded: list[str] = [],  # noqa: B006 - read only
        per_channel: int = 8,
        digests: Digests | None = None,
    ) -> list[Delivery]:
        # Never more than per_channel to a channel, so never a storm.
        self.claims += 1
        if self.fail_claims:
            self.fail_claims -= 1
            raise OSError("database is locked")
        for row in self.rows.values():
            if row.state == SENDING and (row.claimed_until or 0) < now:
                row.state = PENDING
        due = sorted(
            (r for r in self.rows.values() if r.state == PENDING),
            key=lambda r: r.next_attempt,
        )
        claimed: list[Delivery] = []
        for row in due:
            if row.next_attempt > now or len(claimed) == limit:
                break
            channel = row.delivery.channel_id
            taken = sum(1 for d in claimed if d.channel_id == channel)
            if channel in crowded or taken >= per_channel:
                continue
            row.state, row.claimed_until = SENDING, now + lease
            row.delivery = replace(row.delivery, attempts=row.delivery.attempts + 1)
            claimed.append(row.delivery)
        return claimed

    async def finish_attempts(
        self, deliveries: list[Delivery], result: AttemptResult
    ) -> None:
        for delivery in deliveries:
            await self.finish_attempt(delivery, result)

    async def finish_attempt(self, delivery: Delivery, result: AttemptResult) -> None:
        row = self.rows[delivery.id]
        assert row.state == SENDING, "an attempt finished without a claim"
        row.attempts.append(result)
        row.claimed_until = None
        if result.ok:
            row.state = SENT
        elif result.next_attempt is None:
            row.state = FAILED
        else:
            row.state, row.next_attempt = PENDING, result.next_attempt

    async def next_delivery_at(self) -> float | None:
        pending = [r.next_attempt for r in self.rows.values() if r.state == PENDING]
        return min(pending, default=None)

    async def release_claims(self) -> int:
        if self.fail_releases:
            self.fail_releases -= 1
            raise StoreUnavailableError("database or disk is full")
        sending = [r for r in self.rows.values() if r.state == SENDING]
        for row in sending:
            row.state, row.claimed_until = PENDING, None
        return len(sending)

    async def settled(self, delivery_id: int, timeout: float = 5.0) -> Row:
        """The row once it is sent or failed for good."""
        deadline = time.monotonic() + timeout
        row = self.rows[delivery_id]
        while row.state not in (SENT, FAILED):
            assert time.monotonic() < deadline, f"still {row.state}: {row.attempts}"
            await asyncio.sleep(0.01)
        return row


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


@pytest.fixture
def outbox() -> MemoryOutbox:
    return MemoryOutbox()


@pytest.fixture
async def notifier(outbox: MemoryOutbox) -> AsyncIterator[Notifier]:
    running = Notifier(cast(Store, outbox), fast_settings())
    running.start()
    yield running
    await running.stop(wait=0.5)


# Delivery.


async def test_it_delivers_a_message_once_with_its_title_and_body(
    receiver: Receiver, outbox: MemoryOutbox, notifier: Notifier
) -> None:
    delivery_id = outbox.add(
        receiver.url(), title="DOWN: backup (missed deadline)", body="Check: backup"
    )
    notifier.wake()

    row = await outbox.settled(delivery_id)

    assert row.state == SENT
    assert [a.ok for a in row.attempts] == [True]
    assert row.attempts[0].error is None
    await asyncio.sleep(0.2)
    assert len(receiver.received) == 1
    payload = receiver.received[0].payload
    assert payload["title"] == "DOWN: backup (missed deadline)"
    assert payload["message"] == "Check: backup"
    assert payload["type"] == "failure"


async def test_wake_sends_at_once_instead_of_at_the_next_poll(
    receiver: Receiver, outbox: MemoryOutbox, notifier: Notifier
) -> None:
    await asyncio.sleep(0.2)  # the notifier has looked and found nothing
    latencies = []
    for _ in range(5):
        started = time.monotonic()
        delivery_id = outbox.add(receiver.url())
        notifier.wake()
        await outbox.settled(delivery_id)
        latencies.append(time.monotonic() - started)

    # The poll is 1 s: without wake() most of these would take ~0.5 s or more.
    assert max(latencies) < 0.3, latencies


async def test_it_retries_a_receiver_that_answers_500_until_it_takes_the_message(
    receiver: Receiver, outbox: MemoryOutbox, notifier: Notifier
) -> None:
    receiver.scripts["/flaky"] = [500, 500]
    delivery_id = outbox.add(receiver.url("/flaky"))
    notifier.wake()

    row = await outbox.settled(delivery_id)

    assert row.state == SENT
    assert [a.ok for a in row.attempts] == [False, False, True]
    for failed in row.attempts[:2]:
        assert failed.error is not None and "error=500" in failed.error
        assert failed.next_attempt is not None and failed.next_attempt > failed.at
    assert len(receiver.to("/flaky")) == 3


async def test_it_times_out_a_receiver_that_hangs_and_tries_again(
    receiver: Receiver, outbox: MemoryOutbox, notifier: Notifier
) -> None:
    receiver.scripts["/slow"] = ["hang"]
    delivery_id = outbox.add(receiver.url("/slow"))
    notifier.wake()

    row = await outbox.settled(delivery_id)

    assert [a.ok for a in row.attempts] == [False, True]
    assert row.attempts[0].error == "timed out after 0.5s"
    assert 0.5 <= row.attempts[0].latency < 0.7


async def test_it_retries_while_the_receiver_is_down_and_delivers_when_it_is_up(
    outbox: MemoryOutbox, notifier: Notifier
) -> None:
    port = closed_port()
    delivery_id = outbox.add(f"json://127.0.0.1:{port}/hook")
    notifier.wake()
    await until(lambda: len(outbox.rows[delivery_id].attempts) >= 2)

    late = Receiver(port)
    try:
        row = await outbox.settled(delivery_id)
    finally:
        late.close()

    assert row.state == SENT
    failed = [a for a in row.attempts if not a.ok]
    assert len(failed) >= 2
    assert all("Connection error" in (a.error or "") for a in failed)
    assert len(late.received) == 1


async def test_a_url_apprise_cannot_parse_fails_for_good_at_once(
    outbox: MemoryOutbox, notifier: Notifier
) -> None:
    delivery_id = outbox.add("xyz://token@nowhere")
    notifier.wake()

    row = await outbox.settled(delivery_id)
    await asyncio.sleep(0.3)

    assert row.state == FAILED
    assert len(row.attempts) == 1
    assert row.attempts[0].next_attempt is None
    assert row.attempts[0].error == (
        '"xyz://..." is not a URL Apprise can send to: unknown scheme "xyz"'
    )


async def test_it_gives_up_once_the_retry_period_is_over(
    receiver: Receiver, outbox: MemoryOutbox
) -> None:
    receiver.scripts["/broken"] = [500] * 100
    settings = fast_settings(notify_retry_for=0.3)
    notifier = Notifier(cast(Store, outbox), settings)
    notifier.start()
    try:
        delivery_id = outbox.add(receiver.url("/broken"))
        row = await outbox.settled(delivery_id)
    finally:
        await notifier.stop(wait=0.5)

    assert row.state == FAILED
    assert len(row.attempts) >= 2
    assert row.attempts[-1].next_attempt is None
    assert all(a.next_attempt is not None for a in row.attempts[:-1])


async def test_each_delivery_keeps_its_own_error(
    receiver: Receiver, outbox: MemoryOutbox, notifier: Notifier
) -> None:
    receiver.scripts["/a"] = [500]
    receiver.scripts["/b"] = [404]
    first = outbox.add(receiver.url("/a"))
    second = outbox.add(receiver.url("/b"))
    notifier.wake()

    rows = [await outbox.settled(first), await outbox.settled(second)]

    assert "error=500" in (rows[0].attempts[0].error or "")
    assert "error=404" in (rows[1].attempts[0].error or "")
    assert "error=404" not in (rows[0].attempts[0].error or "")


async def test_it_keeps_to_the_bound_on_concurrent_sends(
    receiver: Receiver, outbox: MemoryOutbox
) -> None:
    receiver.delay = 0.1
    # No send may time out (and free its slot early) on a busy machine.
    settings = fast_settings(notify_concurrency=3, notify_timeout=30.0)
    notifier = Notifier(cast(Store, outbox), settings)
    notifier.start()
    try:
        ids = [outbox.add(receiver.url("/busy")) for _ in range(12)]
        notifier.wake()
        rows = [await outbox.settled(i) for i in ids]
    finally:
        await notifier.stop(wait=0.5)

    assert all(row.state == SENT for row in rows)
    assert receiver.peak == 3


async def test_a_receiver_that_hangs_does_not_hold_up_other_channels(
    receiver: Receiver, outbox: MemoryOutbox
) -> None:
    # More hanging sends than Apprise's own pool has threads on a small box.
    receiver.scripts["/stuck"] = ["hang"] * 12
    settings = fast_settings(notify_timeout=1.0, notify_concurrency=16)
    notifier = Notifier(cast(Store, outbox), settings)
    notifier.start()
    try:
        for _ in range(12):
            outbox.add(receiver.url("/stuck"))
        notifier.wake()
        # One channel gets at most CHANNEL_SLOTS threads at once.
        await until(lambda: len(receiver.to("/stuck")) >= CHANNEL_SLOTS)
        started = time.monotonic()
        healthy = [outbox.add(receiver.url("/fine")) for _ in range(4)]
        notifier.wake()
        rows = [await outbox.settled(i) for i in healthy]
        took = time.monotonic() - started
    finally:
        receiver.release()
        await notifier.stop(wait=0.5)

    # Sent while the stuck ones kept hanging (a healthy send may time out
    # once on a busy machine and go again).
    assert all(row.state == SENT and row.attempts[-1].ok for row in rows)
    assert took < 5.0


async def test_it_sleeps_when_there_is_nothing_to_send(
    outbox: MemoryOutbox, notifier: Notifier
) -> None:
    await asyncio.sleep(0.1)
    before = outbox.claims

    await asyncio.sleep(1.5)

    assert outbox.claims - before <= 2


async def test_a_failing_store_is_retried_and_does_not_stop_the_notifier(
    receiver: Receiver,
    outbox: MemoryOutbox,
    notifier: Notifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox.fail_claims = 1
    delivery_id = outbox.add(receiver.url())
    notifier.wake()

    row = await outbox.settled(delivery_id, timeout=3.0)

    assert row.state == SENT
    assert any(r.__dict__.get("action") == "outbox_failed" for r in caplog.records)


async def test_a_store_refusing_the_release_at_start_is_one_line_and_retried(
    receiver: Receiver, outbox: MemoryOutbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="serverlord.notifier")
    outbox.fail_releases = 2
    delivery_id = outbox.add(receiver.url())
    running = Notifier(cast(Store, outbox), fast_settings())
    running.start()
    try:
        row = await outbox.settled(delivery_id, timeout=10.0)
    finally:
        await running.stop(wait=0.5)

    assert row.state == SENT
    actions = [r.__dict__.get("action") for r in caplog.records]
    assert actions.count("release_claims_failed") == 1
    assert actions.count("release_claims_failed_recovered") == 1
    assert not any(r.exc_info for r in caplog.records)


async def test_stop_leaves_a_send_in_flight_to_be_sent_again(
    receiver: Receiver, outbox: MemoryOutbox
) -> None:
    receiver.scripts["/stuck"] = ["hang"]
    settings = fast_settings(notify_timeout=5.0)
    notifier = Notifier(cast(Store, outbox), settings)
    notifier.start()
    delivery_id = outbox.add(receiver.url("/stuck"))
    notifier.wake()
    await until(lambda: bool(receiver.to("/stuck")))

    started = time.monotonic()
    await notifier.stop(wait=0.2)

    assert time.monotonic() - started < 1.0
    assert outbox.rows[delivery_id].state == SENDING
    assert outbox.rows[delivery_id].attempts == []

    receiver.release()
    restarted = Notifier(cast(Store, outbox), settings)
    restarted.start()
    try:
        row = await outbox.settled(delivery_id)
    finally:
        await restarted.stop(wait=0.5)
    assert row.state == SENT
    assert len(receiver.to("/stuck")) == 2


async def test_failures_are_logged_with_ids_and_without_the_secret_url(
    receiver: Receiver,
    outbox: MemoryOutbox,
    notifier: Notifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.scripts["/secret"] = [503]
    url = f"json://alice:s3cr3t-pw@127.0.0.1:{receiver.port}/secret"
    delivery_id = outbox.add(url)
    notifier.wake()

    await outbox.settled(delivery_id)

    ours = [r for r in caplog.records if r.name == "serverlord.notifier"]
    failed = [r for r in ours if r.__dict__.get("action") == "delivery_failed"]
    assert len(failed) == 1
    assert failed[0].levelno == logging.WARNING
    assert failed[0].__dict__["delivery_id"] == delivery_id
    assert failed[0].__dict__["channel_id"] == "channel-1"
    assert failed[0].__dict__["check_id"] == "check-1"
    assert "error=503" in failed[0].getMessage()
    sent = [r for r in ours if r.__dict__.get("action") == "delivery_sent"]
    assert [r.levelno for r in sent] == [logging.DEBUG]
    assert all("s3cr3t" not in r.getMessage() for r in caplog.records)


# Pieces.


async def test_send_message_reports_a_refused_connection_without_raising() -> None:
    sent = await send_message(
        f"json://127.0.0.1:{closed_port()}/x", "t", "b", DOWN_ALERT, 1.0
    )

    assert sent.error is not None and "Connection error" in sent.error
    assert not sent.permanent


def test_the_retry_wait_doubles_with_full_jitter_up_to_the_maximum() -> None:
    settings = Settings(notify_retry_base=2, notify_retry_max=3600)
    rng = random.Random(7)
    now = 1_000_000.0

    def wait(attempts: int) -> float:
        delivery = Delivery(1, None, None, "c", "u", DOWN_ALERT, "", "", attempts, now)
        at = retry_at(delivery, now, settings, rng)
        assert at is not None
        return at - now

    for attempts, ceiling in [(1, 2), (2, 4), (5, 32), (12, 3600), (10_000, 3600)]:
        waits = [wait(attempts) for _ in range(200)]
        assert ceiling / 2 <= min(waits) and max(waits) <= ceiling
        assert max(waits) - min(waits) > ceiling / 4


def test_it_gives_up_a_day_after_the_delivery_was_created() -> None:
    settings = Settings()
    created = 1_000_000.0
    delivery = Delivery(1, None, None, "c", "u", DOWN_ALERT, "", "", 3, created)
    rng = random.Random(1)

    assert retry_at(delivery, created + 86399, settings, rng) is not None
    assert retry_at(delivery, created + 86400, settings, rng) is None


def test_notify_settings_take_durations() -> None:
    import argparse
    from dataclasses import fields

    from serverlord.config import Settings

    # As `serve` parses it: every setting a flag, none given.
    no_flags = argparse.Namespace(**{f.name: None for f in fields(Settings)})
    settings = settings_from(
        no_flags,
        {
            "SERVERLORD_NOTIFY_TIMEOUT": "30s",
            "SERVERLORD_NOTIFY_RETRY_FOR": "1d",
            "SERVERLORD_NOTIFY_RETRY_MAX": "1h",
            "SERVERLORD_NOTIFY_CONCURRENCY": "4",
        },
    )

    assert settings.notify_timeout == 30
    assert settings.notify_retry_for == 86400
    assert settings.notify_retry_max == 3600
    assert settings.notify_concurrency == 4
    assert settings.notify_retry_base == 2


async def test_a_send_past_its_timeout_frees_its_slot_for_other_channels(
    receiver: Receiver, outbox: MemoryOutbox
) -> None:
    # Two slots, both first taken by a receiver that never answers.
    receiver.scripts["/stuck"] = ["hang"] * 2
    settings = fast_settings(notify_timeout=0.3, notify_concurrency=2)
    notifier = Notifier(cast(Store, outbox), settings)
    notifier.start()
    try:
        outbox.add(receiver.url("/stuck"))
        outbox.add(receiver.url("/stuck"))
        notifier.wake()
        await until(lambda: len(receiver.to("/stuck")) == 2)
        healthy = outbox.add(receiver.url("/fine"))
        notifier.wake()
        row = await outbox.settled(healthy)
    finally:
        receiver.release()
        await notifier.stop(wait=0.5)

    assert [a.ok for a in row.attempts] == [True]
