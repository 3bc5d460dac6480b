"""``serverlord serve``: the HTTP server, the sweepers and their housekeeping.

All of it runs in one asyncio process. Start-up rebuilds every deadline from the
store; deadlines that fell while serverlord was not running are held back for one
grace period so that a restart never floods anyone with false alarms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from serverlord.checks import Flip, reason_text, shard_of
from serverlord.config import Settings
from serverlord.events import EventHub
from serverlord.notifier import Notifier
from serverlord.pings import Ping
from serverlord.store import Store, StoreError, open_store
from serverlord.sweeper import Sweepers

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 2.0
"""How often the store learns that serverlord is alive (bounds offline windows)."""
CHANGES_EVERY = 0.25
"""How often edits made by other processes (the CLI) are picked up."""
GRACEFUL_STOP = 10
"""Longest wait for requests in flight when stopping."""
MAX_CONNECTIONS = 10_000
"""Connections and requests served at once; more get 503 (the limit on open files
must allow it)."""


class Server:
    """One serverlord process: store, sweepers, HTTP and housekeeping tasks."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.sweepers = Sweepers(store, settings.shards, self.on_flips)
        self.notifier = Notifier(store, settings)
        self.events = EventHub(store)
        self.change_cursor = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def ingest(self, ping: Ping) -> None:
        """Record one ping durably, then move its check's deadline."""
        outcome = await self.store.record_ping(ping)
        self.sweepers.schedule(outcome.shard, outcome.check_id, outcome.deadline)
        self.events.ping(ping)
        if outcome.flip is not None:
            self.on_flips([outcome.flip], outcome.notify)

    def on_flips(self, flips: list[Flip], notify: bool) -> None:
        if notify:
            self.notifier.wake()
        self.events.flips(flips)
        for flip in flips:
            log.info(
                "check %s is %s (was %s): %s",
                flip.check_id,
                flip.new_status,
                flip.old_status,
                reason_text(flip),
                extra={
                    "action": "flip",
                    "check_id": flip.check_id,
                    "flip_id": flip.id,
                    "lag": flip.detected - flip.at,
                },
            )

    async def start(self) -> int:
        """Load every deadline and start the sweepers; return the check count."""
        offline_since = await self.store.last_heartbeat()
        started = time.time()
        self.change_cursor = await self.store.last_change()
        deadlines = await self.store.load_deadlines()
        rows = [(cid, shard_of(cid), at, grace) for cid, at, grace in deadlines]
        held = self.sweepers.load(rows, started, offline_since)
        await self.store.heartbeat(started)

        if held:
            log.warning(
                "%d checks fell due while serverlord was not running; "
                "each gets one grace period from now before it goes down",
                held,
                extra={"action": "offline_hold", "count": held},
            )
        self.sweepers.start()
        self.notifier.start()
        self._tasks = [
            asyncio.create_task(self._beat(), name="heartbeat"),
            asyncio.create_task(self._follow_changes(), name="changes"),
        ]
        return await self.store.count_checks()

    async def stop(self) -> None:
        self.events.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.sweepers.stop()
        await self.notifier.stop()
        with contextlib.suppress(StoreError):
            await self.store.heartbeat(time.time())

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            try:
                await self.store.heartbeat(time.time())
            except StoreError as exc:
                log.warning(
                    "heartbeat not stored: %s",
                    exc,
                    extra={"action": "heartbeat_failed"},
                )

    async def _follow_changes(self) -> None:
        while True:
            await asyncio.sleep(CHANGES_EVERY)
            try:
                await self.apply_changes()
            except StoreError as exc:
                log.warning(
                    "could not read changes: %s",
                    exc,
                    extra={"action": "changes_failed"},
                )

    async def apply_changes(self) -> None:
        """Have the sweepers confirm the checks that other processes edited.

        Each changed check is confirmed at once through the store's writer,
        which orders it after every ping before it: reading the check here and
        scheduling from that read could undo a ping that lands in between.
        """
        cursor, check_ids = await self.store.changes_since(self.change_cursor)
        now = time.time()
        for check_id in dict.fromkeys(check_ids):
            self.sweepers.schedule(shard_of(check_id), check_id, now)
        self.events.checks_changed(check_ids)
        self.change_cursor = cursor


async def _announce(http: Any, settings: Settings, store: str, count: int) -> None:
    # uvicorn binds its socket inside serve(): say where we listen once it has.
    while not http.started:
        await asyncio.sleep(0.01)
    log.info(
        "serverlord listening on http://%s, store %s, %d checks loaded, "
        "%d shards; ping URLs start with %s/ping/",
        f"[{settings.host}]:{settings.port}"
        if ":" in settings.host
        else f"{settings.host}:{settings.port}",
        store,
        count,
        settings.shards,
        settings.resolved_base_url(),
        extra={"action": "serve_start", "checks": count},
    )


def _http_server_class() -> type:
    import uvicorn

    class HttpServer(uvicorn.Server):
        """uvicorn's server, but a stop signal ends serve() instead of the process.

        uvicorn raises a caught SIGTERM again once it has stopped, which would
        kill serverlord before the store is closed; here the signal only asks
        the server to finish its requests and return.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._stop_requested, sig)
            try:
                yield
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

        def _stop_requested(self, sig: int) -> None:
            log.info(
                "stopping on %s",
                signal.Signals(sig).name,
                extra={"action": "serve_signal"},
            )
            self.handle_exit(sig, None)

    return HttpServer


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise OSError(f"could not listen on {host}:{port}: {reason.lower()}") from exc
    return sock


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or Ctrl-C; acknowledged pings are already committed."""
    import uvicorn

    from serverlord.http.app import build_app

    sock = bind(settings.host, settings.port)
    store = open_store(settings)
    try:
        store.lock_for_server()
        await store.open()
    except (OSError, sqlite3.Error, StoreError) as exc:
        sock.close()
        await store.close()
        raise OSError(f"cannot open the store {store.description}: {exc}") from exc
    server = Server(settings, store)
    try:
        count = await server.start()
        app = build_app(server, settings)
        config = uvicorn.Config(
            app,
            http="httptools",
            lifespan="off",
            # serverlord reads X-Forwarded-For itself, only when told to trust it.
            proxy_headers=False,
            ws="none",
            # A client that never finishes its request must not hold up a stop.
            timeout_graceful_shutdown=GRACEFUL_STOP,
            limit_concurrency=MAX_CONNECTIONS,
            access_log=False,
            log_level="warning",
            server_header=False,
        )
        http = _http_server_class()(config)
        # Live event streams end when a stop begins, not at its deadline.
        app.state.api.stopping = lambda: http.should_exit
        announce = asyncio.create_task(
            _announce(http, settings, store.description, count)
        )
        await http.serve(sockets=[sock])
        announce.cancel()
    finally:
        await server.stop()
        await store.close()
        sock.close()
        log.info("serverlord stopped", extra={"action": "serve_stop"})
