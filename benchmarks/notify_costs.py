"""What one alert costs the notifier, part by part, measured in process.

Against a webhook receiver on 127.0.0.1 and a SQLite store in a temporary
folder, N down alerts to one channel are delivered three ways, and the CPU
time of the whole process (every thread: sends, the store's writer) is given
per alert:

- ``apprise``: making a new Apprise plugin from the URL, against the cached
  one the notifier reuses;
- ``singles``: claimed 32 messages at a time without digests, each sent on its
  own connection from a thread and recorded with a write of its own (what a
  channel with a few alerts waiting gets, and what every alert got before
  digests);
- ``digests``: claimed and sent as digests, one write recording each digest.

The send and the store are also timed apart (claims and records only, no
send), to show which costs most. Usage: python benchmarks/notify_costs.py [N]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import apprise

from serverlord import digests
from serverlord.apprise_urls import load_plugins, plugin_for
from serverlord.bench.target import free_port
from serverlord.bench.wave import Receiver
from serverlord.channels import DOWN_ALERT, AttemptResult, Channel, Delivery, Digests
from serverlord.checks import Check
from serverlord.config import Settings
from serverlord.pings import Ping
from serverlord.schedules import Schedule
from serverlord.sending import send_message
from serverlord.store.sqlite import SqliteStore

CONCURRENCY = 32
SLOTS = 16


async def down_alerts(store: SqliteStore, channel: Channel, count: int) -> None:
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
    await asyncio.gather(*(store.add_check(c) for c in checks))
    await asyncio.gather(
        *(store.set_check_channels(c.id, [channel.id]) for c in checks)
    )
    for kind in ("success", "fail"):
        await asyncio.gather(
            *(
                store.record_ping(
                    Ping(check_id=c.id, received=time.time(), kind=kind, body=b"")
                )
                for c in checks
            )
        )


def cpu() -> float:
    return time.process_time()


async def claims(store: SqliteStore, rule: Digests | None) -> list[list[Delivery]]:
    """Every due delivery, claimed as the notifier claims, in its messages."""
    found: list[list[Delivery]] = []
    while claimed := await store.claim_deliveries(
        time.time() + 1, CONCURRENCY, 60, [], SLOTS, rule
    ):
        found += digests.messages(claimed) if rule else [[d] for d in claimed]
    return found


async def deliver(
    store: SqliteStore, messages: list[list[Delivery]], url: str, send: bool
) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(message: list[Delivery]) -> None:
        async with gate:
            if send:
                if len(message) == 1:
                    title, body = message[0].title, message[0].body
                else:
                    [part] = digests.parts(message, None)
                    title, body = part.title, part.body
                sent = await send_message(url, title, body, DOWN_ALERT, 10.0)
                assert sent.error is None, sent.error
            result = AttemptResult(time.time(), True, None, 0.001, None)
            await store.finish_attempts(message, result)

    await asyncio.gather(*(one(m) for m in messages))


async def round_of(
    how: str, count: int, url: str, send: bool, folder: Path
) -> tuple[float, float]:
    """(CPU µs per alert, alerts per second) of one way over ``count`` alerts."""
    store = SqliteStore(folder / f"{how}-{send}-{uuid.uuid4().hex}.sqlite3")
    await store.open()
    try:
        channel = Channel(str(uuid.uuid4()), "hook", url, "json", url, time.time())
        await store.add_channel(channel)
        await down_alerts(store, channel, count)
        started, began = cpu(), time.monotonic()
        rule = digests.DIGESTS if how == "digests" else None
        messages = await claims(store, rule)
        await deliver(store, messages, url, send)
        took = time.monotonic() - began
        return (cpu() - started) / count * 1e6, count / took
    finally:
        await store.close()


def apprise_costs(url: str, n: int = 2000) -> tuple[float, float]:
    """(µs to make a plugin from the URL, µs to get the cached one)."""
    started = cpu()
    for _ in range(n):
        apprise.Apprise.instantiate(url)
    fresh = (cpu() - started) / n * 1e6
    started = cpu()
    for _ in range(n):
        plugin_for(url, 11.0)
    return fresh, (cpu() - started) / n * 1e6


async def main(count: int) -> None:
    load_plugins()
    receiver = Receiver()
    port = free_port()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", port)
    url = f"json://127.0.0.1:{port}/hook"
    Settings()  # the settings module's import cost stays out of the rounds
    fresh, cached = apprise_costs(url)
    print(f"Apprise plugin from the URL: {fresh:.1f} µs; cached: {cached:.2f} µs")
    try:
        with tempfile.TemporaryDirectory(prefix="serverlord-notify-costs-") as tmp:
            for send in (False, True):
                for how in ("singles", "digests"):
                    results = [
                        await round_of(how, count, url, send, Path(tmp))
                        for _ in range(3)
                    ]
                    per_alert = sorted(r[0] for r in results)[1]
                    rate = sorted(r[1] for r in results)[1]
                    what = "claim, send, record" if send else "claim, record"
                    print(
                        f"{how:8} {what:20} {per_alert:8.1f} µs CPU per alert, "
                        f"{rate:9,.0f} alerts/s (median of 3 x {count:,})"
                    )
    finally:
        server.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
