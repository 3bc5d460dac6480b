"""serverlord's own metrics at /metrics, read back with Prometheus' text parser.

Known traffic goes to a live server; the scrape must count exactly that. The
parser is prometheus_client's, not ours: what it reads is what Prometheus
reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from serverlord.config import Settings
from serverlord.store import Store
from serverlord.telemetry import NO_TELEMETRY, start
from serverlord.telemetry.meters import PING_MS
from tests.conftest import Live
from tests.observed import add_check, observed
from tests.tenants import make_tenant

DAY = 86400.0


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    overrides: dict[str, Any] = getattr(request, "param", {})
    return Settings(data_dir=tmp_path, shards=4, **overrides)


@pytest.fixture
async def live(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Live]:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    async with observed(settings, store, start(settings)) as server:
        yield server


async def scrape(live: Live, **headers: str) -> dict[str, list[Sample]]:
    """The samples of each metric family, by family name."""
    response = await live.client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        family.name: family.samples
        for family in text_string_to_metric_families(response.text)
    }


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, samples)
    return found[0]


async def test_the_ping_counter_and_histogram_count_exactly_the_pings_sent(
    live: Live,
) -> None:
    a, b = await add_check(live.store), await add_check(live.store)
    for _ in range(5):
        assert (await live.client.get(f"/ping/{a.id}")).status_code == 200
    for _ in range(2):
        assert (await live.client.post(f"/ping/{b.id}/start")).status_code == 200
    assert (await live.client.get(f"/ping/{b.id}/1")).status_code == 200
    for _ in range(3):
        assert (await live.client.get(f"/ping/{uuid.uuid4()}")).status_code == 404
    assert (await live.client.get(f"/ping/{a.id}/300")).status_code == 400

    families = await scrape(live)

    pings = families["serverlord_pings"]
    total = "serverlord_pings_total"
    assert value(pings, total, kind="success", result="ok") == 5
    assert value(pings, total, kind="start", result="ok") == 2
    assert value(pings, total, kind="fail", result="ok") == 1
    assert value(pings, total, kind="success", result="not_found") == 3
    assert value(pings, total, kind="fail", result="bad_request") == 1
    assert len(pings) == 5

    handling = families["serverlord_ping_duration_milliseconds"]
    for result, count in (("ok", 8), ("not_found", 3), ("bad_request", 1)):
        name = "serverlord_ping_duration_milliseconds"
        assert value(handling, f"{name}_count", result=result) == count
        buckets = [
            s
            for s in handling
            if s.name == f"{name}_bucket" and s.labels["result"] == result
        ]
        assert [s.labels["le"] for s in buckets] == [
            *(str(float(b)) for b in PING_MS),
            "+Inf",
        ]
        counts = [s.value for s in buckets]
        assert counts == sorted(counts) and counts[-1] == count
        assert value(handling, f"{name}_sum", result=result) > 0


async def test_a_scrape_shows_commits_flips_statuses_and_sweeper_heaps(
    live: Live,
) -> None:
    up, down = await add_check(live.store), await add_check(live.store)
    for _ in range(4):
        await live.client.get(f"/ping/{up.id}")
    await live.client.get(f"/ping/{down.id}/fail")

    families = await scrape(live)

    batches = families["serverlord_store_batch_size"]
    labels = {"store": "sqlite", "result": "ok"}
    # Heartbeats and reads of the change feed are committed too.
    assert value(batches, "serverlord_store_batch_size_sum", **labels) >= 5
    commits = families["serverlord_store_commit_duration_milliseconds"]
    name = "serverlord_store_commit_duration_milliseconds"
    assert value(commits, f"{name}_count", **labels) == value(
        batches, "serverlord_store_batch_size_count", **labels
    )

    flips = families["serverlord_flips"]
    assert value(flips, "serverlord_flips_total", status="up", reason="success") == 1
    assert value(flips, "serverlord_flips_total", status="down", reason="failure") == 1

    checks = families["serverlord_checks"]
    assert {s.labels["status"]: s.value for s in checks} == {
        "new": 0,
        "up": 1,
        "down": 1,
        "paused": 0,
    }

    heaps = families["serverlord_sweeper_heap_size"]
    assert sorted(s.labels["sweeper"] for s in heaps) == ["0", "1", "2", "3"]
    # The check that is up has a deadline; the one that is down has none,
    # once the sweepers have confirmed the two checks the change feed brought
    # (each waits in a heap until its confirmation has run).
    deadline = time.monotonic() + 10
    while sum(s.value for s in heaps) != 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        heaps = (await scrape(live))["serverlord_sweeper_heap_size"]
    assert sum(s.value for s in heaps) == 1

    info = families["target_info"]
    assert info[0].labels["service_name"] == "serverlord"


async def test_resource_attributes_prometheus_cannot_name_still_give_a_valid_scrape(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    odd = "1bad=y,k8s.pod.name=a,k8s_pod_name=b,__name__=evil,ünï=u"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", odd)

    async with observed(settings, store, start(settings)) as live:
        families = await scrape(live)

    [info] = families["target_info"]
    assert info.labels["key_1bad"] == "y"
    assert info.labels["k8s_pod_name"] == "a;b"
    assert info.labels["key___name__"] == "evil"
    assert info.labels["_n_"] == "u"
    assert "serverlord_checks" in families


async def test_detection_lag_counts_each_missed_deadline_in_milliseconds(
    live: Live,
) -> None:
    late = await add_check(live.store, period=1.0, grace=1.0)
    await live.client.get(f"/ping/{late.id}")

    await asyncio.sleep(2.5)
    families = await scrape(live)

    lag = families["serverlord_detection_lag_milliseconds"]
    name = "serverlord_detection_lag_milliseconds"
    assert value(lag, f"{name}_count", reason="missed") == 1
    assert 0 <= value(lag, f"{name}_sum", reason="missed") < 1000
    flips = families["serverlord_flips"]
    assert value(flips, "serverlord_flips_total", status="down", reason="missed") == 1


@pytest.mark.parametrize("settings", [{"metrics_token": "s3cret"}], indirect=True)
async def test_with_a_token_set_metrics_need_it_as_a_bearer_token(live: Live) -> None:
    missing = await live.client.get("/metrics")
    wrong = await live.client.get("/metrics", headers={"Authorization": "Bearer nope"})

    assert missing.status_code == 401 and wrong.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="serverlord metrics"'
    assert missing.text == "a bearer token is needed"
    assert wrong.headers["www-authenticate"].endswith(', error="invalid_token"')
    assert wrong.text == "wrong bearer token"
    assert "serverlord" not in missing.text
    families = await scrape(live, Authorization="Bearer s3cret")
    assert "serverlord_checks" in families


@pytest.mark.parametrize("settings", [{"metrics": False}], indirect=True)
async def test_with_metrics_off_there_is_no_metrics_route_and_no_meter(
    live: Live, settings: Settings
) -> None:
    check = await add_check(live.store)

    assert (await live.client.get(f"/ping/{check.id}")).status_code == 200
    assert (await live.client.get("/metrics")).status_code == 404
    assert start(settings) is NO_TELEMETRY


async def test_pings_log_nothing_at_info(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    check = await add_check(live.store)
    await live.client.get(f"/ping/{check.id}")
    caplog.clear()

    with caplog.at_level(logging.INFO):
        for _ in range(50):
            await live.client.get(f"/ping/{check.id}")
        await live.client.get(f"/ping/{uuid.uuid4()}")

    server_side = [
        record
        for record in caplog.records
        if record.name.startswith(("serverlord", "uvicorn", "litestar"))
        and record.levelno >= logging.INFO
        # The machine's clock may be stepped while this runs; that is no ping.
        and getattr(record, "action", None) != "clock_stepped"
    ]
    assert server_side == []


async def test_event_stream_clients_are_counted_while_connected(live: Live) -> None:
    tenant = await make_tenant(live.store)
    gauge = "serverlord_events_clients"

    async with live.client.stream(
        "GET", "/api/v3/events", headers=tenant.ro
    ) as response:
        assert response.status_code == 200
        connected = await scrape(live)
    await asyncio.sleep(0.2)
    gone = await scrape(live)

    assert value(connected[gauge], gauge) == 1
    assert value(gone[gauge], gauge) == 0
