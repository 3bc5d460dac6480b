"""OTLP/HTTP export to a receiver on 127.0.0.1 started by the test.

The exporters are the OpenTelemetry SDK's own, configured only through the
standard OTEL_* variables, as an operator would.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from serverlord.apprise_urls import describe_url
from serverlord.channels import Channel
from serverlord.config import Settings
from serverlord.store import Store
from serverlord.telemetry import start
from serverlord.telemetry.logs import JsonFormatter
from serverlord.telemetry.meters import PING_MS
from tests.conftest import Live
from tests.observed import OtlpReceiver, add_check, observed
from tests.receivers import WebhookReceiver
from tests.tenants import make_tenant

# Apprise's e-mail plugin imports imghdr, deprecated since Python 3.11.
pytestmark = pytest.mark.filterwarnings(
    "ignore:'imghdr' is deprecated:DeprecationWarning"
)


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    overrides: dict[str, Any] = getattr(request, "param", {})
    return Settings(data_dir=tmp_path, shards=4, notify_timeout=5.0, **overrides)


@pytest.fixture
async def live(
    settings: Settings,
    store: Store,
    otlp: OtlpReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Live]:
    export_to(otlp, monkeypatch)
    async with observed(settings, store, start(settings)) as server:
        yield server


def export_to(otlp: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url)
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "cron-watch")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")


async def test_the_receiver_gets_the_metrics_with_the_resource_of_the_environment(
    live: Live, otlp: OtlpReceiver
) -> None:
    check = await add_check(live.store)
    for _ in range(3):
        assert (await live.client.get(f"/ping/{check.id}")).status_code == 200

    def pings_arrived() -> bool:
        metric = otlp.latest_metrics().get("serverlord.pings")
        return metric is not None and sum(p.as_int for p in metric.sum.data_points) == 3

    await otlp.wait_for(pings_arrived)

    metrics = otlp.latest_metrics()
    pings = metrics["serverlord.pings"]
    assert pings.sum.is_monotonic and pings.unit == "{ping}"
    [point] = pings.sum.data_points
    labels = {a.key: a.value.string_value for a in point.attributes}
    assert labels == {"kind": "success", "result": "ok"}
    handling = metrics["serverlord.ping.duration"]
    assert handling.unit == "ms"
    [histogram] = handling.histogram.data_points
    assert histogram.count == 3 and sum(histogram.bucket_counts) == 3
    assert list(histogram.explicit_bounds) == list(PING_MS)
    assert "serverlord.store.commit.duration" in metrics
    assert "serverlord.checks" in metrics
    resource = otlp.resource_attributes()
    assert resource["service.name"] == "cron-watch"
    assert resource["deployment.environment"] == "test"
    assert resource["service.version"]


async def test_with_delta_preferred_every_histogram_sends_what_changed(
    settings: Settings,
    store: Store,
    otlp: OtlpReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    export_to(otlp, monkeypatch)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    handling = "serverlord.ping.duration"

    def exported(name: str) -> list[Any]:
        return [
            metric
            for export in list(otlp.metric_exports)
            for resource in export.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
        ]

    def counted() -> int:
        return sum(
            point.count
            for metric in exported(handling)
            for point in metric.histogram.data_points
        )

    async with observed(settings, store, start(settings)) as live:
        check = await add_check(live.store)
        for _ in range(3):
            assert (await live.client.get(f"/ping/{check.id}")).status_code == 200
        await otlp.wait_for(lambda: counted() == 3)
        for _ in range(2):
            assert (await live.client.get(f"/ping/{check.id}/1")).status_code == 200
        await otlp.wait_for(lambda: counted() == 5)

    names = [
        handling,
        "serverlord.store.batch.size",
        "serverlord.store.commit.duration",
    ]
    for name in names:
        metrics = exported(name)
        assert metrics, name
        # 1 is AGGREGATION_TEMPORALITY_DELTA in the OTLP protocol.
        assert {m.histogram.aggregation_temporality for m in metrics} == {1}, name
    for metric in exported(handling):
        for point in metric.histogram.data_points:
            assert sum(point.bucket_counts) == point.count
            assert point.min <= point.max
    assert counted() == 5


async def test_traces_cover_a_sweep_that_flips_its_alert_and_requests_but_not_pings(
    live: Live, otlp: OtlpReceiver
) -> None:
    hook = WebhookReceiver()
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("serverlord.server")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        kind, masked = describe_url(hook.url())
        channel = Channel(str(uuid.uuid4()), "ops", hook.url(), kind, masked, 0.0)
        await live.store.add_channel(channel)
        check = await add_check(live.store, period=1.0, grace=1.0)
        await live.store.set_check_channels(check.id, [channel.id])
        assert (await live.client.get(f"/ping/{check.id}")).status_code == 200
        assert (await live.client.get("/api/health")).status_code == 200
        await hook.arrived(1)

        def traced() -> bool:
            names = {span.name for span in otlp.spans()}
            return {"serverlord.sweep", "serverlord.notify"} <= names

        await otlp.wait_for(traced)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        hook.close()

    spans = otlp.spans()
    names = [span.name for span in spans]
    assert "GET /api/health" in names
    assert not [name for name in names if "ping" in name]
    [sweep] = [span for span in spans if span.name == "serverlord.sweep"]
    [event] = sweep.events
    event_attributes = {a.key: a.value for a in event.attributes}
    assert event_attributes["serverlord.check.id"].string_value == check.id
    assert event_attributes["serverlord.flip.reason"].string_value == "missed"
    [notify] = [span for span in spans if span.name == "serverlord.notify"]
    notify_attributes = {a.key: a.value for a in notify.attributes}
    assert notify_attributes["serverlord.channel.kind"].string_value == "json"
    assert notify_attributes["serverlord.delivery.result"].string_value == "sent"

    # The log line of the flip carries the trace of the sweep that made it;
    # that of the first ping's flip, untraced, has none.
    records = [json.loads(line) for line in lines.getvalue().splitlines()]
    up, down = [r for r in records if r.get("action") == "flip"]
    assert up["check_id"] == down["check_id"] == check.id
    assert "trace_id" not in up
    assert down["trace_id"] == sweep.trace_id.hex()
    assert down["span_id"] == sweep.span_id.hex()


@pytest.mark.parametrize("settings", [{"trace_pings": 1.0}], indirect=True)
async def test_with_a_ping_share_of_one_every_ping_is_traced(
    live: Live, otlp: OtlpReceiver
) -> None:
    check = await add_check(live.store)
    for suffix in ("", "/start", "/fail"):
        await live.client.get(f"/ping/{check.id}{suffix}")

    def three_pings() -> bool:
        return len([s for s in otlp.spans() if "/ping/" in s.name]) == 3

    await otlp.wait_for(three_pings)
    for span in otlp.spans():
        if "/ping/" in span.name:
            attributes = {a.key: a.value for a in span.attributes}
            assert attributes["http.response.status_code"].int_value == 200
            assert check.id not in span.name


async def test_a_traceparent_header_continues_the_callers_trace(
    live: Live, otlp: OtlpReceiver
) -> None:
    trace_id = uuid.uuid4().hex
    parent = f"00-{trace_id}-{'1' * 16}-01"

    await live.client.get("/api/health", headers={"traceparent": parent})

    def continued() -> bool:
        return any(s.trace_id.hex() == trace_id for s in otlp.spans())

    await otlp.wait_for(continued)


async def test_management_api_requests_are_spans_named_by_their_route(
    live: Live, otlp: OtlpReceiver
) -> None:
    tenant = await make_tenant(live.store)
    check = await add_check(live.store)

    listed = await live.client.get("/api/v3/checks/", headers=tenant.ro)
    one = await live.client.get(f"/api/v3/checks/{check.id}", headers=tenant.ro)
    assert listed.status_code == 200 and one.status_code == 404

    def both() -> bool:
        names = {span.name for span in otlp.spans()}
        return {"GET /api/v3/checks", "GET /api/v3/checks/{code}"} <= names

    await otlp.wait_for(both)
    for span in otlp.spans():
        assert check.id not in span.name and tenant.read not in span.name
        attributes = {a.key: a.value for a in span.attributes}
        assert all(check.id not in str(v) for v in attributes.values())
