"""Who may do what, and how much, through a live server: security headers,
CORS, the per-check ping rate limit and the API rate limit's buckets."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from serverlord.accounts import KEY_ID_LENGTH, KEY_LENGTH
from serverlord.checks import Check
from serverlord.config import Settings
from serverlord.http.limits import RateLimiter
from serverlord.schedules import Schedule
from tests.conftest import Live
from tests.tenants import Tenant

CHECKS = "/api/v3/checks/"
SECURITY = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": "frame-ancestors 'none'",
}


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    overrides: dict[str, Any] = getattr(request, "param", {})
    return Settings(data_dir=tmp_path, shards=2, **overrides)


async def add_check(live: Live, project: str | None = None) -> Check:
    check = Check(
        id=str(uuid.uuid4()),
        name="job",
        created=time.time(),
        schedule=Schedule.simple(86400.0),
        grace=3600.0,
    )
    if project is not None:
        check.project = project
    await live.store.add_check(check)
    return check


async def n_pings(live: Live, check: Check) -> int:
    stored = await live.store.get_check(check.id)
    assert stored is not None
    return stored.n_pings


# Headers


async def test_every_answer_but_a_pings_carries_the_security_headers(
    live: Live, alice: Tenant
) -> None:
    check = await add_check(live, alice.project.id)
    answers = {
        "list": await live.client.get(CHECKS, headers=alice.rw),
        "no key": await live.client.get(CHECKS),
        "bad body": await live.client.post(CHECKS, content="{", headers=alice.rw),
        "unknown check": await live.client.get(
            f"{CHECKS}{uuid.uuid4()}", headers=alice.rw
        ),
        "unknown path": await live.client.get("/nothing/here"),
        "health": await live.client.get("/api/health"),
        "schema": await live.client.get("/api/v3/schema/openapi.json"),
        "status": await live.client.get("/api/v3/status/"),
        "preflight": await live.client.options(CHECKS),
        "wrong method": await live.client.put(CHECKS, headers=alice.rw),
    }
    ping = await live.client.get(f"/ping/{check.id}")

    for name, answer in answers.items():
        for header, value in SECURITY.items():
            assert answer.headers.get(header) == value, (name, header)
    for header in SECURITY:
        assert header not in ping.headers


async def test_api_answers_are_never_cached_and_never_open_to_other_origins(
    live: Live, alice: Tenant
) -> None:
    await add_check(live, alice.project.id)
    origin = {"Origin": "https://evil.example"}
    answers = [
        await live.client.get(CHECKS, headers={**alice.rw, **origin}),
        await live.client.get(CHECKS, headers=origin),
        await live.client.get(f"{CHECKS}{uuid.uuid4()}", headers=alice.rw),
        # Refused by the router or the body limit, and per-project metrics.
        await live.client.put(CHECKS, headers=alice.rw),
        await live.client.get("/api/v3/nothing", headers=alice.rw),
        await live.client.post(CHECKS, content=b"x" * 200_000, headers=alice.rw),
        await live.client.get(f"/projects/{alice.project.id}/metrics/{alice.read}"),
        await live.client.get(f"/projects/{alice.project.id}/metrics/{alice.write}"),
    ]
    preflight = await live.client.options(
        CHECKS,
        headers={
            **origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-Api-Key",
        },
    )

    for answer in answers:
        assert answer.headers["cache-control"] == "no-store"
        assert "access-control-allow-origin" not in answer.headers
    assert not any(h.startswith("access-control-") for h in preflight.headers)


async def test_ping_urls_are_open_to_every_origin(live: Live) -> None:
    check = await add_check(live)
    origin = {"Origin": "https://anywhere.example"}

    answers = [
        await live.client.get(f"/ping/{check.id}", headers=origin),
        await live.client.post(f"/ping/{check.id}/fail", headers=origin),
        await live.client.get(f"/ping/{uuid.uuid4()}", headers=origin),
    ]

    assert [a.status_code for a in answers] == [200, 200, 404]
    for answer in answers[:2]:
        assert answer.headers["access-control-allow-origin"] == "*"


# The ping rate limit


@pytest.mark.parametrize("settings", [{"ping_rate_limit": 1}], indirect=True)
async def test_a_runaway_loop_gets_429_unrecorded_while_other_checks_get_200(
    live: Live,
) -> None:
    runaway, quiet = await add_check(live), await add_check(live)

    loop = [
        await live.client.get(f"/ping/{runaway.id}") for _ in range(30)
    ]  # a burst of ten seconds' worth, then one a second
    others = [await live.client.get(f"/ping/{quiet.id}") for _ in range(5)]

    codes = [answer.status_code for answer in loop]
    assert codes[:10] == [200] * 10
    assert 429 in codes[10:]
    refused = [answer for answer in loop if answer.status_code == 429]
    assert {a.text for a in refused} == {"too many pings, slow down"}
    assert {a.headers["retry-after"] for a in refused} == {"1"}
    assert [answer.status_code for answer in others] == [200] * 5
    assert await n_pings(live, runaway) == codes.count(200)
    assert await n_pings(live, quiet) == 5


@pytest.mark.parametrize("settings", [{"ping_rate_limit": 0}], indirect=True)
async def test_a_ping_rate_limit_of_0_lets_every_ping_through(live: Live) -> None:
    check = await add_check(live)

    codes = await asyncio.gather(
        *(live.client.get(f"/ping/{check.id}") for _ in range(150))
    )

    assert {answer.status_code for answer in codes} == {200}
    assert await n_pings(live, check) == 150


def test_buckets_of_names_not_seen_for_a_refill_period_are_dropped() -> None:
    now = [0.0]
    limiter = RateLimiter(10, 100, clock=lambda: now[0])

    for n in range(10_000):
        limiter.take(f"random-{n}")
    filled = len(limiter.buckets)
    now[0] += limiter.refill + 1
    limiter.take("one more")

    assert filled == 10_000
    assert list(limiter.buckets) == ["one more"]


def test_a_bucket_refuses_past_its_burst_and_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 4, clock=lambda: now[0])

    taken = [limiter.take("a") for _ in range(5)]
    now[0] += 0.5
    after_one_refill = limiter.take("a")

    assert taken[:4] == [0.0] * 4
    assert taken[4] == pytest.approx(0.5)
    assert after_one_refill == 0.0
    assert limiter.take("b") == 0.0


# The API rate limit


def from_address(address: str, headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "X-Forwarded-For": address}


@pytest.mark.parametrize(
    "settings", [{"api_rate_limit": 5, "trusted_proxy": True}], indirect=True
)
async def test_guessed_keys_never_use_up_the_real_keys_requests(
    live: Live, alice: Tenant
) -> None:
    prefix = alice.write[:KEY_ID_LENGTH]
    guesses = [
        prefix + secrets.token_hex(KEY_LENGTH)[: KEY_LENGTH - KEY_ID_LENGTH]
        for _ in range(20)
    ]

    attacker = [
        await live.client.get(
            CHECKS, headers=from_address("203.0.113.9", {"X-Api-Key": guess})
        )
        for guess in guesses
    ]
    owner = [
        await live.client.get(CHECKS, headers=from_address("198.51.100.7", alice.rw))
        for _ in range(5)
    ]

    codes = [answer.status_code for answer in attacker]
    assert codes[:5] == [401] * 5
    assert set(codes[5:]) == {429}
    assert 1 <= int(attacker[-1].headers["retry-after"]) <= 60
    assert [answer.status_code for answer in owner] == [200] * 5


@pytest.mark.parametrize("settings", [{"api_rate_limit": 5}], indirect=True)
async def test_wrong_keys_from_an_address_never_lock_out_its_valid_keys(
    live: Live, alice: Tenant, bob: Tenant
) -> None:
    # Everyone behind one proxy shares its address.
    guesses = [
        await live.client.get(CHECKS, headers={"X-Api-Key": secrets.token_hex(16)})
        for _ in range(8)
    ]
    owners = [
        await live.client.get(CHECKS, headers=tenant.rw) for tenant in (alice, bob)
    ]
    missing = await live.client.get(CHECKS)

    assert [g.status_code for g in guesses] == [401] * 5 + [429] * 3
    assert [o.status_code for o in owners] == [200, 200]
    assert missing.status_code == 429


@pytest.mark.parametrize("settings", [{"api_rate_limit": 5}], indirect=True)
async def test_a_key_in_the_json_body_is_counted_against_that_key(
    live: Live, alice: Tenant, bob: Tenant
) -> None:
    async def create(tenant: Tenant, name: str) -> httpx.Response:
        body = {"api_key": tenant.write, "name": name, "unique": ["name"]}
        return await live.client.post(CHECKS, json=body)

    alices = [await create(alice, "nightly") for _ in range(6)]
    bobs = [await create(bob, "nightly") for _ in range(5)]

    assert [a.status_code for a in alices[:5]] == [201, 200, 200, 200, 200]
    assert alices[5].status_code == 429
    assert alices[5].json() == {"error": "rate limit exceeded"}
    assert {b.status_code for b in bobs} <= {200, 201}
