"""Hostile input against a real ``serverlord serve`` on a real socket.

Hypothesis makes ping requests with any method, path, query, headers and body,
JSON documents for the API, and raw bytes that are barely HTTP. Whatever comes,
the server never answers 5xx, never logs a traceback, and a refused request
changes nothing in the store. Fixed tests pin the limits: a head too large
gets 431, a head or body too slow 408, a body over the cap 413, and fields
over their length 400 with a message that names them.
"""

from __future__ import annotations

import http.client
import json
import socket
import string
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serverlord.http.guard import HEAD_TIMEOUT, MAX_HEAD
from tests.database import Database
from tests.test_end_to_end import ServerProcess, add_check, cli, free_port

BODY_CAP = 200_000
SENT = {"requests": 0}
"""Fuzzed requests sent by this module, reported at its end."""

TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
HEADER_VALUE = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=200,
)
SEGMENT = st.text(max_size=60).map(lambda text: urllib.parse.quote(text, safe=""))


@dataclass
class Target:
    server: ServerProcess
    database: Database
    check: str
    api_key: str
    ping_key: str

    def n_pings(self) -> int:
        rows = self.database.query(
            "SELECT n_pings FROM checks WHERE id = ?", self.check
        )
        return int(rows[0][0])

    def n_checks(self) -> int:
        return int(self.database.query("SELECT count(*) FROM checks")[0][0])


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("hostile")
    database = Database(root / "data", "")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    user = cli(database, base, "user", "add", "mallory@example.com", "--json")
    assert user.returncode == 0, user.stderr
    keys = json.loads(user.stdout)
    check = add_check(database, base, "target")
    server = ServerProcess(
        root / "data",
        port,
        root / "serve.log",
        env={
            # The fuzzer pings one check far faster than any job would.
            "SERVERLORD_PING_RATE_LIMIT": "0",
            "SERVERLORD_API_RATE_LIMIT": "100000",
            "SERVERLORD_PING_BODY_CAP": str(BODY_CAP),
        },
    )
    server.start()
    try:
        server.wait_ready()
        yield Target(server, database, check["uuid"], keys["api_key"], keys["ping_key"])
        log = server.log()
        assert "Traceback" not in log
        assert '"level": "error"' not in log
    finally:
        server.cleanup()


@dataclass
class Answer:
    status: int
    body: bytes


