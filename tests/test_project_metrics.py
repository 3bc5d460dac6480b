"""Per-project check metrics: only a read-only key of the project opens them.

The key lookup is given to the routes, as the server gives its own; here it
knows three keys: a read-only and a read-write key of one project, and a
read-only key of another.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from serverlord.accounts import unique_key
from serverlord.checks import DOWN, PAUSED, UP, Check
from serverlord.config import Settings
from serverlord.schedules import Schedule
from serverlord.store import Store
from serverlord.telemetry import start
from serverlord.telemetry.http import project_metrics_routes
from serverlord.telemetry.projects import KeyGrant, render_checks
from tests.conftest import Live
from tests.observed import observed
from tests.tenants import make_tenant

PROJECT = str(uuid.uuid4())
OTHER = str(uuid.uuid4())
READ_ONLY = "r" * 32
READ_WRITE = "w" * 32
OTHERS_KEY = "o" * 32
KEYS = {
    READ_ONLY: KeyGrant(PROJECT, read_only=True),
    READ_WRITE: KeyGrant(PROJECT, read_only=False),
    OTHERS_KEY: KeyGrant(OTHER, read_only=True),
}
NOW = time.time()


def check(name: str, **fields: object) -> Check:
    return Check(
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
        name=name,
        schedule=Schedule.simple(3600),
        grace=60,
        created=NOW - 86400,
        **fields,  # type: ignore[arg-type]
    )


def checks_at(now: float) -> list[Check]:
    """Checks in each state at ``now``: every hour, a minute of grace."""
    return [
        check("backup", status=UP, last_ping=now - 10, tags="db nightly",
              last_duration=42.5),
        check("late", status=UP, last_ping=now - 3630, tags="db"),
        check("broken", status=DOWN, last_ping=now - 7200, tags="nightly"),
        check("running", status=UP, last_ping=now - 10, last_start=now - 5),
        check('odd "name"', status=PAUSED),
    ]  # fmt: skip


CHECKS = checks_at(NOW)


async def lookup(key: str) -> KeyGrant | None:
    return KEYS.get(key)


async def project_checks(project: str) -> Sequence[Check]:
    return checks_at(time.time()) if project == PROJECT else []


@pytest.fixture
async def client() -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = Litestar(route_handlers=project_metrics_routes(lookup, project_checks))
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def test_the_projects_read_only_key_opens_its_check_metrics(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get(f"/projects/{PROJECT}/metrics/{READ_ONLY}")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {
        family.name: family.samples
        for family in text_string_to_metric_families(response.text)
    }
    assert families["hc_checks_total"][0].value == 5
    assert families["hc_checks_down_total"][0].value == 1


async def test_a_bearer_header_works_like_the_key_in_the_url(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get(
        f"/projects/{PROJECT}/metrics", headers={"Authorization": f"Bearer {READ_ONLY}"}
    )

    assert response.status_code == 200
    assert "hc_check_up" in response.text


async def test_a_read_write_key_is_refused(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get(f"/projects/{PROJECT}/metrics/{READ_WRITE}")

    assert response.status_code == 403
    assert "hc_check" not in response.text


async def test_another_projects_key_is_refused(
    client: AsyncTestClient[Litestar],
) -> None:
    by_url = await client.get(f"/projects/{PROJECT}/metrics/{OTHERS_KEY}")
    by_header = await client.get(
        f"/projects/{PROJECT}/metrics",
        headers={"Authorization": f"Bearer {OTHERS_KEY}"},
    )

    assert by_url.status_code == 403 and by_header.status_code == 403


async def test_unknown_short_and_missing_keys_are_refused(
    client: AsyncTestClient[Litestar],
) -> None:
    unknown = await client.get(f"/projects/{PROJECT}/metrics/{'x' * 32}")
    short = await client.get(f"/projects/{PROJECT}/metrics/{READ_ONLY[:31]}")
    missing = await client.get(f"/projects/{PROJECT}/metrics")
    not_a_project = await client.get(f"/projects/nope/metrics/{READ_ONLY}")

    assert unknown.status_code == 403
    assert short.status_code == 400
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert not_a_project.status_code == 404


def test_each_check_has_its_status_gauges_and_last_run_duration() -> None:
    text = render_checks(CHECKS, NOW)

    samples = {
        (sample.name, sample.labels.get("name", sample.labels.get("tag", ""))): (
            sample.value
        )
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    expected = {
        "backup": (1, 0, 0, 0, 0),
        "late": (1, 0, 0, 1, 0),
        "broken": (0, 1, 0, 0, 0),
        "running": (1, 0, 1, 0, 0),
        'odd "name"': (1, 0, 0, 0, 1),
    }
    for name, values in expected.items():
        got = tuple(
            samples[(f"hc_check_{gauge}", name)]
            for gauge in ("up", "down", "started", "grace", "paused")
        )
        assert got == values, name
    assert samples[("hc_check_last_duration_seconds", "backup")] == 42.5
    assert ("hc_check_last_duration_seconds", "late") not in samples
    assert samples[("hc_tag_up", "db")] == 1
    assert samples[("hc_tag_up", "nightly")] == 0


def test_checks_are_named_by_unique_key_never_by_their_ping_uuid() -> None:
    text = render_checks(CHECKS, NOW)

    for each in CHECKS:
        assert each.id not in text
        assert f'unique_key="{unique_key(each.id)}"' in text
    assert len(unique_key(CHECKS[0].id)) == 40


# Through a live server, with keys made in its store.


@pytest.fixture
async def live(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Live]:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    settings = Settings(data_dir=tmp_path, shards=2)
    async with observed(settings, store, start(settings)) as server:
        yield server


async def test_a_live_server_opens_a_projects_metrics_to_its_read_only_key_only(
    live: Live,
) -> None:
    alice = await make_tenant(live.store, "alice@example.com")
    bob = await make_tenant(live.store, "bob@example.com")
    mine = check("alice's backup", status=UP, last_ping=time.time())
    mine.id, mine.project = str(uuid.uuid4()), alice.project.id
    theirs = check("bob's backup", status=DOWN)
    theirs.id, theirs.project = str(uuid.uuid4()), bob.project.id
    await live.store.add_check(mine)
    await live.store.add_check(theirs)
    url = f"/projects/{alice.project.id}/metrics"

    opened = await live.client.get(f"{url}/{alice.read}")
    by_header = await live.client.get(
        url, headers={"Authorization": f"Bearer {alice.read}"}
    )
    read_write = await live.client.get(f"{url}/{alice.write}")
    bobs_key = await live.client.get(f"{url}/{bob.read}")

    assert opened.status_code == 200 and by_header.status_code == 200
    assert "alice's backup" in opened.text and "bob's backup" not in opened.text
    assert f'unique_key="{unique_key(mine.id)}"' in opened.text
    assert mine.id not in opened.text
    assert read_write.status_code == 403
    assert bobs_key.status_code == 403
