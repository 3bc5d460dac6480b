"""One message sent through Apprise, on a thread of its own, by a timeout.

Sends run in threads of their own, reused: Apprise's shared pool has only CPU
count + 4 threads, so a receiver that hangs would hold them all and make sends
to every other channel time out while they merely wait in its queue. The
notifier (``serverlord.notifier``) sends its deliveries through here, and
``serverlord channel test`` its test messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apprise import NotifyFormat, NotifyType

from serverlord.apprise_urls import apprise_log, plugin_for
from serverlord.channels import DOWN_ALERT, REMINDER, TEST, UP_ALERT, ChannelError
from serverlord.durations import format_duration

__all__ = ["ERROR_CHARS", "Sent", "send_message"]

log = logging.getLogger(__name__)

ERROR_CHARS = 500
"""Longest error text kept of a failed send."""

SOCKET_MARGIN = 1.0
"""Apprise's sockets give up this much after the attempt, so a hang reads as
a timeout and not as whichever error the socket gives."""

_NOTIFY_TYPES = {
    DOWN_ALERT: NotifyType.FAILURE,
    UP_ALERT: NotifyType.SUCCESS,
    REMINDER: NotifyType.WARNING,
    TEST: NotifyType.INFO,
}


@dataclass(slots=True, frozen=True)
class Sent:
    """What one try to send a message gave."""

    error: str | None
    """None when the service took the message; else why not, in words."""
    permanent: bool
    """The failure will not go away by trying again."""
    latency: float


async def send_message(
    url: str,
    title: str,
    body: str,
    kind: str,
    timeout: float,
    *,
    done: Callable[[], None] = lambda: None,
    log_extra: dict[str, Any] | None = None,
) -> Sent:
    """Send one message to an Apprise URL, giving up after ``timeout``.

    ``kind`` is the delivery kind (down, up, reminder or test), which some
    services show as a colour or an icon. Never raises for a failed send.

    The send runs on a thread of its own. Apprise's sockets time out per
    read, so a receiver that trickles its answer can hold the thread much
    longer: the attempt gives up at the timeout all the same, and the daemon
    thread ends on its own (or with the process). ``done`` is called once,
    when that thread has ended.
    """
    started = time.monotonic()
    try:
        plugin = plugin_for(url, timeout + SOCKET_MARGIN)
    except ChannelError as exc:
        done()
        return Sent(str(exc), True, time.monotonic() - started)
    except Exception as exc:
        # Apprise failing to load a plugin, say: not the URL's fault.
        done()
        return _raised(exc, "preparing", started, log_extra)

    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bool] = loop.create_future()

    def notify() -> None:
        try:
            ok = bool(
                plugin.notify(
                    body=body,
                    title=title,
                    notify_type=_NOTIFY_TYPES.get(kind, NotifyType.INFO),
                    body_format=NotifyFormat.TEXT,
                )
            )
            outcome: tuple[bool, BaseException | None] = (ok, None)
        except Exception as exc:
            outcome = (False, exc)
        # The loop is gone only at exit, when nobody waits for the answer.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, answer, outcome)
            loop.call_soon_threadsafe(done)

    error: str | None = None
    with apprise_log() as messages:
        # The copied context carries the capture of Apprise's log into the thread.
        context = contextvars.copy_context()
        _WORKERS.submit(lambda: context.run(notify))
        try:
            ok = await asyncio.wait_for(asyncio.shield(answer), timeout)
        except TimeoutError:
            error = f"timed out after {format_duration(timeout)}"
        except Exception as exc:
            return _raised(exc, "sending", started, log_extra)
        else:
            if not ok:
                reasons = "; ".join(dict.fromkeys(m.strip() for m in messages))
                error = reasons or "Apprise reported a failure without a reason"

    latency = time.monotonic() - started
    return Sent(None if error is None else error[:ERROR_CHARS], False, latency)


class _Workers:
    """Daemon threads that run sends, reused; a job never waits for a busy one.

    Each job takes an idle thread or starts a new one, so a thread stuck on a
    receiver that trickles its answer delays no other send; daemons never hold
    up the exit of the process.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], object]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                threading.Thread(
                    target=self._work, name="serverlord-send", daemon=True
                ).start()
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            finally:
                with self._lock:
                    self._idle += 1


_WORKERS = _Workers()


def _settle(
    answer: asyncio.Future[bool], outcome: tuple[bool, BaseException | None]
) -> None:
    if answer.done():
        return
    ok, exc = outcome
    if exc is None:
        answer.set_result(ok)
    else:
        answer.set_exception(exc)


def _raised(
    exc: Exception, doing: str, started: float, log_extra: dict[str, Any] | None
) -> Sent:
    log.warning(
        "Apprise raised while %s a message",
        doing,
        exc_info=exc,
        extra={"action": "send_raised", **(log_extra or {})},
    )
    error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
    return Sent(error, False, time.monotonic() - started)