def send(
    target: Target,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Answer:
    SENT["requests"] += 1
    conn = http.client.HTTPConnection("127.0.0.1", target.server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Answer(response.status, response.read())
    finally:
        conn.close()


def raw(target: Target, data: bytes, wait: float = 5.0) -> bytes:
    """What the server answers to these bytes, up to when it closes."""
    SENT["requests"] += 1
    with socket.create_connection(("127.0.0.1", target.server.port)) as sock:
        sock.settimeout(wait)
        sock.sendall(data)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return answer


def status_of(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer[9:12])


# Properties

METHODS = st.sampled_from(
    ["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]
) | st.text(TOKEN, min_size=1, max_size=12)
SUFFIXES = st.sampled_from(
    ["", "/start", "/fail", "/log", "/0", "/255", "/256", "/-1", "/x", "//", "/%00"]
) | st.lists(SEGMENT, max_size=3).map(lambda parts: "".join("/" + p for p in parts))
QUERIES = st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=4)
HEADERS = st.dictionaries(
    st.text(TOKEN, min_size=1, max_size=30).filter(
        lambda name: (
            name.lower()
            not in ("content-length", "transfer-encoding", "host", "connection")
        )
    ),
    HEADER_VALUE,
    max_size=8,
)
FUZZ = settings(
    max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None
)


@FUZZ
@given(
    method=METHODS,
    aimed=st.booleans(),
    code=SEGMENT,
    suffix=SUFFIXES,
    query=QUERIES,
    headers=HEADERS,
    body=st.none() | st.binary(max_size=4000),
)
def test_any_ping_request_gets_no_5xx_and_a_refused_one_records_nothing(
    target: Target,
    method: str,
    aimed: bool,
    code: str,
    suffix: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes | None,
) -> None:
    path = f"/ping/{target.check if aimed else code}{suffix}"
    if query:
        path += "?" + urllib.parse.urlencode(query)
    before = target.n_pings()

    response = send(target, method, path, headers, body)

    assert response.status < 500, (method, path)
    recorded = target.n_pings() - before
    assert recorded == (1 if response.status == 200 else 0), (method, path)
    assert target.n_checks() == 1


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=300),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=20), inner, max_size=5)
    ),
    max_leaves=30,
)
FIELDS = st.sampled_from(
    [
        "name", "slug", "tags", "desc", "timeout", "grace", "schedule", "tz",
        "channels", "unique", "manual_resume", "methods", "max_runtime",
        "filter_subject", "start_kw", "success_kw", "failure_kw",
    ]
)  # fmt: skip


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=st.dictionaries(FIELDS, JSON, max_size=6) | JSON,
    raw_body=st.none() | st.binary(max_size=2000),
)
def test_any_json_to_the_api_gets_no_5xx_and_a_refused_one_creates_nothing(
    target: Target, document: object, raw_body: bytes | None
) -> None:
    before = target.n_checks()
    body = raw_body if raw_body is not None else json.dumps(document).encode()
    headers = {"X-Api-Key": target.api_key, "Content-Type": "application/json"}

    response = send(target, "POST", "/api/v3/checks/", headers, body)

    assert response.status < 500, body[:200]
    if response.status >= 400:
        assert target.n_checks() == before
    elif response.status == 201:
        # Accepted: remove it again so that the ping property finds one check.
        created = target.database.query(
            "SELECT id FROM checks WHERE id != ?", target.check
        )
        for (check_id,) in created:
            deleted = send(target, "DELETE", f"/api/v3/checks/{check_id}", headers)
            assert deleted.status == 200


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    head=st.binary(max_size=300)
    | st.builds(
        lambda method, target_, version, lines: (
            method
            + b" "
            + target_
            + b" "
            + version
            + b"\r\n"
            + b"".join(line + b"\r\n" for line in lines)
        ),
        st.sampled_from([b"GET", b"POST", b"G\x00T", b""]),
        st.binary(max_size=80).map(lambda b: b"/ping/" + b),
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/9.9", b"HTTP/1.1 x", b""]),
        st.lists(st.binary(max_size=60), max_size=6),
    )
)
def test_malformed_http_is_refused_with_4xx_never_5xx(
    target: Target, head: bytes
) -> None:
    before = target.n_pings()

    answer = raw(target, head + b"\r\n\r\n", wait=HEAD_TIMEOUT + 5)

    status = status_of(answer)
    assert status is None or status < 500, answer[:200]
    assert target.n_pings() == before


# Fixed limits


def test_a_head_over_the_limit_gets_431(target: Target) -> None:
    big = b"GET /ping/%s HTTP/1.1\r\nHost: a\r\nX-Big: %s\r\n\r\n"
    one_header = raw(target, big % (target.check.encode(), b"a" * (MAX_HEAD + 1)))
    many = b"".join(b"X-%d: 1\r\n" % n for n in range(150))
    many_headers = raw(target, b"GET / HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n")
    long_url = raw(target, b"GET /ping/" + b"a" * MAX_HEAD + b" HTTP/1.1\r\n\r\n")
    before = target.n_pings()

    for answer in (one_header, many_headers, long_url):
        assert status_of(answer) == 431
        assert answer.endswith(b"request header fields too large")
    assert target.n_pings() == before


def test_a_header_line_that_never_ends_gets_431_without_waiting(
    target: Target,
) -> None:
    # The parser reports a header only once its line ends: the raw bytes of
    # the head are counted too, so a line sent without end is refused early.
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", target.server.port)) as sock:
        sock.settimeout(5.0)
        sock.sendall(
            b"GET /ping/%s HTTP/1.1\r\nHost: a\r\nX-Big: " % target.check.encode()
        )
        try:
            for _ in range(64):
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_all(sock)

    assert status_of(answer) == 431
    assert time.monotonic() - began < HEAD_TIMEOUT


