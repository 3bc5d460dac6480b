"""Pings by project ping key and slug (cases S1-S6), through a live server."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from serverlord.channels import Channel
from serverlord.checks import DOWN, NEW, UP
from serverlord.http.api_edit import new_check
from tests.conftest import Live
from tests.tenants import Tenant, unreachable_channel


async def add(live: Live, tenant: Tenant, slug: str, name: str = "") -> str:
    check = new_check(tenant.project.id)
    check.slug, check.name = slug, name or slug
    await live.store.add_check(check)
    return check.id


def url(tenant: Tenant, slug: str, suffix: str = "") -> str:
    return f"/ping/{tenant.project.ping_key}/{slug}{suffix}"


async def test_a_slug_ping_acts_like_a_uuid_ping(live: Live, alice: Tenant) -> None:
    check_id = await add(live, alice, "db-backup")

    ok = await live.client.get(url(alice, "db-backup"))
    stored = await live.store.get_check(check_id)

    assert (ok.status_code, ok.text) == (200, "OK")
    assert ok.headers["ping-body-limit"] == "100000"
    assert stored is not None and stored.status == UP


@pytest.mark.parametrize(
    ("suffix", "kind", "status"),
    [
        ("/start", "start", NEW),
        ("/fail", "fail", DOWN),
        ("/log", "log", NEW),
        ("/0", "success", UP),
        ("/7", "fail", DOWN),
    ],
)
async def test_every_suffix_works_on_a_slug_url(
    live: Live, alice: Tenant, suffix: str, kind: str, status: str
) -> None:
    check_id = await add(live, alice, "db-backup")

    resp = await live.client.post(url(alice, "db-backup", suffix), content=b"hi")

    assert resp.status_code == 200
    [ping] = await live.store.recent_pings(check_id, 10)
    assert (ping.kind, ping.body) == (kind, b"hi")
    stored = await live.store.get_check(check_id)
    assert stored is not None and stored.status == status


async def test_a_slug_with_a_bad_exit_status_or_run_id_is_400(
    live: Live, alice: Tenant
) -> None:
    check_id = await add(live, alice, "db-backup")

    status = await live.client.get(url(alice, "db-backup", "/256"))
    rid = await live.client.get(url(alice, "db-backup", "/start?rid=12345"))

    assert (status.status_code, status.text) == (400, "invalid url format")
    assert (rid.status_code, rid.text) == (400, "invalid uuid format")
    assert await live.store.recent_pings(check_id, 10) == []


async def test_two_checks_sharing_a_slug_are_409_ambiguous(
    live: Live, alice: Tenant
) -> None:
    first = await add(live, alice, "twin")
    second = await add(live, alice, "twin")

    resp = await live.client.get(url(alice, "twin"))

    assert (resp.status_code, resp.text) == (409, "ambiguous slug")
    assert await live.store.recent_pings(first, 10) == []
    assert await live.store.recent_pings(second, 10) == []


async def test_a_wrong_ping_key_is_404(live: Live, alice: Tenant) -> None:
    await add(live, alice, "db-backup")

    resp = await live.client.get("/ping/not-the-key-at-all/db-backup?create=1")

    assert (resp.status_code, resp.text) == (404, "not found")
    assert len(await live.store.project_checks(alice.project.id)) == 1


@pytest.mark.parametrize("slug", ["DB-Backup", "db.backup", "x" * 101, "db%20backup"])
async def test_an_invalid_slug_is_400_and_creates_nothing(
    live: Live, alice: Tenant, slug: str
) -> None:
    resp = await live.client.get(url(alice, slug) + "?create=1")

    assert (resp.status_code, resp.text) == (400, "invalid url format")
    assert await live.store.project_checks(alice.project.id) == []


async def test_an_unknown_slug_is_404_without_create(live: Live, alice: Tenant) -> None:
    resp = await live.client.get(url(alice, "new-job"))

    assert (resp.status_code, resp.text) == (404, "not found")
    assert await live.store.project_checks(alice.project.id) == []


async def test_create_makes_the_check_with_this_ping_and_the_projects_channels(
    live: Live, alice: Tenant
) -> None:
    channel = Channel(
        id=str(uuid.uuid4()),
        name="ops",
        url="json://127.0.0.1:9/",
        kind="json",
        masked_url="json://127.0.0.1:9/",
        created=time.time(),
        project=alice.project.id,
    )
    await live.store.add_channel(channel)

    first = await live.client.get(url(alice, "new-job") + "?create=1")
    again = await live.client.get(url(alice, "new-job") + "?create=1")

    assert (first.status_code, first.text) == (201, "Created")
    assert (again.status_code, again.text) == (200, "OK")
    [check] = await live.store.project_checks(alice.project.id)
    assert (check.name, check.slug, check.n_pings) == ("new-job", "new-job", 2)
    assert await live.store.check_channels(check.id) == [channel.id]


async def test_pings_racing_to_create_one_slug_make_one_check(
    live: Live, alice: Tenant
) -> None:
    answers = await asyncio.gather(
        *(live.client.get(url(alice, "racer") + "?create=1") for _ in range(8))
    )

    assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
    [check] = await live.store.project_checks(alice.project.id)
    assert check.n_pings == 8


async def test_a_uuid_ping_still_needs_a_uuid(live: Live, alice: Tenant) -> None:
    resp = await live.client.get(f"/ping/{alice.project.ping_key}")

    assert resp.status_code == 404


async def test_a_flood_of_new_slugs_creates_its_share_then_gets_429(
    live: Live, alice: Tenant
) -> None:
    from serverlord.http.ping import NEW_CHECKS_BURST, NEW_CHECKS_PER_SECOND

    began = time.monotonic()
    answers = []
    for first in range(0, NEW_CHECKS_BURST + 100, 100):
        answers += await asyncio.gather(
            *(
                live.client.get(url(alice, f"job-{n}") + "?create=1")
                for n in range(first, first + 100)
            )
        )
    took = time.monotonic() - began
    existing = await live.client.get(url(alice, "job-0") + "?create=1")

    created = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code == 429]
    assert len(created) + len(refused) == len(answers)
    # The burst, and one more a second while the flood lasted.
    assert (
        NEW_CHECKS_BURST
        <= len(created)
        <= NEW_CHECKS_BURST + took * NEW_CHECKS_PER_SECOND + 1
    )
    assert refused, "nothing was refused"
    assert refused[0].text == "too many new checks, slow down"
    assert refused[0].headers["retry-after"] == "1"
    checks = await live.store.project_checks(alice.project.id)
    assert len(checks) == len(created)
    # Pings to checks that exist are not held back.
    assert existing.status_code == 200


async def test_create_links_the_channels_left_when_one_is_removed_meanwhile(
    live: Live, alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept, removed = (
        unreachable_channel(name, alice.project.id) for name in ("ops", "dev")
    )
    await live.store.add_channel(kept)
    await live.store.add_channel(removed)
    live.remove_once_listed(removed.id, monkeypatch)
    resp = await live.client.get(url(alice, "new-job") + "?create=1")

    assert (resp.status_code, resp.text) == (201, "Created")
    [check] = await live.store.project_checks(alice.project.id)
    assert await live.store.check_channels(check.id) == [kept.id]
    assert check.n_pings == 1
