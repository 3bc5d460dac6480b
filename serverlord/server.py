"""``serverlord serve``: the HTTP server, the sweepers and their housekeeping.

All of it runs in one asyncio process. Start-up rebuilds every deadline from the
store; deadlines that fell while serverlord was not running are held back for one
grace period so that a restart never floods anyone with false alarms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
import sqlite3
from collections import Counter
from collections.abc import Iterator
from typing import Any

from serverlord import clock
from serverlord.checks import SHARD_COUNT, Flip, reason_text, shard_of
from serverlord.config import Settings
from serverlord.events import EventHub
from serverlord.notifier import Notifier
from serverlord.ownership import OfflineWindow
from serverlord.pings import Ping
from serverlord.store import (
    DatabaseUrlError,
    Store,
    StoreError,
    StoreUnavailableError,
    open_store,
)
from serverlord.sweeper import Sweepers
from serverlord.telemetry import NO_TELEMETRY, Telemetry
from serverlord.trouble import Trouble

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 2.0
"""How often the store learns that serverlord is alive (bounds offline windows)."""
CHANGES_EVERY = 0.25
"""How often edits made by other processes (the CLI) are picked up."""
CLOCK_WATCH_EVERY = 0.2
"""How often the system clock is compared with the boot clock for steps."""
GRACEFUL_STOP = 10
"""Longest wait for requests in flight when stopping."""
MAX_CONNECTIONS = 10_000
"""Connections and requests served at once; more get 503 (the limit on open files
must allow it)."""
FLIPS_LOGGED_EACH = 20
"""Most flips of one sweep logged one line each at INFO; past that, one line
sums them up and each flip goes to DEBUG: a wave of 100,000 checks must not
write 100,000 lines."""


def log_flips(flips: list[Flip]) -> None:
    """A line per flip, or, for many at once, a summary and a line per flip
    at DEBUG (the flips themselves are in the store, the API and the TUI)."""
    many = len(flips) > FLIPS_LOGGED_EACH
    level = logging.DEBUG if many else logging.INFO
    if log.isEnabledFor(level):
        for flip in flips:
            log.log(
                level,
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
    if many:
        statuses = Counter(flip.new_status for flip in flips)
        log.info(
            "%d checks changed status at once: %s",
            len(flips),
            ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())),
            extra={
                "action": "flips",
                "count": len(flips),
                "check_ids": [flip.check_id for flip in flips[:FLIPS_LOGGED_EACH]],
            },
        )


class Server:
    """One serverlord process: store, sweepers, HTTP and housekeeping tasks."""

    def __init__(
        self, settings: Settings, store: Store, telemetry: Telemetry = NO_TELEMETRY
    ) -> None:
        self.settings = settings
        self.store = store
        self.telemetry = telemetry
        self.sweepers = Sweepers(store, settings.shards, self.on_flips, telemetry)
        self.notifier = Notifier(store, settings, telemetry)
        store.observe_commits(telemetry.commits(store.description.split(":")[0]))
        self.ownership = store.ownership()
        self.events = EventHub(store)
        self.change_cursor = 0
        self._changed = asyncio.Event()
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
        self.telemetry.flips(flips, clock.now())
        log_flips(flips)

    async def start(self) -> int:
        """Join the store's processes, take this one's shards and start
        sweeping them; return the number of checks."""
        self.change_cursor = await self.store.last_change()
        await self.ownership.join()
        await self.store.heartbeat(clock.now())
        self.sweepers.start()
        self.telemetry.watch(self.sweepers.heap_sizes, self.store.count_by_status)
        self.telemetry.watch_event_clients(self.events.clients)
        await self.ownership.start(self)
        self.notifier.start(release_claims=self.ownership.alone())
        self._tasks = [
            asyncio.create_task(self._beat(), name="heartbeat"),
            asyncio.create_task(self._follow_changes(), name="changes"),
            asyncio.create_task(self._watch_clock(), name="clock"),
        ]
        return await self.store.count_checks()

    async def stop(self) -> None:
        self.events.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.ownership.stop()
        await self.sweepers.stop()
        await self.notifier.stop()
        with contextlib.suppress(StoreError):
            await self.store.heartbeat(clock.now())

    # What the ownership tells us (see ``ShardOwner``).

    async def gain(self, shards: list[int], window: OfflineWindow) -> None:
        self.sweepers.own(shards)
        try:
            every = len(shards) == SHARD_COUNT
            rows = await self.store.load_deadlines(None if every else shards)
        except BaseException:
            self.sweepers.disown(shards)
            raise
        held = self.sweepers.load(rows, window)
        if held:
            log.warning(
                "%d checks fell due while serverlord was not running; "
                "each gets one grace period from then before it goes down",
                held,
                extra={"action": "offline_hold", "count": held},
            )

    def lose(self, shards: list[int]) -> None:
        self.sweepers.disown(shards)

    def deadline_moved(self, shard: int, check_id: str, deadline: float) -> None:
        self.sweepers.schedule_earlier(shard, check_id, deadline)

    def checks_changed(self) -> None:
        self._changed.set()

    async def _beat(self) -> None:
        trouble = Trouble(log, "heartbeat not stored", "heartbeat_failed")
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            try:
                await self.store.heartbeat(clock.now())
            except StoreError as exc:
                trouble.failed(exc)
            else:
                trouble.ok()

    def watch_clock(self) -> None:
        """Notice (and log, once) a step of the system clock."""
        clock.observe()

    async def _watch_clock(self) -> None:
        # A step is placed where it is noticed: look often, so that the times
        # it jumped over are where it happened, within a fraction of a second.
        while True:
            await asyncio.sleep(CLOCK_WATCH_EVERY)
            self.watch_clock()

    async def _follow_changes(self) -> None:
        trouble = Trouble(log, "could not read changes", "changes_failed")
        while True:
            # Told at once where the store can tell; read every so often anyway.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHANGES_EVERY):
                    await self._changed.wait()
            self._changed.clear()
            try:
                await self.apply_changes()
            except StoreError as exc:
                trouble.failed(exc)
            else:
                trouble.ok()

    async def apply_changes(self) -> None:
        """Have the sweepers confirm the checks that other processes edited.

        Each changed check is confirmed at once through the store's writer,
        which orders it after every ping before it: reading the check here and
        scheduling from that read could undo a ping that lands in between.
        """
        cursor, check_ids = await self.store.changes_since(self.change_cursor)
        now = clock.now()
        for check_id in dict.fromkeys(check_ids):
            self.sweepers.confirm(shard_of(check_id), check_id, now)
        self.events.checks_changed(check_ids)
        self.change_cursor = cursor


async def _announce(
    http: Any, settings: Settings, store: str, count: int, worker: int | None
) -> None:
    # uvicorn binds its socket inside serve(): say where we listen once it has.
    while not http.started:
        await asyncio.sleep(0.01)
    log.info(
        "serverlord %slistening on http://%s, store %s, %d checks loaded, "
        "%d shards; ping URLs start with %s/ping/",
        "" if worker is None else f"worker {worker} ",
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


def raise_open_files() -> None:
    """Let this process open a socket for every connection it accepts.

    Shells often start programs with 1,024 open files; past that, new
    connections fail without an answer or a log line.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_CONNECTIONS + 1024
    limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < limit:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    if limit < wanted:
        log.warning(
            "this process may open %d files: fewer than the %d connections "
            "serverlord accepts (raise the hard limit, e.g. LimitNOFILE)",
            limit,
            MAX_CONNECTIONS,
            extra={"action": "open_files_limited", "limit": limit},
        )


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


