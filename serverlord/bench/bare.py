"""A bare asyncio HTTP responder: ``200 OK`` to every request, nothing else.

The ceiling one Python process on this machine can reach: ``ingest`` loads it
the same way as serverlord and reports serverlord's throughput as a share of
it. Run as ``serverlord bench responder --port PORT``; it stops on SIGTERM or
Ctrl-C.
"""

from __future__ import annotations

import asyncio
import signal
from typing import cast

from serverlord.errors import CommandError

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nOK"


class Responder(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        # Requests without bodies: one answer per header block.
        self.pending += data
        count = self.pending.count(b"\r\n\r\n")
        if count and self.transport is not None:
            self.pending = self.pending[self.pending.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(ANSWER * count)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(Responder, "127.0.0.1", port, backlog=1024)
    async with server:
        await stop.wait()


def run_responder(port: int) -> int:
    try:
        import uvloop
    except ImportError:
        run = asyncio.run
    else:
        run = uvloop.run
    try:
        run(serve(port))
    except OSError as exc:
        raise CommandError(
            f"the responder cannot listen on 127.0.0.1:{port}: {exc.strerror}"
        ) from None
    return 0
