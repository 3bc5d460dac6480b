"""The ping API through a live server: what Healthchecks clients rely on.

Cases P1-P25 of the behaviour cases, each one test, plus the body cap, the
methods a ping URL refuses and the client address.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from serverlord.checks import (
    DOWN,
    EXIT_STATUS,
    FAILURE,
    MISSED,
    NEW,
    PAUSED,
    SUCCESS,
    UP,
    Check,
    Deadline,
    Flip,
    deadline_of,
)
from serverlord.config import Settings
from serverlord.pings import Ping
from serverlord.render import ping_json
from serverlord.schedules import Schedule
from tests.conftest import Live

DAY = 86400.0
HOUR = 3600.0
SMALL_BODIES = {"ping_body_limit": 10, "ping_body_cap": 100}


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, request: pytest.FixtureRequest
) -> Settings:
    # Tests that need other limits ask for them with indirect parametrization.
    overrides: dict[str, Any] = getattr(request, "param", {})
    return Settings(data_dir=tmp_path, database_url=database_url, shards=4, **overrides)


async def add(live: Live, **fields: Any) -> Check:
    """Store a check: simple, period 1 day, grace 1 hour, unless told otherwise."""
    fields.setdefault("schedule", Schedule.simple(DAY))
    fields.setdefault("grace", HOUR)
    check = Check(id=str(uuid.uuid4()), name="backup", created=time.time(), **fields)
    await live.store.add_check(check)
    return check


async def reload(live: Live, check: Check) -> Check:
    stored = await live.store.get_check(check.id)
    assert stored is not None
    return stored


async def pings_of(live: Live, check: Check) -> list[Ping]:
    """The check's stored pings, oldest first."""
    return list(reversed(await live.store.recent_pings(check.id, 100)))


async def flips_of(live: Live, check: Check) -> list[Flip]:
    """The check's flips, oldest first."""
    return list(reversed(await live.store.recent_flips(check.id, 100)))


async def the_ping(live: Live, check: Check) -> Ping:
    pings = await pings_of(live, check)
    assert len(pings) == 1
    return pings[0]


async def assert_nothing_recorded(live: Live, check: Check) -> None:
    stored = await reload(live, check)
    assert stored.n_pings == 0
    assert stored.status == check.status
    assert stored.last_ping == check.last_ping
    assert stored.last_start == check.last_start
    assert await pings_of(live, check) == []
    assert await flips_of(live, check) == []


# Pings by uuid


async def test_a_ping_marks_a_new_check_up_and_answers_ok(live: Live) -> None:
    check = await add(live)

    before = time.time()
    response = await live.client.get(f"/ping/{check.id}")
    after = time.time()

    assert response.status_code == 200
    assert response.text == "OK"
    assert response.headers["access-control-allow-origin"] == "*"
    assert "no-cache" in response.headers["cache-control"]
    assert response.headers["ping-body-limit"] == "100000"

    ping = await the_ping(live, check)
    assert ping.kind == "success"
    assert ping.method == "GET"
    assert before <= ping.received <= after

    stored = await reload(live, check)
    assert stored.status == UP
    assert stored.n_pings == 1
    assert stored.last_ping == ping.received
    expected = ping.received + DAY + HOUR
    assert deadline_of(stored) == Deadline(expected, MISSED)
    shard = live.server.sweepers.shard_for(stored.shard)
    assert shard.deadlines[check.id] == pytest.approx(expected)

    [flip] = await flips_of(live, check)
    assert (flip.old_status, flip.new_status, flip.reason) == (NEW, UP, SUCCESS)


async def test_a_post_stores_its_method_and_exact_body_without_auth(
    live: Live,
) -> None:
    check = await add(live)
    body = b"backup done\n\r\n  12 files\x00\n"

    response = await live.client.post(f"/ping/{check.id}", content=body)

    assert response.status_code == 200
    assert response.text == "OK"
    ping = await the_ping(live, check)
    assert ping.method == "POST"
    assert ping.body == body


