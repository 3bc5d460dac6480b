"""The management API through a live server: Healthchecks' /api/v3/ behaviour
(cases M1-M8), keys, projects, limits and serverlord's additions."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from serverlord.accounts import unique_key
from serverlord.channels import Channel
from serverlord.config import Settings
from serverlord.pings import Ping
from tests.conftest import Live, on_both_backends
from tests.tenants import Tenant, unreachable_channel

CHECKS = "/api/v3/checks/"


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    overrides: dict[str, Any] = getattr(request, "param", {})
    return Settings(data_dir=tmp_path, shards=2, **overrides)


async def create(live: Live, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    resp = await live.client.post(CHECKS, json=fields, headers=tenant.rw)
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()
    return data


async def listed(live: Live, tenant: Tenant) -> list[dict[str, Any]]:
    resp = await live.client.get(CHECKS, headers=tenant.rw)
    assert resp.status_code == 200
    checks: list[dict[str, Any]] = resp.json()["checks"]
    return checks


# Keys


async def test_a_request_without_a_key_is_401_missing_api_key(live: Live) -> None:
    resp = await live.client.get(CHECKS)

    assert resp.status_code == 401
    assert resp.json() == {"error": "missing api key"}


async def test_a_key_of_the_wrong_length_is_401_missing_api_key(live: Live) -> None:
    resp = await live.client.get(CHECKS, headers={"X-Api-Key": "short"})

    assert resp.status_code == 401
    assert resp.json() == {"error": "missing api key"}


async def test_an_unknown_key_is_401_wrong_api_key(live: Live, alice: Tenant) -> None:
    forged = alice.write[:8] + "x" * 24

    for key in ("y" * 32, forged):
        resp = await live.client.get(CHECKS, headers={"X-Api-Key": key})
        assert resp.status_code == 401
        assert resp.json() == {"error": "wrong api key"}


async def test_a_revoked_key_is_401_wrong_api_key(live: Live, alice: Tenant) -> None:
    assert await live.store.revoke_api_key(alice.write[:8], time.time())

    resp = await live.client.get(CHECKS, headers=alice.rw)

    assert resp.status_code == 401
    assert resp.json() == {"error": "wrong api key"}


async def test_a_post_may_carry_its_key_in_the_json_body(
    live: Live, alice: Tenant
) -> None:
    resp = await live.client.post(CHECKS, json={"api_key": alice.write, "name": "b"})

    assert resp.status_code == 201
    assert resp.json()["name"] == "b"


# Create (M1-M4)


async def test_creating_from_an_empty_object_gives_the_defaults(
    live: Live, alice: Tenant
) -> None:
    check = await create(live, alice)

    assert check["timeout"] == 86400
    assert check["grace"] == 3600
    assert check["status"] == "new"
    assert check["started"] is False
    assert check["channels"] == ""
    assert check["ping_url"] == f"{live.base_url}/ping/{check['uuid']}"
    assert check["update_url"] == f"{live.base_url}/api/v3/checks/{check['uuid']}"
    assert check["pause_url"] == check["update_url"] + "/pause"
    assert check["resume_url"] == check["update_url"] + "/resume"
    assert "unique_key" not in check


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"timeout": 0}, "timeout is too small"),
        ({"grace": 31536001}, "grace is too large"),
        ({"timeout": "60"}, "timeout is not a number"),
        ({"name": None}, "name is not a string"),
        ({"name": "x" * 101}, "name is too long"),
        ({"slug": "Backups"}, "slug does not match pattern"),
        ({"name": "a\x1b[2Jb"}, "name does not match pattern"),
        ({"tags": "prod \x9b31m"}, "tags does not match pattern"),
        ({"manual_resume": "yes"}, "manual_resume is not a boolean"),
        ({"unique": "name"}, "unique is not an array"),
        ({"unique": ["color"]}, "an item in 'unique' has unexpected value"),
        ({"tz": "Mars/Olympus"}, "tz is not a valid timezone"),
        ({"methods": "PUT"}, "methods has unexpected value"),
        ({"failure_threshold": 0}, "failure_threshold is too small"),
        ({"reminder_every": 30}, "reminder_every is too small"),
        ({"schedule": "* * * * * *"}, _S := "schedule is not a valid cron or "
         "OnCalendar expression"),
        ({"schedule": "bad-expression"}, _S),
    ],
)  # fmt: skip
async def test_invalid_fields_are_400_json_validation_errors_and_create_nothing(
    live: Live, alice: Tenant, fields: dict[str, Any], error: str
) -> None:
    resp = await live.client.post(CHECKS, json=fields, headers=alice.rw)

    assert resp.status_code == 400
    assert resp.json() == {"error": f"json validation error: {error}"}
    assert await listed(live, alice) == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{nope", "could not parse request body"),
        (b"[1, 2]", "json validation error: value is not an object"),
        (b'{"timeout": 1e400}', "could not parse request body"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_400(
    live: Live, alice: Tenant, body: bytes, error: str
) -> None:
    resp = await live.client.post(CHECKS, content=body, headers=alice.rw)

    assert resp.status_code == 400
    assert resp.json() == {"error": error}


async def test_serverlord_accepts_periods_from_one_second(
    live: Live, alice: Tenant
) -> None:
    check = await create(live, alice, timeout=1, grace=1.5)

    assert check["timeout"] == 1
    assert check["grace"] == 1.5


async def test_a_schedule_wins_over_a_timeout(live: Live, alice: Tenant) -> None:
    check = await create(
        live, alice, schedule="30 2 * * *", tz="Europe/Riga", timeout=60
    )

    assert check["schedule"] == "30 2 * * *"
    assert check["tz"] == "Europe/Riga"
    assert "timeout" not in check


async def test_an_oncalendar_schedule_is_recognised(live: Live, alice: Tenant) -> None:
    check = await create(live, alice, schedule="Sun *-*-* 04:00")

    assert check["schedule"] == "Sun *-*-* 04:00"


async def test_unique_finds_the_check_to_update_with_200(
    live: Live, alice: Tenant
) -> None:
    first = await create(live, alice, name="Backups", timeout=3600)

    resp = await live.client.post(
        CHECKS,
        json={"name": "Backups", "timeout": 60, "unique": ["name"]},
        headers=alice.rw,
    )

    assert resp.status_code == 200
    assert resp.json()["uuid"] == first["uuid"]
    assert resp.json()["timeout"] == 60
    assert len(await listed(live, alice)) == 1


async def test_unique_creates_when_nothing_matches_or_a_field_is_missing(
    live: Live, alice: Tenant
) -> None:
    await create(live, alice, name="Backups")

    other = await live.client.post(
        CHECKS, json={"name": "Other", "unique": ["name"]}, headers=alice.rw
    )
    missing = await live.client.post(
        CHECKS, json={"tags": "x", "unique": ["name"]}, headers=alice.rw
    )

    assert other.status_code == 201
    assert missing.status_code == 201
    assert len(await listed(live, alice)) == 3


async def test_requests_racing_with_one_unique_make_one_check(
    live: Live, alice: Tenant
) -> None:
    body = {"name": "Backups", "unique": ["name"]}

    answers = await asyncio.gather(
        *(live.client.post(CHECKS, json=body, headers=alice.rw) for _ in range(12))
    )

    assert sorted(resp.status_code for resp in answers) == [200] * 11 + [201]
    assert len({resp.json()["uuid"] for resp in answers}) == 1
    assert len(await listed(live, alice)) == 1


async def test_unique_looks_only_in_the_keys_project(
    live: Live, alice: Tenant, bob: Tenant
) -> None:
    await create(live, bob, name="Backups")

    resp = await live.client.post(
        CHECKS, json={"name": "Backups", "unique": ["name"]}, headers=alice.rw
    )

    assert resp.status_code == 201
    assert len(await listed(live, bob)) == 1


async def test_channels_are_linked_by_id_name_or_star(
    live: Live, alice: Tenant, bob: Tenant
) -> None:
    ops = await add_channel(live, alice, "ops")
    dev = await add_channel(live, alice, "dev")
    await add_channel(live, bob, "bobs")

    by_star = await create(live, alice, channels="*")
    by_name = await create(live, alice, channels="dev")
    by_id = await create(live, alice, channels=ops.id)

    assert by_star["channels"] == ",".join(sorted([ops.id, dev.id]))
    assert by_name["channels"] == dev.id
    assert by_id["channels"] == ops.id


@pytest.mark.parametrize(
    ("channels", "error"),
    [
        ("nope", "invalid channel identifier: nope"),
        ("ops,", "empty channel identifier"),
        ("twin", "non-unique channel identifier: twin"),
        ("bobs", "invalid channel identifier: bobs"),
    ],
)
async def test_unknown_or_foreign_channels_are_400_and_create_nothing(
    live: Live, alice: Tenant, bob: Tenant, channels: str, error: str
) -> None:
    await add_channel(live, alice, "ops")
    await add_channel(live, alice, "twin")
    await add_channel(live, alice, "twin")
    await add_channel(live, bob, "bobs")

    resp = await live.client.post(CHECKS, json={"channels": channels}, headers=alice.rw)

    assert resp.status_code == 400
    assert resp.json() == {"error": error}
    assert await listed(live, alice) == []


async def add_channel(live: Live, tenant: Tenant, name: str) -> Channel:
    channel = unreachable_channel(name, tenant.project.id)
    await live.store.add_channel(channel)
    return channel


async def test_a_checks_delivery_attempts_are_listed_newest_first(
    live: Live, alice: Tenant, bob: Tenant
) -> None:
    channel = await add_channel(live, alice, "ops")
    check = await create(live, alice, name="a", channels="*")
    path = f"{check['update_url']}/notifications/"
    empty = await live.client.get(path, headers=alice.rw)

    await live.client.get(f"/ping/{check['uuid']}/fail")
    began = time.monotonic()
    while True:
        resp = await live.client.get(path, headers=alice.rw)
        attempts = resp.json()["notifications"]
        if attempts or time.monotonic() - began > 15:
            break
        await asyncio.sleep(0.1)
    theirs = await live.client.get(path, headers=bob.rw)

    assert empty.status_code == 200 and empty.json() == {"notifications": []}
    assert attempts, "no delivery attempt listed"
    first = attempts[0]
    assert first["channel"] == channel.id and first["channel_name"] == "ops"
    assert first["kind"] == "down"
    # Port 9 of 127.0.0.1 takes no connection: the attempt failed and says why.
    assert first["ok"] is False and first["error"]
    assert first["at"].endswith("+00:00")
    assert theirs.status_code == 404


# Read, update, delete


async def test_list_filters_by_every_tag_given_and_by_slug(
    live: Live, alice: Tenant
) -> None:
    await create(live, alice, name="a", tags="prod db")
    await create(live, alice, name="b", tags="prod", slug="b-slug")
    await create(live, alice, name="c", tags="db")

    both = await live.client.get(
        CHECKS, params=[("tag", "prod"), ("tag", "db")], headers=alice.rw
    )
    prod = await live.client.get(CHECKS, params={"tag": "prod"}, headers=alice.rw)
    slug = await live.client.get(CHECKS, params={"slug": "b-slug"}, headers=alice.rw)

    assert [c["name"] for c in both.json()["checks"]] == ["a"]
    assert [c["name"] for c in prod.json()["checks"]] == ["a", "b"]
    assert [c["name"] for c in slug.json()["checks"]] == ["b"]


async def test_update_changes_only_the_fields_given(live: Live, alice: Tenant) -> None:
    check = await create(live, alice, name="a", tags="x", timeout=60)

    resp = await live.client.post(
        check["update_url"], json={"desc": "nightly", "grace": 120}, headers=alice.rw
    )

    assert resp.status_code == 200
    updated = resp.json()
    assert (updated["name"], updated["tags"], updated["timeout"]) == ("a", "x", 60)
    assert (updated["desc"], updated["grace"]) == ("nightly", 120)


async def test_an_invalid_update_is_400_and_changes_nothing(
    live: Live, alice: Tenant
) -> None:
    check = await create(live, alice, name="a", timeout=60)

    resp = await live.client.post(
        check["update_url"], json={"name": "b", "timeout": -5}, headers=alice.rw
    )
    got = await live.client.get(check["update_url"], headers=alice.rw)

    assert resp.status_code == 400
    assert got.json()["name"] == "a"
    assert got.json()["timeout"] == 60


async def test_update_of_a_cron_checks_tz_alone_keeps_its_schedule(
    live: Live, alice: Tenant
) -> None:
    check = await create(live, alice, schedule="0 3 * * *")

    resp = await live.client.post(
        check["update_url"], json={"tz": "America/New_York"}, headers=alice.rw
    )

    assert resp.json()["schedule"] == "0 3 * * *"
    assert resp.json()["tz"] == "America/New_York"


async def test_serverlords_fields_are_optional_additions(
    live: Live, alice: Tenant
) -> None:
    check = await create(
        live,
        alice,
        max_runtime=600,
        failure_threshold=3,
        recovery_threshold=2,
        reminder_every=3600,
    )
    cleared = await live.client.post(
        check["update_url"], json={"max_runtime": 0, "reminder_every": 0},
        headers=alice.rw,
    )  # fmt: skip

    assert check["max_runtime"] == 600
    assert check["failure_threshold"] == 3
    assert check["recovery_threshold"] == 2
    assert check["reminder_every"] == 3600
    assert cleared.json()["max_runtime"] is None
    assert cleared.json()["reminder_every"] is None


async def test_delete_answers_the_check_and_removes_it(
    live: Live, alice: Tenant
) -> None:
    check = await create(live, alice, name="gone")

    resp = await live.client.delete(check["update_url"], headers=alice.rw)
    again = await live.client.get(check["update_url"], headers=alice.rw)

    assert resp.status_code == 200
    assert resp.json()["name"] == "gone"
    assert again.status_code == 404
    assert await live.store.get_check(check["uuid"]) is None


@pytest.mark.parametrize("code", [str(uuid.uuid4()), "not-a-uuid", "A" * 40])
async def test_an_unknown_check_is_404(live: Live, alice: Tenant, code: str) -> None:
    resp = await live.client.get(CHECKS + code, headers=alice.rw)

    assert resp.status_code == 404
    assert resp.json() == {"error": "not found"}


# Another project's check


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("POST", ""),
        ("DELETE", ""),
        ("POST", "/pause"),
        ("POST", "/resume"),
        ("GET", "/pings/"),
        ("GET", "/pings/1/body"),
        ("GET", "/flips/"),
    ],
)
async def test_another_projects_check_is_404_never_403(
    live: Live, alice: Tenant, bob: Tenant, method: str, suffix: str
) -> None:
    check = await create(live, bob, name="bobs")
    await live.client.post(f"/ping/{check['uuid']}", content=b"body")

    resp = await live.client.request(
        method, check["update_url"] + suffix, json={"name": "x"}, headers=alice.rw
    )

    assert resp.status_code == 404
    assert resp.json() == {"error": "not found"}
    stored = await live.store.get_check(check["uuid"])
    assert stored is not None
    assert (stored.name, stored.status) == ("bobs", "up")


async def test_a_list_shows_only_the_keys_project(
    live: Live, alice: Tenant, bob: Tenant
) -> None:
    await create(live, alice, name="mine")
    await create(live, bob, name="theirs")

    assert [c["name"] for c in await listed(live, alice)] == ["mine"]
    assert [c["name"] for c in await listed(live, bob)] == ["theirs"]


# Read-only keys (M5)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", CHECKS),
        ("POST", "{check}"),
        ("DELETE", "{check}"),
        ("POST", "{check}/pause"),
        ("POST", "{check}/resume"),
        ("GET", "{check}/pings/"),
        ("GET", "{check}/pings/1/body"),
        ("GET", "{check}/notifications/"),
        ("GET", "/api/v3/channels/"),
    ],
)
async def test_a_read_only_key_cannot_write_nor_read_pings_or_channels(
    live: Live, alice: Tenant, method: str, path: str
) -> None:
    check = await create(live, alice, name="a")
    await live.client.post(f"/ping/{check['uuid']}", content=b"body")

    resp = await live.client.request(
        method, path.format(check=check["update_url"]), json={}, headers=alice.ro
    )

    assert resp.status_code == 401
    assert resp.json() == {"error": "wrong api key"}
    assert len(await listed(live, alice)) == 1


async def test_a_read_only_key_sees_no_uuid_nor_urls_but_a_unique_key(
    live: Live, alice: Tenant
) -> None:
    check = await create(live, alice, name="a")

    resp = await live.client.get(CHECKS, headers=alice.ro)

    [shown] = resp.json()["checks"]
    hidden = {"uuid", "ping_url", "update_url", "pause_url", "resume_url", "channels"}
    assert not hidden & set(shown)
    assert shown["unique_key"] == unique_key(check["uuid"])
    assert check["uuid"] not in resp.text


async def test_a_read_only_key_gets_a_check_and_its_flips_by_unique_key(
    live: Live, alice: Tenant
) -> None:
    check = await create(live, alice, name="a")
    await live.client.get(f"/ping/{check['uuid']}")
    key = unique_key(check["uuid"])

    one = await live.client.get(CHECKS + key, headers=alice.ro)
    flips = await live.client.get(f"{CHECKS}{key}/flips/", headers=alice.ro)
    badges = await live.client.get("/api/v3/badges/", headers=alice.ro)

    assert one.status_code == 200
    assert one.json()["name"] == "a"
    assert [f["up"] for f in flips.json()["flips"]] == [1]
    assert badges.status_code == 200


# Pause and resume (M6, M7)


async def test_resuming_a_check_that_is_not_paused_is_409(
    live: Live, alice: Tenant
) -> None:
    check = await create(live, alice)

    resp = await live.client.post(check["resume_url"], headers=alice.rw)

    assert resp.status_code == 409
    assert resp.text == "check is not paused"


async def test_pausing_twice_is_200_with_one_flip_and_ends_an_open_run(
    live: Live, alice: Tenant
) -> None:
    check = await create(live, alice)
    await live.client.get(f"/ping/{check['uuid']}")
    await live.client.get(f"/ping/{check['uuid']}/start")

    first = await live.client.post(check["pause_url"], headers=alice.rw)
    second = await live.client.post(check["pause_url"], headers=alice.rw)
    flips = await live.client.get(check["update_url"] + "/flips/", headers=alice.rw)

    assert first.status_code == second.status_code == 200
    paused = second.json()
    assert (paused["status"], paused["started"]) == ("paused", False)
    stored = await live.store.get_check(check["uuid"])
    assert stored is not None and stored.last_start is None
    assert [f["new_status"] for f in flips.json()["flips"]] == ["paused", "up"]


async def test_resume_makes_a_paused_check_new(live: Live, alice: Tenant) -> None:
    check = await create(live, alice)
    await live.client.post(check["pause_url"], headers=alice.rw)

    resp = await live.client.post(check["resume_url"], headers=alice.rw)

    assert resp.status_code == 200
    assert resp.json()["status"] == "new"


# Pings and flips


async def test_pings_are_listed_newest_first_with_body_urls(
    live: Live, alice: Tenant
) -> None:
    check = await create(live, alice)
    rid = str(uuid.uuid4())
    await live.client.get(f"/ping/{check['uuid']}/start?rid={rid}")
    await live.client.post(f"/ping/{check['uuid']}/3?rid={rid}", content=b"oops")

    resp = await live.client.get(check["update_url"] + "/pings/", headers=alice.rw)

    fail, start = resp.json()["pings"]
    assert (fail["type"], fail["n"], fail["exitstatus"], fail["rid"]) == (
        "fail", 2, 3, rid,
    )  # fmt: skip
    assert fail["duration"] >= 0
    assert fail["body_url"] == check["update_url"] + "/pings/2/body"
    assert (start["type"], start["body_url"]) == ("start", None)
    assert "duration" not in start


async def test_a_ping_body_comes_back_byte_for_byte(live: Live, alice: Tenant) -> None:
    check = await create(live, alice)
    body = b"\xff\xfe not utf-8 \x00\x01"
    await live.client.post(f"/ping/{check['uuid']}", content=body)
    await live.client.get(f"/ping/{check['uuid']}")

    got = await live.client.get(check["update_url"] + "/pings/1/body", headers=alice.rw)
    empty = await live.client.get(
        check["update_url"] + "/pings/2/body", headers=alice.rw
    )
    missing = await live.client.get(
        check["update_url"] + "/pings/9/body", headers=alice.rw
    )
    garbage = await live.client.get(
        check["update_url"] + "/pings/x1/body", headers=alice.rw
    )

    assert got.status_code == 200
    assert got.content == body
    assert got.headers["content-type"].startswith("text/plain")
    assert empty.status_code == missing.status_code == garbage.status_code == 404


async def test_the_ping_list_stops_at_the_last_1000(live: Live, alice: Tenant) -> None:
    check = await create(live, alice)
    for _ in range(1005):
        await live.store.record_ping(
            Ping(check_id=check["uuid"], received=time.time(), kind="log")
        )

    resp = await live.client.get(check["update_url"] + "/pings/", headers=alice.rw)

    numbers = [ping["n"] for ping in resp.json()["pings"]]
    assert len(numbers) == 1000
    assert numbers[0] == 1005
    assert numbers[-1] == 6


@pytest.mark.parametrize(
    "query",
    [
        "start=-123",
        "seconds=-123",
        "end=-1",
        "seconds=31536001",
        "start=10000000001",
        "start=99999999999999999999",
        "seconds=abc",
        "end=1.5",
    ],
)
async def test_flips_with_a_bad_time_filter_are_400(
    live: Live, alice: Tenant, query: str
) -> None:
    check = await create(live, alice)

    resp = await live.client.get(
        f"{check['update_url']}/flips/?{query}", headers=alice.rw
    )

    assert resp.status_code == 400
    assert "must be a whole number" in resp.json()["error"]


async def test_flips_are_filtered_by_seconds_start_and_end(
    live: Live, alice: Tenant
) -> None:
    check = await create(live, alice)
    await live.client.get(f"/ping/{check['uuid']}")
    await live.client.get(f"/ping/{check['uuid']}/fail")
    now = int(time.time())
    url = check["update_url"] + "/flips/"

    every = await live.client.get(url, headers=alice.rw)
    recent = await live.client.get(url, params={"seconds": 60}, headers=alice.rw)
    future = await live.client.get(url, params={"start": now + 60}, headers=alice.rw)
    past = await live.client.get(url, params={"end": now - 60}, headers=alice.rw)

    assert [f["up"] for f in every.json()["flips"]] == [0, 1]
    assert every.json()["flips"][0]["timestamp"].endswith("+00:00")
    assert len(recent.json()["flips"]) == 2
    assert future.json()["flips"] == past.json()["flips"] == []


async def test_channels_lists_the_projects_channels(
    live: Live, alice: Tenant, bob: Tenant
) -> None:
    ops = await add_channel(live, alice, "ops")
    await add_channel(live, bob, "bobs")

    resp = await live.client.get("/api/v3/channels/", headers=alice.rw)

    assert resp.json() == {"channels": [{"id": ops.id, "name": "ops", "kind": "json"}]}


async def test_status_answers_ok_without_a_key(live: Live) -> None:
    resp = await live.client.get("/api/v3/status/")

    assert (resp.status_code, resp.text) == (200, "OK")


async def test_the_openapi_document_is_served(live: Live) -> None:
    resp = await live.client.get("/api/v3/schema/openapi.json")

    assert resp.status_code == 200
    paths = resp.json()["paths"]
    assert "/api/v3/checks/{code}/flips" in paths
    assert not any(path.startswith("/ping") for path in paths)


# Limits


async def test_a_body_over_the_api_limit_is_413_and_creates_nothing(
    live: Live, alice: Tenant
) -> None:
    resp = await live.client.post(
        CHECKS, json={"desc": "x" * 200_000}, headers=alice.rw
    )

    assert resp.status_code == 413
    assert await listed(live, alice) == []


@pytest.mark.parametrize("settings", [{"api_rate_limit": 5}], indirect=True)
async def test_the_api_is_rate_limited_per_key_with_retry_after_and_pings_are_not(
    live: Live, alice: Tenant, bob: Tenant
) -> None:
    check = await create(live, alice)  # 1 request
    for _ in range(4):
        assert (await live.client.get(CHECKS, headers=alice.rw)).status_code == 200

    limited = await live.client.get(CHECKS, headers=alice.rw)
    others = await live.client.get(CHECKS, headers=bob.rw)
    pings = [await live.client.get(f"/ping/{check['uuid']}") for _ in range(10)]

    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert others.status_code == 200
    assert {p.status_code for p in pings} == {200}


async def test_json_nested_too_deeply_is_a_parse_error_not_a_crash(
    live: Live, alice: Tenant
) -> None:
    body = "[" * 5000 + "]" * 5000
    created = await live.client.post("/api/v3/checks/", content=body, headers=alice.rw)
    blank = await live.client.post("/api/v3/checks/", content="\n", headers=alice.rw)

    assert (created.status_code, created.json()) == (
        400,
        {"error": "could not parse request body"},
    )
    assert blank.status_code == 400
    listed = await live.client.get("/api/v3/checks/", headers=alice.rw)
    assert listed.json()["checks"] == []


async def test_a_description_with_nul_is_refused_on_every_store(
    live: Live, alice: Tenant
) -> None:
    resp = await live.client.post(
        "/api/v3/checks/", json={"name": "a", "desc": "x\u0000y"}, headers=alice.rw
    )

    assert resp.status_code == 400
    assert resp.json()["error"].startswith("json validation error: desc")


async def test_a_paused_check_has_no_next_ping(live: Live, alice: Tenant) -> None:
    created = await live.client.post(
        "/api/v3/checks/", json={"name": "a"}, headers=alice.rw
    )
    check = created.json()
    await live.client.get(f"/ping/{check['uuid']}")
    paused = await live.client.post(check["pause_url"], headers=alice.rw)

    assert paused.json()["status"] == "paused"
    assert paused.json()["next_ping"] is None


# A channel removed by another process while a request links it: the request
# is refused and changes nothing.


@on_both_backends
async def test_a_create_whose_channel_is_removed_meanwhile_makes_no_check(
    live: Live, alice: Tenant, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    channel = unreachable_channel("ops", alice.project.id)
    await live.store.add_channel(channel)
    live.remove_once_listed(channel.id, monkeypatch)

    resp = await live.client.post(
        CHECKS, json={"name": "backup", "channels": channel.id}, headers=alice.rw
    )

    assert resp.status_code == 400
    assert resp.json() == {"error": f"invalid channel identifier: {channel.id}"}
    assert await listed(live, alice) == []


@on_both_backends
async def test_an_update_whose_channel_is_removed_meanwhile_changes_nothing(
    live: Live, alice: Tenant, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    check = await create(live, alice, name="backup", timeout=3600, channels="")
    channel = unreachable_channel("ops", alice.project.id)
    await live.store.add_channel(channel)
    live.remove_once_listed(channel.id, monkeypatch)

    resp = await live.client.post(
        f"{CHECKS}{check['uuid']}",
        json={"name": "renamed", "timeout": 60, "channels": channel.id},
        headers=alice.rw,
    )

    assert resp.status_code == 400
    after = await live.client.get(f"{CHECKS}{check['uuid']}", headers=alice.rw)
    assert after.json()["name"] == "backup"
    assert after.json()["timeout"] == 3600
    assert await live.store.check_channels(check["uuid"]) == []


@on_both_backends
async def test_every_channel_means_those_left_when_one_is_removed_meanwhile(
    live: Live, alice: Tenant, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    kept, removed = (unreachable_channel(n, alice.project.id) for n in ("a", "b"))
    await live.store.add_channel(kept)
    await live.store.add_channel(removed)
    live.remove_once_listed(removed.id, monkeypatch)

    resp = await live.client.post(
        CHECKS, json={"name": "backup", "channels": "*"}, headers=alice.rw
    )

    assert resp.status_code == 201, resp.text
    assert await live.store.check_channels(resp.json()["uuid"]) == [kept.id]