def test_a_big_body_and_a_pipelined_request_in_one_write_are_both_served(
    target: Target,
) -> None:
    # The raw count of a head must not take a body read with it for a head.
    body = b"b" * 150_000
    check = target.check.encode()
    first = b"POST /ping/%s HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (
        check,
        len(body),
    )
    second = b"GET /ping/%s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % check
    before = target.n_pings()

    answer = raw(target, first + body + second)

    assert answer.count(b"HTTP/1.1 200 OK") == 2, answer[:300]
    assert target.n_pings() == before + 2


def test_a_trickled_head_gets_408_while_other_pings_get_200(target: Target) -> None:
    before = target.n_pings()
    answers: list[bytes] = []

    def slow_client() -> None:
        with socket.create_connection(("127.0.0.1", target.server.port)) as sock:
            sock.sendall(f"GET /ping/{target.check} HTTP/1.1\r\n".encode())
            sock.settimeout(1.0)
            for n in range(int(HEAD_TIMEOUT) + 5):
                try:
                    sock.sendall(b"X-%d: 1\r\n" % n)
                except OSError:
                    break
                try:
                    if chunk := sock.recv(65536):
                        answers.append(chunk + read_all(sock))
                        break
                except TimeoutError:
                    continue

    slow = threading.Thread(target=slow_client)
    slow.start()
    others = [send(target, "GET", f"/ping/{target.check}") for _ in range(5)]
    slow.join()

    assert [other.status for other in others] == [200] * 5
    assert len(answers) == 1
    assert status_of(answers[0]) == 408
    assert target.n_pings() == before + 5


def test_a_slowly_sent_body_is_stored_whole(target: Target) -> None:
    body = bytes(range(256)) * 4
    with socket.create_connection(("127.0.0.1", target.server.port)) as sock:
        sock.sendall(
            f"POST /ping/{target.check} HTTP/1.1\r\nHost: a\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        for start in range(0, len(body), 128):
            sock.sendall(body[start : start + 128])
            time.sleep(0.2)
        sock.settimeout(10)
        answer = read_all(sock)

    stored = target.database.query(
        "SELECT body FROM pings WHERE check_id = ? ORDER BY n DESC LIMIT 1",
        target.check,
    )
    assert status_of(answer) == 200
    assert bytes(stored[0][0]) == body


def test_a_body_over_the_cap_gets_413_and_records_nothing(target: Target) -> None:
    before = target.n_pings()

    response = send(target, "POST", f"/ping/{target.check}", body=b"x" * (BODY_CAP + 1))

    assert response.status == 413
    assert target.n_pings() == before


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("name", "n" * 101, "name is too long"),
        ("slug", "s" * 101, "slug is too long"),
        ("slug", "Not A Slug", "slug"),
        ("tags", "t " * 300, "tags is too long"),
        ("desc", "d" * 60_000, "desc is too long"),
        ("schedule", "* " * 600, "schedule is too long"),
        ("schedule", "61 * * * *", "schedule is not a valid cron"),
        ("tz", "Mars/Olympus", "tz"),
        ("timeout", 10**12, "timeout is too large"),
    ],
)
def test_a_field_over_its_limit_gets_400_naming_it(
    target: Target, field: str, value: object, error: str
) -> None:
    before = target.n_checks()
    headers = {"X-Api-Key": target.api_key, "Content-Type": "application/json"}

    response = send(
        target, "POST", "/api/v3/checks/", headers, json.dumps({field: value}).encode()
    )

    assert response.status == 400
    assert error in json.loads(response.body)["error"], response.body
    assert target.n_checks() == before


def test_the_fuzzed_request_count_is_reported(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    with capsys.disabled():
        print(f"\nhostile input: {SENT['requests']} requests sent, none answered 5xx")
    assert SENT["requests"] > 0
