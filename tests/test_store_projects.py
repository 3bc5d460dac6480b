"""Users, projects, keys and project-scoped reads: the same contract on SQLite
and on a real PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from serverlord.accounts import (
    DEFAULT_PROJECT,
    key_matches,
    new_api_key,
    new_project,
    new_user,
)
from serverlord.channels import Channel
from serverlord.config import Settings
from serverlord.http.api_edit import new_check
from serverlord.pings import Ping
from serverlord.store import ConflictError, open_store
from serverlord.store.postgres import PostgresStore

pytest_plugins = ("tests.postgres",)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Any, postgres_url: str
) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        opened: Any = open_store(Settings(data_dir=tmp_path))
    else:
        opened = PostgresStore(postgres_url)
    await opened.open()
    yield opened
    await opened.close()


async def a_user(store: Any, email: str = "alice@example.com") -> Any:
    now = time.time()
    user = new_user(email, now)
    project = new_project(email, user.id, now)
    key, stored = new_api_key(project.id, False, now)
    await store.add_user(user, project, [stored])
    return user, project, key


async def test_a_user_comes_with_its_project_and_keys(store: Any) -> None:
    user, project, key = await a_user(store)

    assert await store.get_user("ALICE@example.com") == user
    assert await store.get_project(project.id) == project
    assert await store.project_by_ping_key(project.ping_key) == project
    stored = await store.get_api_key(key[:8])
    assert stored is not None and stored.project == project.id
    assert key_matches(key, stored)


async def test_a_second_user_of_one_email_writes_nothing(store: Any) -> None:
    await a_user(store)

    with pytest.raises(ConflictError):
        await a_user(store)

    assert [p.name for p, _ in await store.list_projects()] == [
        "default",
        "alice@example.com",
    ]


async def test_the_default_project_exists_with_a_ping_key(store: Any) -> None:
    default = await store.get_project(DEFAULT_PROJECT)

    assert default is not None and default.owner is None
    assert await store.project_by_ping_key(default.ping_key) == default


async def test_a_revoked_key_stays_revoked(store: Any) -> None:
    _, project, key = await a_user(store)

    assert await store.revoke_api_key(key[:8], time.time())
    assert not await store.revoke_api_key(key[:8], time.time())
    [stored] = await store.list_api_keys(project.id)
    assert stored.revoked is not None
    assert not key_matches(key, stored)


async def test_reads_by_project_see_only_that_projects_checks_and_channels(
    store: Any,
) -> None:
    _, mine, _ = await a_user(store, "alice@example.com")
    _, theirs, _ = await a_user(store, "bob@example.com")
    a, b = new_check(mine.id), new_check(theirs.id)
    a.slug = b.slug = "job"
    await store.add_check(a)
    await store.add_check(b)
    channel = Channel(
        id=str(uuid.uuid4()), name="ops", url="json://x", kind="json",
        masked_url="json://x", created=time.time(), project=mine.id,
    )  # fmt: skip
    await store.add_channel(channel)
    await store.set_check_channels(a.id, [channel.id])

    assert [c.id for c in await store.project_checks(mine.id)] == [a.id]
    assert [c.id for c in await store.checks_by_slug(mine.id, "job")] == [a.id]
    assert await store.checks_by_slug(mine.id, "other") == []
    assert [c.id for c in await store.project_channels(mine.id)] == [channel.id]
    assert await store.project_channels(theirs.id) == []
    assert await store.project_links(mine.id) == {a.id: [channel.id]}
    assert await store.project_links(theirs.id) == {}


async def test_the_ping_log_leaves_bodies_out_and_gives_their_sizes(
    store: Any,
) -> None:
    check = new_check(DEFAULT_PROJECT)
    await store.add_check(check)
    for body in (b"", b"\xff\x00 raw"):
        ping = Ping(check_id=check.id, received=time.time(), kind="success", body=body)
        await store.record_ping(ping)

    log = await store.ping_log(check.id, 10)

    assert [(ping.n, ping.body, size) for ping, size in log] == [
        (2, b"", 6),
        (1, b"", 0),
    ]
    assert await store.ping_body(check.id, 2) == b"\xff\x00 raw"
    assert await store.ping_body(check.id, 3) is None


async def test_flips_between_filters_by_time_newest_first(store: Any) -> None:
    check = new_check(DEFAULT_PROJECT)
    await store.add_check(check)
    start = time.time()
    for kind in ("success", "fail", "success"):
        await store.record_ping(
            Ping(check_id=check.id, received=time.time(), kind=kind)
        )

    every = await store.flips_between(check.id, 0, float("inf"))
    none = await store.flips_between(check.id, start + 3600, float("inf"))

    assert [f.new_status for f in every] == ["up", "down", "up"]
    assert none == []
