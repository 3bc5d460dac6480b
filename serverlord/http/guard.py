"""uvicorn's httptools protocol with bounds on a request's head and its time.

httptools sets no limit on the size of a request's head, and uvicorn none on
how long reading a request may take: a client could send headers without end,
or trickle a byte now and then and hold one of the server's connections for
ever. Here a head over ``MAX_HEAD`` bytes or ``MAX_HEADERS`` fields gets 431,
and a request whose head is not whole within ``HEAD_TIMEOUT`` (counted from
its first byte, or from the connection when nothing comes) or whose body is
not whole within ``BODY_TIMEOUT`` gets 408; the connection is closed after
either. A client address may hold ``per_address`` connections at once; more
are answered 429 and closed, so one client cannot take every connection the
server accepts. A request the parser cannot read gets 400. All these answers
carry the security headers of every other answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serverlord.http.headers import API_HEADERS

MAX_HEAD = 32 * 1024
"""Bytes of the request line and headers together."""
MAX_HEADERS = 100
HEAD_SLACK = 16 * 1024
"""Bytes read beyond MAX_HEAD before an unfinished head is refused: the
parser reports a header only once its line ends, so the raw bytes are counted
too, roughly where a read also carried the end of a request."""
REQUEST_LINE_BYTES = 16
"""The method, version and line ends of a request line, which the parser
does not report: roughly."""
HEAD_TIMEOUT = 10.0
BODY_TIMEOUT = 60.0

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
}
_TEXTS = {
    400: b"invalid HTTP request",
    408: b"request timeout",
    429: b"too many connections from this address",
    431: b"request header fields too large",
}


_GUARD_HEADERS = b"".join(
    b"%s: %s\r\n" % (name.lower().encode(), value.encode())
    for name, value in {**API_HEADERS, "Access-Control-Allow-Origin": "*"}.items()
)
"""Refused before the path is known: the headers of every other answer, and
a ping's CORS header so that a page pinging may read why."""


REPEAT_LOGGED_EVERY = 60.0
"""Seconds between two log lines of uvicorn's about malformed requests."""


class _Sparse(logging.Filter):
    """Lets one record of a repeated message through per REPEAT_LOGGED_EVERY.

    uvicorn logs a warning for every malformed request: anyone could fill the
    log with them. One line a minute says that it happens.
    """

    MESSAGES = frozenset({"Invalid HTTP request received."})

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message not in self.MESSAGES:
            return True
        now = time.monotonic()
        if now - self._last.get(message, -REPEAT_LOGGED_EVERY) < REPEAT_LOGGED_EVERY:
            return False
        self._last[message] = now
        return True


def quiet_uvicorn() -> None:
    """Thin out uvicorn's log lines that any client can cause (once each)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _Sparse) for f in logger.filters):
        logger.addFilter(_Sparse())


class HeadTooLargeError(Exception):
    """Stops the parser once the head is over its limit."""


class GuardedHttpProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, with the limits of this module."""

    per_address = 1000
    """Connections one client address may hold (set from the settings)."""
    _open: ClassVar[Counter[str]] = Counter()
    """Open connections by client address, in this process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_size = 0
        self._in_head = True
        self._raw_head = 0
        self._parsed = 0
        self._parsed_at_end: int | None = None
        self._refused = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadline: float | None = None
        """When the head or body read now must be whole (loop time), if any."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self._address: str | None = peer[0] if peer else None
        if self._address is not None:
            self._open[self._address] += 1
            if self._open[self._address] > self.per_address:
                self._answer(429)
                return
        self._arm(HEAD_TIMEOUT)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        address = getattr(self, "_address", None)
        if address is not None:
            self._open[address] -= 1
            if self._open[address] <= 0:
                del self._open[address]
            self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._parsed, self._parsed_at_end = 0, None
        super().data_received(data)
        # A header line that never ends is never reported by the parser,
        # which keeps appending to it: count the raw bytes of a head too.
        # When a request ended in this read, the next head is what the
        # parser did not report of it (a rough count: the slack covers it).
        if not self._in_head or self._refused:
            return
        if self._parsed_at_end is None:
            self._raw_head += len(data)
        else:
            self._raw_head = max(0, len(data) - self._parsed_at_end)
        if self._raw_head > MAX_HEAD + HEAD_SLACK:
            self._answer(431)

    def on_message_begin(self) -> None:
        self._parsed += REQUEST_LINE_BYTES
        super().on_message_begin()
        self._head_size = 0
        self._arm(HEAD_TIMEOUT)

    def on_url(self, url: bytes) -> None:
        self._parsed += len(url)
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed += len(name) + len(value) + 4
        self._count(len(name) + len(value) + 4)
        if len(self.headers) >= MAX_HEADERS:
            self._refuse(431)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._parsed += 2
        self._arm(BODY_TIMEOUT)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._parsed += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head, self._raw_head = True, 0
        self._parsed_at_end = self._parsed
        self._disarm()
        super().on_message_complete()

    def _unsupported_upgrade_warning(self) -> None:
        # serverlord speaks neither WebSocket nor h2c: the request is answered
        # as HTTP/1.1, without two warnings per request for anyone to cause.
        return None

    def send_400_response(self, msg: str) -> None:
        # The parser reports a refused head as a malformed request: its own
        # answer went out already. Otherwise the answer carries the headers
        # of every other one, which uvicorn's own 400 lacks.
        if not self._refused:
            self._answer(400)

    def _count(self, size: int) -> None:
        self._head_size += size
        if self._head_size > MAX_HEAD:
            self._refuse(431)

    def _refuse(self, status: int) -> None:
        self._answer(status)
        raise HeadTooLargeError

    def _check_time(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        if self.loop.time() < self._deadline:
            self._start_timer(self._deadline)
            return
        self._too_slow()

    def _too_slow(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            if cycle is not None and not cycle.response_complete:
                # The application must not answer on a closed connection.
                cycle.disconnected = True
            self._answer(408)
        elif not self.transport.is_closing():
            self.transport.close()

    def _answer(self, status: int) -> None:
        self._refused = True
        self._disarm()
        if self.transport.is_closing():
            return
        text = _TEXTS[status]
        retry = b"retry-after: 1\r\n" if status == 429 else b""
        self.transport.write(
            b"HTTP/1.1 %d %s\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\n%s%s"
            b"connection: close\r\n\r\n%s"
            % (status, _REASONS[status], len(text), retry, _GUARD_HEADERS, text)
        )
        self.transport.close()

    # Two deadlines a request, thousands of requests a second on a busy
    # connection: each only sets a time. One timer per connection wakes at
    # the earliest time that may have passed and moves on to the one set.

    def _arm(self, seconds: float) -> None:
        self._deadline = deadline = self.loop.time() + seconds
        if self._timer is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._start_timer(deadline)

    def _start_timer(self, at: float) -> None:
        self._timer_at = at
        self._timer = self.loop.call_at(at, self._check_time)

    def _disarm(self) -> None:
        self._deadline = None