async def test_a_head_request_answers_empty_and_is_recorded(live: Live) -> None:
    check = await add(live)

    response = await live.client.head(f"/ping/{check.id}")

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["access-control-allow-origin"] == "*"
    ping = await the_ping(live, check)
    assert ping.method == "HEAD"
    assert ping.kind == "success"
    assert (await reload(live, check)).status == UP


async def test_a_malformed_uuid_is_not_found_and_touches_no_check(
    live: Live,
) -> None:
    check = await add(live)
    spellings = [
        "not-a-uuid",
        check.id.replace("-", ""),
        check.id.upper(),
        check.id + "0",
    ]

    for code in spellings:
        for suffix in ("", "/fail", "/start", "/0"):
            response = await live.client.get(f"/ping/{code}{suffix}")
            assert response.status_code == 404, (code, suffix)
            assert response.text == "not found"

    await assert_nothing_recorded(live, check)


async def test_a_uuid_of_no_check_is_not_found(live: Live) -> None:
    response = await live.client.get(f"/ping/{uuid.uuid4()}")

    assert response.status_code == 404
    assert response.text == "not found"
    assert response.headers["access-control-allow-origin"] == "*"


async def test_a_body_over_the_limit_is_cut_to_the_limit(live: Live) -> None:
    check = await add(live)
    body = bytes(range(256)) * 400

    response = await live.client.post(f"/ping/{check.id}", content=body)

    assert response.status_code == 200
    assert response.headers["ping-body-limit"] == "100000"
    ping = await the_ping(live, check)
    assert ping.body == body[:100_000]


async def test_a_body_that_is_not_utf8_is_stored_unchanged_and_shown_safely(
    live: Live,
) -> None:
    check = await add(live)
    body = b"\xff\xfe bad \xc3\x28 \xed\xa0\x80 \x1b[31m\x00 end"

    response = await live.client.post(f"/ping/{check.id}", content=body)

    assert response.status_code == 200
    ping = await the_ping(live, check)
    assert ping.body == body
    shown = ping_json(ping)["body"]
    assert "\x1b" not in shown and "\x00" not in shown
    assert shown.endswith(" end")


async def test_a_user_agent_is_cut_to_200_characters(live: Live) -> None:
    check = await add(live)
    agent = "curl/8.5.0 " + "x" * 300

    response = await live.client.get(f"/ping/{check.id}", headers={"User-Agent": agent})

    assert response.status_code == 200
    ping = await the_ping(live, check)
    assert ping.user_agent == agent[:200]


async def test_a_fail_ping_makes_a_new_check_down_at_once(live: Live) -> None:
    check = await add(live)

    response = await live.client.get(f"/ping/{check.id}/fail")

    assert response.status_code == 200
    assert response.text == "OK"
    ping = await the_ping(live, check)
    assert ping.kind == "fail"
    assert ping.exit_status is None
    stored = await reload(live, check)
    assert stored.status == DOWN
    assert deadline_of(stored) is None
    [flip] = await flips_of(live, check)
    assert (flip.old_status, flip.new_status, flip.reason) == (NEW, DOWN, FAILURE)
    assert flip.at == ping.received


async def test_exit_status_zero_is_a_success(live: Live) -> None:
    check = await add(live)

    response = await live.client.get(f"/ping/{check.id}/0")

    assert response.status_code == 200
    ping = await the_ping(live, check)
    assert ping.kind == "success"
    assert ping.exit_status == 0
    assert (await reload(live, check)).status == UP


async def test_a_nonzero_exit_status_is_a_failure(live: Live) -> None:
    for code in (1, 123, 255):
        check = await add(live, status=UP, last_ping=time.time() - 60)

        response = await live.client.get(f"/ping/{check.id}/{code}")

        assert response.status_code == 200
        ping = await the_ping(live, check)
        assert ping.kind == "fail"
        assert ping.exit_status == code
        assert (await reload(live, check)).status == DOWN
        [flip] = await flips_of(live, check)
        assert (flip.old_status, flip.new_status) == (UP, DOWN)
        assert (flip.reason, flip.exit_status) == (EXIT_STATUS, code)


