"""The outbox on SQLite: claiming order, crowded channels, stale reminders."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from serverlord.channels import Channel, Delivery
from serverlord.checks import Check
from serverlord.pings import Ping
from serverlord.schedules import Schedule
from serverlord.store import Store
from serverlord.store.sqlite import connect, migrate

HOOK = "json://127.0.0.1:9/hook"


async def a_channel(store: Store, name: str = "hook") -> Channel:
    channel = Channel(str(uuid.uuid4()), name, HOOK, "json", HOOK, time.time())
    await store.add_channel(channel)
    return channel


async def a_check(store: Store, channels: list[Channel], **fields: object) -> Check:
    check = Check(
        id=str(uuid.uuid4()),
        name="backup",
        schedule=Schedule.simple(60),
        grace=30,
        created=time.time(),
        **fields,  # type: ignore[arg-type]
    )
    await store.add_check(check)
    await store.set_check_channels(check.id, [c.id for c in channels])
    return check


async def ping(store: Store, check: Check, kind: str = "success") -> None:
    await store.record_ping(Ping(check_id=check.id, received=time.time(), kind=kind))


async def claim(
    store: Store, crowded: list[str] | None = None, per_channel: int = 8
) -> list[Delivery]:
    now = time.time() + 1
    return await store.claim_deliveries(now, 100, 60, crowded or [], per_channel)


async def test_a_channel_hears_of_a_checks_flips_in_order(store: Store) -> None:
    channel = await a_channel(store)
    check = await a_check(store, [channel])
    await ping(store, check, "fail")
    await ping(store, check)

    first = await claim(store)
    second = await claim(store)

    assert [d.kind for d in first] == ["down"]
    assert second == []


async def test_a_crowded_channel_gets_nothing_and_others_at_most_their_share(
    store: Store,
) -> None:
    slow, fine = await a_channel(store, "slow"), await a_channel(store, "fine")
    for _ in range(5):
        await ping(store, await a_check(store, [slow, fine]), "fail")

    taken = await claim(store, crowded=[slow.id], per_channel=3)

    assert {d.channel_id for d in taken} == {fine.id}
    assert len(taken) == 3


async def test_alerts_are_claimed_before_reminders(store: Store) -> None:
    channel = await a_channel(store)
    reminded = await a_check(store, [channel])
    await store.enqueue(
        [Delivery(0, None, reminded.id, channel.id, "", "reminder", "t", "b", 0, 0.0)]
    )
    await ping(store, await a_check(store, [channel]), "fail")

    taken = await claim(store, per_channel=1)

    assert [d.kind for d in taken] == ["down"]


async def test_pending_reminders_are_dropped_when_the_check_comes_back_up(
    store: Store,
) -> None:
    channel = await a_channel(store)
    check = await a_check(store, [channel], reminder_every=1.0)
    await ping(store, check, "fail")
    await store.enqueue(
        [Delivery(0, None, check.id, channel.id, "", "reminder", "t", "b", 0, 0.0)]
    )

    await ping(store, check)

    kinds = sorted(d.kind for d in await claim(store) + await claim(store))
    assert "reminder" not in kinds


async def test_finishing_a_delivery_of_a_removed_channel_spares_its_batch(
    store: Store,
) -> None:
    from serverlord.channels import AttemptResult

    channel = await a_channel(store)
    check = await a_check(store, [channel])
    await ping(store, check, "fail")
    [delivery] = await claim(store)
    await store.delete_channel(channel.id)
    result = AttemptResult(time.time(), True, None, 0.01, None)

    await asyncio.gather(store.finish_attempt(delivery, result), ping(store, check))

    stored = await store.get_check(check.id)
    assert stored is not None and stored.status == "up"


def test_two_processes_creating_a_store_at_once_both_succeed(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "new.sqlite3"
    errors: list[BaseException] = []

    def create() -> None:
        try:
            conn = connect(path)
            migrate(conn)
            conn.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    conn = connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] >= 2
    conn.close()
