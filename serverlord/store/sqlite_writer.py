"""The SQLite writer: one thread, one transaction per batch of operations.

Every write is an operation queued to this thread. It takes all operations
waiting, runs them in one transaction and resolves their futures only after
COMMIT, so an acknowledged ping is durable and concurrent pings share one
fsync. Pings next to each other in a batch are written together.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from serverlord.store.base import (
    CommitObserver,
    ConflictError,
    StoreError,
    StoreUnavailableError,
)
from serverlord.store.sqlite_pings import ping_run_length, record_ping_run
from serverlord.store.sqlite_reads import CheckCache
from serverlord.trouble import Trouble

log = logging.getLogger("serverlord.store.sqlite")

Operation = Callable[[sqlite3.Connection], Any]

MAX_BATCH = 2000


class Writer(threading.Thread):
    """The one thread that writes: operations in, one transaction per batch."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(name="serverlord-sqlite-writer", daemon=True)
        self.conn = conn
        self.queue: queue.SimpleQueue[tuple[Operation, asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self.observer: CommitObserver | None = None
        self.checks = CheckCache()
        """Checks of recent pings; forgotten with every transaction undone."""
        self.trouble = Trouble(log, "sqlite store refuses writes", "store_write_failed")

    def submit(self, op: Operation) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self.queue.put((op, future))
        return future

    def stop(self) -> None:
        self.queue.put(None)

    def run(self) -> None:
        while True:
            batch, stopping = self._take_batch()
            if batch:
                self._commit(batch)
            if stopping:
                return

    def _take_batch(self) -> tuple[list[tuple[Operation, Any]], bool]:
        first = self.queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _commit(
        self, batch: list[tuple[Operation, Any]], together: bool = True
    ) -> None:
        outcomes: list[tuple[Any, Any, BaseException | None]] = []
        started = time.perf_counter()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            index = 0
            while index < len(batch):
                pings = ping_run_length(batch, index) if together else 0
                if pings > 1:
                    try:
                        outcomes += record_ping_run(
                            self.conn, batch[index : index + pings], self.checks
                        )
                    except sqlite3.Error:
                        raise
                    except Exception as exc:
                        self._retry_one_by_one(batch, exc)
                        return
                    index += pings
                    continue
                op, future = batch[index]
                try:
                    outcomes.append((future, op(self.conn), None))
                except StoreError as exc:
                    # Operations raise their domain errors before they write.
                    outcomes.append((future, None, exc))
                except sqlite3.Error:
                    raise
                except Exception as exc:
                    self._drop_and_retry(batch, index, exc)
                    return
                index += 1
            self.conn.execute("COMMIT")
            self.trouble.ok()
            if self.observer is not None:
                self.observer(len(batch), time.perf_counter() - started, True)
        except sqlite3.Error as exc:
            self._roll_back()
            # A full disk or a lock held elsewhere fails every batch until it
            # ends: one line when it starts, one when writes work again.
            self.trouble.failed(exc, logging.ERROR)
            error = StoreUnavailableError(str(exc))
            outcomes = [(future, None, error) for _, future in batch]
            if self.observer is not None:
                self.observer(len(batch), time.perf_counter() - started, False)
        resolve_all(outcomes)

    def _roll_back(self) -> None:
        # The operations undone may have changed cached checks in place.
        self.checks.forget()
        # SQLite may have rolled back already (a full disk does); a failing
        # ROLLBACK must not end the thread every ping waits on.
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.warning(
                    "sqlite rollback failed: %s",
                    exc,
                    extra={"action": "store_rollback_failed"},
                )

    def _retry_one_by_one(
        self, batch: list[tuple[Operation, Any]], exc: Exception
    ) -> None:
        # A bug while pings were written together: undo, and find the ping
        # that raised by running each on its own (see ``_drop_and_retry``).
        log.warning(
            "pings written together failed, writing them one by one: %r",
            exc,
            extra={"action": "store_ping_run_failed"},
        )
        self._roll_back()
        self._commit(batch, together=False)

    def _drop_and_retry(
        self, batch: list[tuple[Operation, Any]], index: int, exc: Exception
    ) -> None:
        # A bug in one operation must not cost the others their write: undo the
        # whole transaction, fail that one and commit the rest again.
        log.error(
            "store operation failed: %r",
            exc,
            exc_info=exc,
            extra={"action": "store_bug"},
        )
        self._roll_back()
        resolve_all([(batch[index][1], None, exc)])
        rest = batch[:index] + batch[index + 1 :]
        if rest:
            self._commit(rest)


def guarded(op: Operation) -> Operation:
    """Run an operation that may break a constraint under its own savepoint."""

    def run(conn: sqlite3.Connection) -> Any:
        conn.execute("SAVEPOINT op")
        try:
            result = op(conn)
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            raise ConflictError(str(exc)) from exc
        except BaseException:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            raise
        conn.execute("RELEASE op")
        return result

    return run


def resolve_all(outcomes: list[tuple[Any, Any, BaseException | None]]) -> None:
    # One hop to each event loop per batch, not one per ping.
    by_loop: dict[Any, list[tuple[Any, Any, BaseException | None]]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
    for loop, items in by_loop.items():
        if not loop.is_closed():
            loop.call_soon_threadsafe(_resolve, items)


def _resolve(items: list[tuple[Any, Any, BaseException | None]]) -> None:
    for future, result, error in items:
        if future.done():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