async def test_it_rejects_exit_status_above_255(live: Live) -> None:
    check = await add(live)

    for code in ("256", "1000", "99999999999999999999"):
        response = await live.client.get(f"/ping/{check.id}/{code}")
        assert response.status_code == 400, code
        assert response.text == "invalid url format"

    await assert_nothing_recorded(live, check)


async def test_a_negative_exit_status_or_unknown_suffix_is_not_found(
    live: Live,
) -> None:
    check = await add(live)

    for suffix in ("-1", "+1", "1.0", "success", "FAIL", "start "):
        response = await live.client.get(f"/ping/{check.id}/{suffix}")
        assert response.status_code == 404, suffix
        assert response.text == "not found"

    await assert_nothing_recorded(live, check)


async def test_a_start_ping_opens_a_run_and_keeps_the_last_ping(live: Live) -> None:
    two_hours_ago = time.time() - 2 * HOUR
    check = await add(live, status=UP, last_ping=two_hours_ago)

    before = time.time()
    response = await live.client.get(f"/ping/{check.id}/start")
    after = time.time()

    assert response.status_code == 200
    ping = await the_ping(live, check)
    assert ping.kind == "start"
    stored = await reload(live, check)
    assert stored.last_start == ping.received
    assert before <= ping.received <= after
    assert stored.last_ping == two_hours_ago
    assert stored.status == UP
    assert stored.n_pings == 1
    assert await flips_of(live, check) == []


async def test_a_start_ping_on_a_paused_check_starts_a_run_and_stays_paused(
    live: Live,
) -> None:
    check = await add(live, status=PAUSED, last_ping=time.time() - DAY)

    response = await live.client.get(f"/ping/{check.id}/start")

    assert response.status_code == 200
    stored = await reload(live, check)
    assert stored.status == PAUSED
    assert stored.last_start is not None
    assert (await the_ping(live, check)).kind == "start"
    assert await flips_of(live, check) == []


async def test_a_run_id_is_stored_lowercased(live: Live) -> None:
    check = await add(live)
    rid = str(uuid.uuid4())
    mixed = rid[:18].upper() + rid[18:]

    response = await live.client.get(f"/ping/{check.id}/start?rid={mixed}")

    assert response.status_code == 200
    stored = await reload(live, check)
    assert stored.last_start_rid == rid
    assert (await the_ping(live, check)).rid == rid


async def test_it_rejects_a_run_id_that_is_not_a_uuid(live: Live) -> None:
    check = await add(live)
    bad_ids = ["12345", str(uuid.uuid4()) + "a", str(uuid.uuid4())[:-1]]

    for rid in bad_ids:
        for suffix in ("/start", "", "/fail"):
            response = await live.client.get(f"/ping/{check.id}{suffix}?rid={rid}")
            assert response.status_code == 400, (rid, suffix)
            assert response.text == "invalid uuid format"

    await assert_nothing_recorded(live, check)


async def started_check(live: Live, rid: str | None) -> Check:
    """An up check whose run began 10 s ago, with run id ``rid``."""
    now = time.time()
    return await add(
        live,
        status=UP,
        last_ping=now - HOUR,
        last_start=now - 10,
        last_start_rid=rid,
    )


async def test_a_success_after_a_start_without_run_ids_records_the_duration(
    live: Live,
) -> None:
    check = await started_check(live, None)

    response = await live.client.get(f"/ping/{check.id}")

    assert response.status_code == 200
    ping = await the_ping(live, check)
    assert ping.duration == pytest.approx(10, abs=1)
    stored = await reload(live, check)
    assert stored.last_start is None
    assert stored.last_duration == ping.duration