RETRY_FIRST = 0.5
RETRY_MAX = 30.0
"""Longest wait between two tries to reach the database at start-up."""


async def serve(
    settings: Settings, sock: socket.socket | None = None, worker: int | None = None
) -> None:
    """Run until SIGTERM or Ctrl-C; acknowledged pings are already committed.

    ``sock`` is a listening socket bound by the parent of several workers.
    """
    import uvicorn

    from serverlord import telemetry as telemetry_setup
    from serverlord.http.app import with_fast_pings
    from serverlord.http.guard import GuardedHttpProtocol, quiet_uvicorn
    from serverlord.http.ping_protocol import PingProtocol

    raise_open_files()
    own_socket = sock is None
    if sock is None:
        sock = bind(settings.host, settings.port)
    stop = _stop_event()
    telemetry = telemetry_setup.start(settings, worker)
    try:
        started = await _start(settings, stop, telemetry)
    except BaseException:
        if own_socket:
            sock.close()
        await telemetry.stop()
        raise
    if started is None:
        if own_socket:
            sock.close()
        await telemetry.stop()
        log.info("serverlord stopped", extra={"action": "serve_stop"})
        return
    server, count = started
    store = server.store
    GuardedHttpProtocol.per_address = settings.connections_per_address
    quiet_uvicorn()
    try:
        app = http_app(server)
        config = uvicorn.Config(
            # Traced requests are traced whichever path answers them.
            telemetry.wrap(with_fast_pings(app)),
            # httptools, with limits on the size and time of a request's head,
            # answering plain pings itself.
            http=PingProtocol,
            lifespan="off",
            # serverlord reads X-Forwarded-For itself, only when told to trust it.
            proxy_headers=False,
            ws="none",
            # A client that never finishes its request must not hold up a stop.
            timeout_graceful_shutdown=GRACEFUL_STOP,
            limit_concurrency=MAX_CONNECTIONS,
            access_log=False,
            log_level="warning",
            # uvicorn's records go through serverlord's handler and format.
            log_config=None,
            server_header=False,
        )
        http = _http_server_class()(config)
        if stop.is_set():
            http.should_exit = True
        # Live event streams end when a stop begins, not at its deadline.
        app.state.api.stopping = lambda: http.should_exit
        announce = asyncio.create_task(
            _announce(http, settings, store.description, count, worker)
        )
        await http.serve(sockets=[sock])
        announce.cancel()
    finally:
        await server.stop()
        await store.close()
        await telemetry.stop()
        if own_socket:
            sock.close()
        log.info("serverlord stopped", extra={"action": "serve_stop"})


