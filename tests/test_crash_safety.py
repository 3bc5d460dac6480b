"""kill -9 at random moments under a steady ping load, on both stores.

Twenty times over, ``serverlord serve`` takes pings and sweeps checks that go
down every few seconds, and is killed with SIGKILL at a random moment. Then:
every ping that was answered 200 is stored, no check flipped the same way
twice in a row, and every alert owed was delivered to a real HTTP receiver.
"""

from __future__ import annotations

import itertools
import random
import re
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from serverlord.channels import Channel
from serverlord.checks import DOWN, UP, Check, is_alert
from serverlord.config import Settings
from serverlord.schedules import Schedule
from serverlord.store import Store, open_store
from tests.receivers import WebhookReceiver
from tests.test_end_to_end import ServerProcess, free_port

pytestmark = pytest.mark.slow

CYCLES = 20
STEADY = 300
"""Checks pinged by the load, each fewer times than the pings a check keeps."""
PINGS_PER_CHECK = 60
"""Fewer than a check keeps, so every acknowledged body can be looked up."""
FLAPPING = 6
"""Checks with a 1 s period pinged once per cycle: they go down over and over."""


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'serverlord.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@dataclass
class Load:
    """Threads sending pings with unique bodies until the server stops answering."""

    base_url: str
    check_ids: list[str]
    acked: dict[str, list[bytes]] = field(default_factory=dict)
    sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Not the random module's own generator: hypothesis in later tests
    # complains when something else draws from it meanwhile.
    _rng: random.Random = field(default_factory=random.Random)

    def run(self, threads: int = 4) -> list[threading.Thread]:
        started = []
        for _ in range(threads):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            started.append(thread)
        return started

    def _run(self) -> None:
        # Ends when the server stops answering, or when every check has had
        # its share: a thread must never outlive its cycle.
        while True:
            check_id = self._rng.choice(self.check_ids)
            with self._lock:
                if len(self.acked.get(check_id, [])) >= PINGS_PER_CHECK:
                    if self._all_done():
                        return
                    continue
                self.sent += 1
                body = f"ping-{self.sent}".encode()
            request = urllib.request.Request(
                f"{self.base_url}/ping/{check_id}", data=body, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    ok = answer.status == 200
            except (urllib.error.HTTPError, OSError):
                return
            if ok:
                with self._lock:
                    self.acked.setdefault(check_id, []).append(body)

    def _all_done(self) -> bool:
        return all(
            len(self.acked.get(check_id, [])) >= PINGS_PER_CHECK
            for check_id in self.check_ids
        )


async def prepare(url: str, receiver: WebhookReceiver) -> tuple[list[str], list[str]]:
    store = open_store(Settings(database_url=url))
    await store.open()
    try:
        now = time.time()
        hook = Channel(
            id=str(uuid.uuid4()),
            name="hook",
            url=receiver.url(),
            kind="json",
            masked_url=receiver.url(),
            created=now,
        )
        await store.add_channel(hook)
        steady = [await _add(store, Schedule.simple(3600), 3600) for _ in range(STEADY)]
        flapping = [await _add(store, Schedule.simple(1), 1) for _ in range(FLAPPING)]
        for check_id in flapping:
            await store.set_check_channels(check_id, [hook.id])
    finally:
        await store.close()
    return steady, flapping


async def _add(store: Store, schedule: Schedule, grace: float) -> str:
    check = Check(
        id=str(uuid.uuid4()),
        name="crash",
        schedule=schedule,
        grace=grace,
        created=time.time(),
    )
    await store.add_check(check)
    return check.id


def ping(url: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=5):
            pass
    except (urllib.error.HTTPError, OSError):
        pass


async def test_pings_flips_and_alerts_survive_kill_9_again_and_again(
    tmp_path: Path, database_url: str, receiver: WebhookReceiver
) -> None:
    steady, flapping = await prepare(database_url, receiver)
    load = Load("", steady)
    port = free_port()
    rng = random.Random()

    for cycle in range(CYCLES + 1):
        server = ServerProcess(
            tmp_path / "data",
            port,
            tmp_path / f"serve-{cycle}.log",
            env={"SERVERLORD_DATABASE_URL": database_url},
        )
        server.start().wait_ready()
        load.base_url = server.base_url
        for check_id in flapping:
            ping(f"{server.base_url}/ping/{check_id}")
        threads = load.run()
        if cycle == CYCLES:
            # The last run lives long enough for every check to go down and
            # every alert to be sent, then stops cleanly.
            time.sleep(6)
            server.signal(signal.SIGTERM)
        else:
            time.sleep(rng.uniform(0.3, 2.5))
            server.signal(signal.SIGKILL)
        for thread in threads:
            thread.join(timeout=10)
            assert not thread.is_alive(), "a load thread outlived its server"
        server.cleanup()

    store = open_store(Settings(database_url=database_url))
    await store.open()
    try:
        for check_id, bodies in load.acked.items():
            stored = {p.body for p in await store.recent_pings(check_id, 100)}
            assert set(bodies) <= stored, check_id
        owed = []
        for check_id in flapping:
            flips = list(reversed(await store.recent_flips(check_id, 1000)))
            statuses = [flip.new_status for flip in flips]
            assert all(a != b for a, b in itertools.pairwise(statuses)), statuses
            assert statuses[-1] == DOWN
            owed += [flip.id for flip in flips if is_alert(flip)]
            assert {UP, DOWN} <= set(statuses)
    finally:
        await store.close()

    assert sum(len(bodies) for bodies in load.acked.values()) > 500
    delivered = {
        int(found)
        for post in receiver.posts()
        for found in re.findall(r"Flip: #(\d+)", post.message)
    }
    assert set(owed) - delivered == set()
