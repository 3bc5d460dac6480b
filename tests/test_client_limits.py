"""What one client can take of a server: connections and memory.

Only the first ``--ping-body-limit`` bytes of a body are kept; the rest is
read and dropped as it arrives, so many large uploads at once (even to
checks that do not exist) cannot fill the server's memory. One address may
hold ``--connections-per-address`` connections; more are answered 429, so
one client holding connections open cannot starve the others.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_end_to_end import ServerProcess, free_port

UPLOADS = 30
PER_ADDRESS = 40
SIZE = 9_000_000
"""Under the default cap (10 MB): every upload is accepted and read."""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path / "data",
        free_port(),
        tmp_path / "serve.log",
        env={"SERVERLORD_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS)},
    )
    process.start().wait_ready()
    try:
        yield process
    finally:
        process.cleanup()


def upload(port: int, started: threading.Barrier, answers: list[bytes]) -> None:
    chunk = b"x" * 1_000_000
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"POST /ping/{uuid.uuid4()} HTTP/1.1\r\nHost: a\r\n"
            f"Content-Length: {SIZE}\r\nConnection: close\r\n\r\n".encode()
        )
        for _ in range(SIZE // len(chunk) - 1):
            sock.sendall(chunk)
        # Every upload is nearly whole and held open at the same moment.
        started.wait(timeout=60)
        sock.sendall(chunk)
        sock.settimeout(30)
        answers.append(sock.recv(100))


def test_many_big_uploads_at_once_cost_little_memory(server: ServerProcess) -> None:
    before = rss_mib(server.pid)
    started = threading.Barrier(UPLOADS + 1)
    answers: list[bytes] = []
    threads = [
        threading.Thread(target=upload, args=(server.port, started, answers))
        for _ in range(UPLOADS)
    ]
    for thread in threads:
        thread.start()
    started.wait(timeout=60)
    held = rss_mib(server.pid)
    for thread in threads:
        thread.join(timeout=60)
    after = rss_mib(server.pid)

    assert len(answers) == UPLOADS
    assert all(answer.startswith(b"HTTP/1.1 404") for answer in answers)
    # 270 MB were sent; a server keeping whole bodies grows by about that.
    assert max(held, after) - before < 60, (before, held, after)


def ping_from(source: str, port: int) -> bytes:
    with socket.create_connection(
        ("127.0.0.1", port), timeout=10, source_address=(source, 0)
    ) as sock:
        sock.sendall(
            f"GET /ping/{uuid.uuid4()} HTTP/1.1\r\nHost: a\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        return sock.recv(200)


def test_one_address_holding_connections_leaves_the_others_served(
    server: ServerProcess,
) -> None:
    held = [
        socket.create_connection(("127.0.0.1", server.port), timeout=10)
        for _ in range(PER_ADDRESS + 5)
    ]
    try:
        refused = []
        for sock in held[PER_ADDRESS:]:
            refused.append(sock.recv(4096))
        other = ping_from("127.0.0.2", server.port)
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    again = ping_from("127.0.0.1", server.port)

    for answer in refused:
        assert answer.startswith(b"HTTP/1.1 429 Too Many Requests")
        assert b"retry-after: 1" in answer
        assert answer.endswith(b"too many connections from this address")
        assert b"x-content-type-options: nosniff" in answer
        assert b"cache-control: no-store" in answer
    # Another address is served; a check that does not exist is 404.
    assert other.startswith(b"HTTP/1.1 404")
    assert again.startswith(b"HTTP/1.1 404")
