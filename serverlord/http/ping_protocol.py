"""Plain pings answered by the HTTP protocol itself, without an ASGI round.

Measured with py-spy under ``serverlord bench ingest``, about half of the event
loop's time per ping went to the ASGI round around it: uvicorn's task wrapper,
the response's two ``send`` messages (each header checked against a regular
expression) and two socket writes, one for the head and one for the body. A
ping needs none of it. ``PingProtocol`` hands each request that
``PingFastPath`` would answer straight to it, and writes the answer (the same
prebuilt one, with the same headers uvicorn would add) with one write. Every
other request, and every request while traces are on (the application served
is then the tracing middleware), takes uvicorn's usual way. Pipelined requests
are answered in turn: uvicorn starts each once the one before is answered.

uvicorn still parses the request and keeps the connection's state (keep-alive,
pipelining, flow control, graceful stop): the answer ends the request the way
uvicorn's own ``send`` does.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from litestar.response.base import ASGIResponse
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

from serverlord.http.fast_ping import PingFastPath
from serverlord.http.guard import GuardedHttpProtocol

log = logging.getLogger(__name__)


class PingProtocol(GuardedHttpProtocol):
    """uvicorn's httptools protocol, guarded, answering plain pings itself."""

    _heads: ClassVar[dict[int, tuple[ASGIResponse, bytes]]] = {}
    """The encoded headers of each answer, by its id (the answer is kept with
    them, so that its id stays its own)."""
    HEADS_KEPT: ClassVar[int] = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Served as it is, not wrapped for traces.
        self.fast_path = self.app if isinstance(self.app, PingFastPath) else None

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        fast = self.fast_path
        # ``app`` is not ours when uvicorn answers 503 over its limit.
        segments = None
        if fast is not None and app is self.app:
            segments = fast.ping_segments(cycle.scope)
        if fast is None or segments is None:
            super()._start_asgi_task(cycle, app)
            return
        task = self.loop.create_task(self._ping(fast, cycle, segments))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _ping(
        self, fast: PingFastPath, cycle: RequestResponseCycle, segments: list[str]
    ) -> None:
        try:
            answer = await fast.answer(cycle.scope, segments)
            if cycle.flow.write_paused and not cycle.disconnected:
                await cycle.flow.drain()
            if cycle.disconnected:
                return
            self._send(cycle, answer)
        except Exception as exc:
            # ``answer`` turns the ping service's own failures into a 500;
            # this is the protocol's, after which the connection is unusable.
            log.error(
                "ping answer failed: %r",
                exc,
                exc_info=exc,
                extra={"action": "ping_failed"},
            )
            cycle.transport.close()
        finally:
            cycle.on_response = lambda: None

    def _send(self, cycle: RequestResponseCycle, answer: ASGIResponse) -> None:
        """Write the whole answer and end the request as uvicorn's send does."""
        content = [STATUS_LINE[answer.status_code]]
        for name, value in cycle.default_headers:
            content += (name, b": ", value, b"\r\n")
        content.append(self._head_of(answer))
        if not cycle.keep_alive:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")
        if cycle.scope["method"] != "HEAD":
            content.append(answer.body)
        cycle.response_started = cycle.response_complete = True
        cycle.transport.write(b"".join(content))
        cycle.message_event.set()
        if not cycle.keep_alive:
            cycle.transport.close()
        cycle.on_response()

    def _head_of(self, answer: ASGIResponse) -> bytes:
        known = self._heads.get(id(answer))
        if known is not None and known[0] is answer:
            return known[1]
        head = b"".join(
            b"%s: %s\r\n" % (name.lower(), value)
            for name, value in answer.encode_headers()
        )
        if len(self._heads) >= self.HEADS_KEPT:
            self._heads.clear()
        self._heads[id(answer)] = (answer, head)
        return head