async def test_a_success_with_the_run_id_of_the_start_records_the_duration(
    live: Live,
) -> None:
    rid = str(uuid.uuid4())
    check = await started_check(live, rid)

    response = await live.client.get(f"/ping/{check.id}?rid={rid}")

    assert response.status_code == 200
    ping = await the_ping(live, check)
    assert ping.rid == rid
    assert ping.duration == pytest.approx(10, abs=1)
    stored = await reload(live, check)
    assert stored.last_start is None
    assert stored.last_start_rid is None
    assert stored.last_duration == ping.duration


async def test_a_success_with_another_run_id_leaves_the_run_open(
    live: Live,
) -> None:
    rid = str(uuid.uuid4())
    check = await started_check(live, rid)

    response = await live.client.get(f"/ping/{check.id}?rid={uuid.uuid4()}")

    assert response.status_code == 200
    ping = await the_ping(live, check)
    assert ping.duration is None
    stored = await reload(live, check)
    assert stored.last_ping == ping.received
    assert stored.last_start == check.last_start
    assert stored.last_start_rid == rid
    assert stored.last_duration is None


async def test_a_success_without_run_id_closes_a_run_that_has_one(
    live: Live,
) -> None:
    check = await started_check(live, str(uuid.uuid4()))

    response = await live.client.get(f"/ping/{check.id}")

    assert response.status_code == 200
    assert (await the_ping(live, check)).duration is None
    stored = await reload(live, check)
    assert stored.last_start is None
    assert stored.last_start_rid is None
    assert stored.last_duration is None


async def test_a_failure_with_another_run_id_closes_the_run_anyway(
    live: Live,
) -> None:
    check = await started_check(live, str(uuid.uuid4()))

    response = await live.client.get(f"/ping/{check.id}/fail?rid={uuid.uuid4()}")

    assert response.status_code == 200
    assert (await the_ping(live, check)).duration is None
    stored = await reload(live, check)
    assert stored.last_start is None
    assert stored.last_duration is None
    assert stored.status == DOWN


async def test_a_log_ping_keeps_its_body_and_changes_no_status(live: Live) -> None:
    check = await add(live)

    response = await live.client.post(f"/ping/{check.id}/log", content=b"step 3/7")

    assert response.status_code == 200
    ping = await the_ping(live, check)
    assert ping.kind == "log"
    assert ping.body == b"step 3/7"
    stored = await reload(live, check)
    assert stored.status == NEW
    assert stored.last_ping is None
    assert stored.n_pings == 1
    assert deadline_of(stored) is None
    assert await flips_of(live, check) == []


async def test_a_success_ping_resumes_a_paused_check(live: Live) -> None:
    check = await add(live, status=PAUSED, last_ping=time.time() - 2 * DAY)

    response = await live.client.get(f"/ping/{check.id}")

    assert response.status_code == 200
    stored = await reload(live, check)
    assert stored.status == UP
    [flip] = await flips_of(live, check)
    assert (flip.old_status, flip.new_status) == (PAUSED, UP)


async def test_a_ping_to_a_check_with_manual_resume_is_stored_as_ignored(
    live: Live,
) -> None:
    last_ping = time.time() - 2 * DAY
    check = await add(live, status=PAUSED, manual_resume=True, last_ping=last_ping)

    for suffix in ("", "/fail", "/start", "/0"):
        response = await live.client.get(f"/ping/{check.id}{suffix}")
        assert response.status_code == 200
        assert response.text == "OK"

    stored = await reload(live, check)
    assert stored.status == PAUSED
    assert stored.last_ping == last_ping
    assert stored.last_start is None
    assert stored.n_pings == 4
    assert deadline_of(stored) is None
    assert [p.kind for p in await pings_of(live, check)] == ["ign"] * 4
    assert await flips_of(live, check) == []


# Bodies, methods and addresses


