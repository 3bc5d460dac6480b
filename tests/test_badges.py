"""Status badges: per tag and for all checks, as SVG, JSON and shields.io JSON,
at URLs that cannot be guessed."""

from __future__ import annotations

import time
from typing import Any

from serverlord.checks import DOWN, UP
from serverlord.http.api_edit import new_check
from serverlord.schedules import Schedule
from tests.conftest import Live
from tests.tenants import Tenant


async def add(live: Live, tenant: Tenant, tags: str, state: str) -> None:
    """A check up, late (in its grace time) or down, with these tags."""
    check = new_check(tenant.project.id)
    check.tags = tags
    check.schedule = Schedule.simple(3600)
    check.grace = 3600
    check.status = DOWN if state == "down" else UP
    check.last_ping = time.time() - (5400 if state == "late" else 60)
    await live.store.add_check(check)


async def urls(live: Live, tenant: Tenant) -> dict[str, dict[str, str]]:
    resp = await live.client.get("/api/v3/badges/", headers=tenant.ro)
    assert resp.status_code == 200
    badges: dict[str, dict[str, str]] = resp.json()["badges"]
    return badges


async def fetch(live: Live, url: str) -> Any:
    resp = await live.client.get(url.removeprefix(live.base_url))
    assert resp.status_code == 200, url
    return resp


async def test_the_badge_list_has_every_tag_and_all_in_six_forms(
    live: Live, alice: Tenant
) -> None:
    await add(live, alice, "db prod", "up")
    await add(live, alice, "web", "up")

    badges = await urls(live, alice)

    assert sorted(badges) == ["*", "db", "prod", "web"]
    assert set(badges["db"]) == {"svg", "svg3", "json", "json3", "shields", "shields3"}
    assert badges["db"]["svg"].endswith("-2/db.svg")
    assert badges["*"]["json3"].endswith(".json")
    assert alice.project.badge_key not in str(badges)


async def test_a_badge_is_down_if_any_check_of_its_tag_is_down(
    live: Live, alice: Tenant
) -> None:
    await add(live, alice, "db", "up")
    await add(live, alice, "db", "down")
    await add(live, alice, "web", "up")
    badges = await urls(live, alice)

    db = (await fetch(live, badges["db"]["json3"])).json()
    web = (await fetch(live, badges["web"]["json3"])).json()
    every = (await fetch(live, badges["*"]["json"])).json()

    assert db == {"status": "down", "total": 2, "grace": 0, "down": 1}
    assert web == {"status": "up", "total": 1, "grace": 0, "down": 0}
    assert every == {"status": "down", "total": 3, "grace": 0, "down": 1}


async def test_a_late_check_is_late_in_three_states_and_up_in_two(
    live: Live, alice: Tenant
) -> None:
    await add(live, alice, "db", "late")
    badges = await urls(live, alice)

    three = (await fetch(live, badges["db"]["shields3"])).json()
    two = (await fetch(live, badges["db"]["shields"])).json()

    assert three == {
        "schemaVersion": 1,
        "label": "db",
        "message": "late",
        "color": "important",
    }
    assert (two["message"], two["color"]) == ("up", "success")


async def test_an_svg_badge_names_its_tag_and_state(live: Live, alice: Tenant) -> None:
    await add(live, alice, "db", "down")
    badges = await urls(live, alice)

    resp = await fetch(live, badges["db"]["svg3"])

    assert resp.headers["content-type"].startswith("image/svg+xml")
    assert resp.text.startswith("<svg")
    assert ">db<" in resp.text and ">down<" in resp.text


async def test_a_tag_with_odd_characters_has_a_working_badge(
    live: Live, alice: Tenant
) -> None:
    await add(live, alice, "a/b<c>%", "up")
    badges = await urls(live, alice)

    resp = await fetch(live, badges["a/b<c>%"]["svg"])

    assert "a/b&lt;c&gt;%" in resp.text


async def test_a_badge_url_with_a_wrong_signature_is_404(
    live: Live, alice: Tenant
) -> None:
    await add(live, alice, "db web", "up")
    badges = await urls(live, alice)
    db, web = badges["db"]["svg"], badges["web"]["svg"]
    project = alice.project.id

    forged = [
        db.replace("/db.svg", "/web.svg"),
        web.replace(web.split("/")[-2], "0" * 12 + "-2"),
        db.replace(project, "00000000-0000-0000-0000-000000000000"),
        db.replace(".svg", ".png"),
        f"/badge/{project}/nothing.svg",
    ]
    for url in forged:
        resp = await live.client.get(url.removeprefix(live.base_url))
        assert resp.status_code == 404, url