def http_app(server: Server) -> Any:
    """The Litestar application of a server: pings, API, badges, metrics.

    ``server.telemetry.wrap`` gives what to serve: the same, traced if asked.
    """
    from serverlord.http.app import build_app

    app = build_app(server, server.settings)
    for handler in [
        *server.telemetry.route_handlers(),
        *_project_metrics(server.store),
    ]:
        app.register(handler)
    return app


def _project_metrics(store: Store) -> list[Any]:
    """The per-project check metrics routes, opened by read-only API keys."""
    from serverlord.accounts import KEY_ID_LENGTH, digest, key_matches
    from serverlord.telemetry.http import project_metrics_routes
    from serverlord.telemetry.projects import KeyGrant

    async def lookup(key: str) -> KeyGrant | None:
        stored = await store.get_api_key(key[:KEY_ID_LENGTH])
        if stored is None:
            digest(key)  # the same work as a found key, so timing tells nothing
            return None
        if not key_matches(key, stored):
            return None
        return KeyGrant(stored.project, stored.read_only)

    return project_metrics_routes(lookup, store.project_checks)


def _stop_event() -> asyncio.Event:
    """Set by SIGTERM or Ctrl-C until the HTTP server takes the signals over."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _start(
    settings: Settings, stop: asyncio.Event, telemetry: Telemetry
) -> tuple[Server, int] | None:
    """Open the store and start the server, trying again while the database
    cannot be reached; None when stopped first."""
    delay = RETRY_FIRST
    while not stop.is_set():
        store = open_store(settings)
        server = None
        try:
            store.lock_for_server()
            await store.open()
            server = Server(settings, store, telemetry)
            return server, await server.start()
        except StoreUnavailableError as exc:
            if server is not None:
                await server.stop()
            await store.close()
            log.warning(
                "cannot reach the store %s: %s; trying again in %.1f s",
                store.description,
                exc,
                delay,
                extra={"action": "store_unreachable", "retry_in": delay},
            )
        except DatabaseUrlError:
            # A mistake in the settings: no retry makes it right.
            await store.close()
            raise
        except (OSError, sqlite3.Error, StoreError) as exc:
            if server is not None:
                await server.stop()
            await store.close()
            # The store's own errors name it already.
            reason = (
                str(exc)
                if isinstance(exc, StoreError)
                else (f"cannot open the store {store.description}: {exc}")
            )
            raise OSError(reason) from exc
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()
        delay = min(delay * 2, RETRY_MAX)
    return None
