"""Real peers for alert tests: an HTTP receiver and an SMTP server on 127.0.0.1.

The HTTP receiver runs in threads of its own, so a test can use it from an
event loop (the ``live`` server), from the CLI run in-process or from a
subprocess. It answers each POST as the test scripts it per path: a status
code, ``HANG`` to hold the request without answering until ``release()``, or
``CLOSE`` to close the connection without answering.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

HANG = "hang"
CLOSE = "close"
HANG_LIMIT = 30.0
"""Longest a held request waits for ``release()``: a test never hangs for ever."""


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens, until a test starts something."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Post:
    """One request the receiver took, as Apprise's ``json://`` service sent it."""

    path: str
    payload: dict[str, Any]
    at: float

    @property
    def title(self) -> str:
        return str(self.payload.get("title", ""))

    @property
    def message(self) -> str:
        return str(self.payload.get("message", ""))

    @property
    def type(self) -> str:
        return str(self.payload.get("type", ""))


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records POSTs and answers as scripted."""

    def __init__(self, port: int = 0) -> None:
        self.scripts: dict[str, list[int | str]] = {}
        self._posts: list[Post] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = _HttpServer(("127.0.0.1", port), _handler_for(self))
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(0.05,),
            name=f"receiver-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def url(self, path: str = "/hook", userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"json://{at}127.0.0.1:{self.port}{path}"

    def posts(self, path: str | None = None) -> list[Post]:
        with self._lock:
            return [p for p in self._posts if path is None or p.path == path]

    def release(self) -> None:
        """Answer every held request, and hold none from now on."""
        self._released.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def wait(self, count: int, path: str | None = None, timeout: float = 10) -> None:
        """Block until ``count`` POSTs (to ``path``) have arrived."""
        give_up = time.monotonic() + timeout
        while len(self.posts(path)) < count:
            if time.monotonic() > give_up:
                raise AssertionError(
                    f"{len(self.posts(path))} of {count} POSTs within {timeout} s"
                )
            time.sleep(0.01)

    async def arrived(
        self, count: int, path: str | None = None, timeout: float = 10
    ) -> list[Post]:
        """Wait in the event loop until ``count`` POSTs (to ``path``) arrived."""
        give_up = time.monotonic() + timeout
        while len(self.posts(path)) < count:
            if time.monotonic() > give_up:
                raise AssertionError(
                    f"{len(self.posts(path))} of {count} POSTs within {timeout} s: "
                    f"{[p.title for p in self.posts()]}"
                )
            await asyncio.sleep(0.01)
        return self.posts(path)

    def _take(self, path: str, body: bytes) -> int | str:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {"undecodable": body.decode("utf-8", "replace")}
        with self._lock:
            self._posts.append(Post(path, payload, time.time()))
            script = self.scripts.get(path)
            return script.pop(0) if script else 200

    def _hold(self) -> None:
        self._released.wait(HANG_LIMIT)


def _handler_for(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length", 0))
            answer = receiver._take(self.path, self.rfile.read(size))
            if answer == CLOSE:
                self.close_connection = True
                return
            if answer == HANG:
                receiver._hold()
                answer = 200
            self.send_response(int(answer))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up on a held request leaves a broken pipe behind.
        pass


class MailSink:
    """An SMTP server (aiosmtpd) in the running event loop, on a free port.

    No TLS and no login: Apprise reaches it with ``mailto://`` in its
    insecure mode. Every message is kept, parsed.
    """

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Envelope] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> MailSink:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="sink.test", loop=loop), "127.0.0.1", 0
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def url(self, to: str = "ops@example.test") -> str:
        sender = "serverlord@example.test"
        return f"mailto://127.0.0.1:{self.port}?from={sender}&to={to}&mode=insecure"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def arrived(self, count: int, timeout: float = 10) -> list[EmailMessage]:
        give_up = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > give_up:
                raise AssertionError(
                    f"{len(self.messages)} of {count} e-mails within {timeout} s"
                )
            await asyncio.sleep(0.01)
        return list(self.messages)

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.envelopes.append(envelope)
        self.messages.append(message)
        return "250 OK"