@pytest.mark.parametrize("settings", [SMALL_BODIES], indirect=True, ids=["small"])
async def test_a_body_between_the_limit_and_the_cap_is_cut_to_the_limit(
    live: Live,
) -> None:
    check = await add(live)

    response = await live.client.post(f"/ping/{check.id}", content=b"0123456789" * 9)

    assert response.status_code == 200
    assert response.headers["ping-body-limit"] == "10"
    assert (await the_ping(live, check)).body == b"0123456789"


@pytest.mark.parametrize("settings", [SMALL_BODIES], indirect=True, ids=["small"])
async def test_a_body_at_the_cap_is_accepted(live: Live) -> None:
    check = await add(live)

    response = await live.client.post(f"/ping/{check.id}", content=b"x" * 100)

    assert response.status_code == 200
    assert (await the_ping(live, check)).body == b"x" * 10


@pytest.mark.parametrize("settings", [SMALL_BODIES], indirect=True, ids=["small"])
async def test_a_body_over_the_cap_is_refused_and_nothing_is_recorded(
    live: Live,
) -> None:
    check = await add(live)

    response = await live.client.post(f"/ping/{check.id}", content=b"x" * 101)

    assert response.status_code == 413
    await assert_nothing_recorded(live, check)


@pytest.mark.parametrize("settings", [SMALL_BODIES], indirect=True, ids=["small"])
async def test_a_chunked_body_over_the_cap_is_refused_and_nothing_is_recorded(
    live: Live,
) -> None:
    check = await add(live)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 50

    response = await live.client.post(f"/ping/{check.id}", content=chunks())

    assert response.status_code == 413
    await assert_nothing_recorded(live, check)


async def test_a_ping_url_refuses_other_methods_and_records_nothing(
    live: Live,
) -> None:
    check = await add(live)

    for method in ("PUT", "DELETE", "PATCH"):
        for suffix in ("", "/fail", "/start"):
            url = f"/ping/{check.id}{suffix}"
            response = await live.client.request(method, url, content=b"x")
            assert 400 <= response.status_code < 500, (method, suffix)

    await assert_nothing_recorded(live, check)


async def test_a_ping_ignores_x_forwarded_for_unless_a_proxy_is_trusted(
    live: Live,
) -> None:
    check = await add(live)

    response = await live.client.get(
        f"/ping/{check.id}", headers={"X-Forwarded-For": "203.0.113.9"}
    )

    assert response.status_code == 200
    assert (await the_ping(live, check)).remote_addr == "127.0.0.1"


@pytest.mark.parametrize(
    "settings", [{"trusted_proxy": True}], indirect=True, ids=["proxy"]
)
async def test_behind_a_trusted_proxy_the_address_comes_from_x_forwarded_for(
    live: Live,
) -> None:
    check = await add(live)

    response = await live.client.get(
        f"/ping/{check.id}", headers={"X-Forwarded-For": "203.0.113.9"}
    )

    assert response.status_code == 200
    assert (await the_ping(live, check)).remote_addr == "203.0.113.9"


@pytest.mark.parametrize(
    "settings", [{"trusted_proxy": True}], indirect=True, ids=["proxy"]
)
async def test_a_client_cannot_choose_its_address_through_an_appending_proxy(
    live: Live,
) -> None:
    # The client sent "X-Forwarded-For: 6.6.6.6"; the proxy appended the
    # address it saw, in the same header or in another one.
    check = await add(live)
    one = [("X-Forwarded-For", "6.6.6.6, 198.51.100.4")]
    two = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.5")]

    for headers in (one, two):
        response = await live.client.get(f"/ping/{check.id}", headers=headers)
        assert response.status_code == 200

    pings = await live.store.recent_pings(check.id, 2)
    assert sorted(p.remote_addr for p in pings) == ["198.51.100.4", "198.51.100.5"]


async def test_a_ping_the_store_cannot_take_gets_503_with_retry_after(
    live: Live,
) -> None:
    check = await add(live)
    await live.store.close()

    response = await live.client.get(f"/ping/{check.id}")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["access-control-allow-origin"] == "*"
    assert "try again" in response.text
