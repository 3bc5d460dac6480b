"""``serverlord run --url PING-URL -- COMMAND ARGS...``: a job wrapper.

It sends a start ping with a fresh run id, runs the command with its output
passing through as usual, then sends the exit status with the tail of the
output as the body, and exits with the command's own status. Pings go out on
a thread while the command runs; network errors are retried with back-off,
and a ping that cannot be sent is reported on stderr but never changes the
exit status or stops the command.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from serverlord.errors import UsageError

DEFAULT_BODY_LIMIT = 100_000
"""Bytes of output sent when the server does not say its own limit."""
COMMAND_NOT_FOUND = 127
NOT_EXECUTABLE = 126


def add_run_command(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="run a command and report its start, end and exit status",
        description="Run COMMAND, pinging PING-URL when it starts and when it "
        "ends (with its exit status and the tail of its output), and exit with "
        "its status. Example: serverlord run --url "
        "http://127.0.0.1:8000/ping/UUID -- /usr/local/bin/backup.sh",
    )
    run.add_argument(
        "--url",
        required=True,
        metavar="PING-URL",
        help="the check's ping URL (uuid or ping-key/slug form)",
    )
    run.add_argument(
        "--timeout", type=float, default=10.0, help="seconds one ping may take"
    )
    run.add_argument(
        "--retries",
        type=int,
        default=5,
        help="tries of each ping on network errors (default 5)",
    )
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND")
    run.set_defaults(run=run_job)


def run_job(args: argparse.Namespace, settings: Any) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("give the command to run after --")
    parts = urlsplit(args.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--url: {args.url!r} is not an http(s) ping URL")
    if not 1 <= args.retries <= 100 or not 0 < args.timeout <= 3600:
        raise UsageError("--retries must be 1-100 and --timeout 0-3600 seconds")

    pinger = Pinger(args.url, str(uuid.uuid4()), args.timeout, args.retries)
    start = threading.Thread(target=pinger.start, name="start-ping", daemon=True)
    start.start()
    status, tail = run_command(command, pinger)
    start.join()
    pinger.finish(status, tail)
    return status


class Pinger:
    """Sends the pings of one run; remembers the server's body limit."""

    def __init__(self, url: str, rid: str, timeout: float, retries: int) -> None:
        self.url = url
        self.rid = rid
        self.timeout = timeout
        self.retries = retries
        self.body_limit = DEFAULT_BODY_LIMIT

    def start(self) -> None:
        answer = self._send("start", b"")
        if answer is not None:
            limit = answer.headers.get("ping-body-limit", "")
            if limit.isdigit():
                self.body_limit = int(limit)

    def finish(self, status: int, body: bytes) -> None:
        self._send(str(status), body[-self.body_limit :] if self.body_limit else b"")

    def _send(self, suffix: str, body: bytes) -> Any:
        import httpx

        url = with_suffix(self.url, suffix, self.rid)
        delay = 0.5
        for attempt in range(1, self.retries + 1):
            try:
                answer = httpx.post(url, content=body, timeout=self.timeout)
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                if answer.status_code < 500:
                    if answer.status_code >= 400:
                        _warn(f"the {suffix} ping got {answer.status_code}: "
                              f"{answer.text[:200]}")  # fmt: skip
                    return answer
                error = f"HTTP {answer.status_code}"
            if attempt < self.retries:
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        _warn(f"could not send the {suffix} ping after {self.retries} tries: {error}")
        return None


def with_suffix(url: str, suffix: str, rid: str) -> str:
    """The ping URL with ``/suffix`` on its path and the run id in its query."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "rid"]
    query.append(("rid", rid))
    path = parts.path.rstrip("/") + "/" + suffix
    return urlunsplit(parts._replace(path=path, query=urlencode(query)))


def run_command(command: list[str], pinger: Pinger) -> tuple[int, bytes]:
    """Run the command, its output passing through; its status and output tail."""
    try:
        child = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
        )
    except FileNotFoundError:
        message = f"serverlord run: command not found: {command[0]}\n"
        sys.stderr.write(message)
        return COMMAND_NOT_FOUND, message.encode()
    except PermissionError:
        message = f"serverlord run: not executable: {command[0]}\n"
        sys.stderr.write(message)
        return NOT_EXECUTABLE, message.encode()
    except OSError as exc:
        # A script without a #! line, a binary for another machine...
        message = f"serverlord run: cannot run {command[0]}: {exc.strerror or exc}\n"
        sys.stderr.write(message)
        return NOT_EXECUTABLE, message.encode()

    tail = Tail(lambda: pinger.body_limit)
    copiers = [
        threading.Thread(target=tail.copy, args=(pipe, out), daemon=True)
        for pipe, out in ((child.stdout, sys.stdout), (child.stderr, sys.stderr))
    ]
    for copier in copiers:
        copier.start()
    previous = _forward_signals(child)
    try:
        while True:
            try:
                returncode = child.wait()
                break
            except KeyboardInterrupt:
                # Ctrl-C reached the command too: its status tells the rest.
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for copier in copiers:
        copier.join()
    # Killed by a signal: report it as a shell would, 128 + its number.
    status = 128 - returncode if returncode < 0 else returncode
    return min(status, 255), tail.bytes()


class Tail:
    """The last bytes of everything the command printed, in arrival order."""

    def __init__(self, limit: Any) -> None:
        self.limit = limit
        self.size = 0
        self.chunks: collections.deque[bytes] = collections.deque()
        self.lock = threading.Lock()

    def copy(self, pipe: IO[bytes] | None, out: IO[str]) -> None:
        assert pipe is not None
        target = getattr(out, "buffer", None)
        while chunk := pipe.read(65536):
            if target is not None:
                try:
                    target.write(chunk)
                    target.flush()
                except (BrokenPipeError, ValueError):
                    target = None
            self.add(chunk)
        pipe.close()

    def add(self, chunk: bytes) -> None:
        with self.lock:
            self.chunks.append(chunk)
            self.size += len(chunk)
            limit = self.limit()
            while self.chunks and self.size - len(self.chunks[0]) >= limit:
                self.size -= len(self.chunks.popleft())

    def bytes(self) -> bytes:
        with self.lock:
            return b"".join(self.chunks)


def _forward_signals(child: subprocess.Popen[bytes]) -> dict[int, Any]:
    # A wrapper that is told to stop passes it on and waits for the command.
    def forward(sig: int, frame: Any) -> None:
        if child.poll() is None:
            os.kill(child.pid, sig)

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, forward)
    return previous


def _warn(text: str) -> None:
    sys.stderr.write(f"serverlord run: {text}\n")
    sys.stderr.flush()
