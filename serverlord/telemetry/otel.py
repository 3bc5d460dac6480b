"""serverlord's telemetry through the OpenTelemetry SDK.

Metrics, as Prometheus names them (the OpenTelemetry name has dots and the
unit apart). Histograms are in milliseconds, with buckets for the figures
serverlord aims at. No label holds a check id or a raw URL.

- serverlord_pings_total {kind, result}: pings received
- serverlord_ping_duration_milliseconds {result}: handling time of a ping,
  its commit included
- serverlord_store_batch_size {store, result}: operations per group commit
- serverlord_store_commit_duration_milliseconds {store, result}: time of one
  group commit
- serverlord_detection_lag_milliseconds {reason}: deadline to flip stored
- serverlord_flips_total {status, reason}: flips pings and sweeps stored (not pauses)
- serverlord_checks {status}: checks by stored status (the store's total)
- serverlord_sweeper_heap_size {sweeper}: deadlines each sweeper holds
- serverlord_notifications_total {channel_kind, kind, result}: attempts to
  deliver; result is sent, retrying or failed (given up)
- serverlord_notification_latency_milliseconds {channel_kind, kind}: flip to
  delivered
- serverlord_notification_attempt_duration_milliseconds {channel_kind,
  result}: one attempt
- serverlord_events_clients: event-stream clients connected

OTLP/HTTP export is configured by the standard variables, read by the SDK:
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the per-signal ``..._METRICS_ENDPOINT``,
``..._TRACES_ENDPOINT``), ``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``; ``OTEL_SDK_DISABLED=true`` turns all of it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, StatusCode

from serverlord import __version__
from serverlord.apprise_urls import service_kind
from serverlord.channels import AttemptResult, Delivery
from serverlord.checks import DOWN, MISSED, NEW, PAUSED, RUN_TOO_LONG, UP, Flip
from serverlord.config import Settings
from serverlord.store.base import CommitObserver, SweepOutcome
from serverlord.telemetry import Delivered, Telemetry, logs, tracing
from serverlord.telemetry.exposition import CONTENT_TYPE, render
from serverlord.telemetry.meters import CommitMeter, FlipMeter, PingMeter, Tally

log = logging.getLogger(__name__)

SCOPE = "serverlord"
LAG_MS = (1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000)
"""Buckets of detection lag: a few ms is the aim, seconds mean trouble."""
ATTEMPT_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000)
"""Buckets of one delivery attempt (the timeout is 10 s by default)."""
DELIVERY_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 60_000, 600_000)
"""Buckets of flip-to-delivered time: retries stretch it to minutes."""
COUNTS_FRESH = 1.0
"""A scrape reads the checks by status again when they are older than this."""
COUNTS_EVERY = 15.0
"""How often they are read for the OTLP exporter."""
STORED_STATUSES = (NEW, UP, DOWN, PAUSED)
"""Reported even when no check has them, so that graphs show a zero."""
_LAGGING = (MISSED, RUN_TOO_LONG)
"""Flips whose time is a deadline: their lag is what the sweepers add."""


def otlp_wanted(signal: str) -> bool:
    """Whether the environment asks for OTLP export of ``signal`` (metrics or
    traces)."""
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get(f"OTEL_{signal.upper()}_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    )


def start_telemetry(settings: Settings, worker: int | None = None) -> Telemetry:
    """The telemetry the settings and the OTEL_* variables ask for."""
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    metrics = settings.metrics and not disabled
    traces = otlp_wanted("traces")
    if not metrics and not traces:
        return Telemetry()
    for name in ("", "_METRICS", "_TRACES"):
        protocol = os.environ.get(f"OTEL_EXPORTER_OTLP{name}_PROTOCOL", "")
        if protocol and protocol != "http/protobuf":
            log.warning(
                "OTEL_EXPORTER_OTLP%s_PROTOCOL=%s: serverlord sends "
                "http/protobuf only, and does so to the same endpoint",
                name,
                protocol,
                extra={"action": "telemetry_protocol"},
            )
    return OtelTelemetry(settings, metrics=metrics, traces=traces, worker=worker)


def resource(worker: int | None) -> Resource:
    """serverlord's resource, where OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES have the last word."""
    ours: dict[str, Any] = {
        "service.name": "serverlord",
        "service.version": __version__,
        "service.instance.id": str(uuid.uuid4()),
    }
    if worker is not None:
        ours["serverlord.worker"] = worker
    return Resource.create(ours).merge(OTELResourceDetector().detect())


class OtelTelemetry(Telemetry):
    def __init__(
        self,
        settings: Settings,
        *,
        metrics: bool,
        traces: bool,
        worker: int | None = None,
    ) -> None:
        self.resource = resource(worker)
        self.token = settings.metrics_token
        self.ping_share = settings.trace_pings
        self.metrics_on = metrics
        self.pings = PingMeter() if metrics else None
        self._commits = CommitMeter()
        self._flips = FlipMeter(LAG_MS, _LAGGING)
        self._counts = dict.fromkeys(STORED_STATUSES, 0)
        self._counted_at = -COUNTS_FRESH
        self._count: Callable[[], Awaitable[dict[str, int]]] | None = None
        self._heap_sizes: Callable[[], list[int]] = list
        self._event_clients: Callable[[], int] | None = None
        self._refresher: asyncio.Task[None] | None = None

        readers: list[MetricReader] = []
        self.prometheus: PrometheusReader | None = None
        self.otlp: OtlpReader | None = None
        if metrics:
            self.prometheus = PrometheusReader(self._tallies)
            readers.append(self.prometheus)
            if otlp_wanted("metrics"):
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                    OTLPMetricExporter,
                )

                self.otlp = OtlpReader(OTLPMetricExporter(), self._tallies)
                readers.append(self.otlp)
        self.meter_provider = MeterProvider(
            resource=self.resource, metric_readers=readers, shutdown_on_exit=False
        )
        self._instruments()

        self.tracer_provider: TracerProvider | None = None
        self.tracer = None
        if traces:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )

            self.tracer_provider = TracerProvider(
                resource=self.resource, shutdown_on_exit=False
            )
            self.tracer_provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter())
            )
            self.tracer = self.tracer_provider.get_tracer(SCOPE, __version__)
            logs.set_trace_ids(tracing.trace_ids)

    def _instruments(self) -> None:
        meter = self.meter_provider.get_meter(SCOPE, __version__)
        meter.create_observable_counter(
            "serverlord.flips",
            [self._observe_flips],
            unit="{flip}",
            description="Flips that pings and sweeps stored",
        )
        self._notifications = meter.create_counter(
            "serverlord.notifications",
            unit="{attempt}",
            description="Attempts to deliver a notification, by result",
        )
        self._latency = meter.create_histogram(
            "serverlord.notification.latency",
            unit="ms",
            description="Time from a notification's flip to its delivery",
            explicit_bucket_boundaries_advisory=DELIVERY_MS,
        )
        self._attempt = meter.create_histogram(
            "serverlord.notification.attempt.duration",
            unit="ms",
            description="Time one attempt to deliver a notification took",
            explicit_bucket_boundaries_advisory=ATTEMPT_MS,
        )
        meter.create_observable_counter(
            "serverlord.pings",
            [self._observe_pings],
            unit="{ping}",
            description="Pings received, by kind and result",
        )
        meter.create_observable_gauge(
            "serverlord.checks",
            [self._observe_checks],
            unit="{check}",
            description="Checks by stored status",
        )
        meter.create_observable_gauge(
            "serverlord.sweeper.heap.size",
            [self._observe_heaps],
            unit="{deadline}",
            description="Deadlines in each sweeper's heap",
        )
        meter.create_observable_gauge(
            "serverlord.events.clients",
            [self._observe_event_clients],
            unit="{client}",
            description="Clients connected to the event stream",
        )

    # What the components report.

    def commits(self, backend: str) -> CommitObserver | None:
        return self._commits.observer(backend) if self.metrics_on else None

    def flips(self, flips: Sequence[Flip], now: float) -> None:
        if not self.metrics_on:
            return
        for flip in flips:
            self._flips.flip(flip.new_status, flip.reason, flip.at, now)

    def sweep(
        self,
        sweeper: int,
        due: int,
        outcomes: Sequence[SweepOutcome],
        started_ns: int,
    ) -> AbstractContextManager[object]:
        if self.tracer is None:
            return nullcontext()
        return tracing.sweep_span(self.tracer, sweeper, due, outcomes, started_ns)

    @contextmanager
    def delivering(self, delivery: Delivery) -> Iterator[Delivered]:
        channel_kind = service_kind(delivery.channel_url)
        if self.tracer is None:

            def counted(result: AttemptResult) -> None:
                self._delivered(delivery, channel_kind, result)

            yield counted
            return
        with self.tracer.start_as_current_span(
            "serverlord.notify",
            kind=SpanKind.CLIENT,
            attributes={
                "serverlord.delivery.id": delivery.id,
                "serverlord.delivery.kind": delivery.kind,
                "serverlord.delivery.attempt": delivery.attempts,
                "serverlord.channel.id": delivery.channel_id,
                "serverlord.channel.kind": channel_kind,
                "serverlord.check.id": delivery.check_id or "",
                "serverlord.flip.id": (
                    -1 if delivery.flip_id is None else delivery.flip_id
                ),
            },
        ) as span:

            def done(result: AttemptResult) -> None:
                outcome = self._delivered(delivery, channel_kind, result)
                span.set_attribute("serverlord.delivery.result", outcome)
                if not result.ok:
                    span.set_status(StatusCode.ERROR, result.error)

            yield done

    def _delivered(
        self, delivery: Delivery, channel_kind: str, result: AttemptResult
    ) -> str:
        if result.ok:
            outcome = "sent"
        else:
            outcome = "failed" if result.next_attempt is None else "retrying"
        if self.metrics_on:
            labels = {"channel_kind": channel_kind, "kind": delivery.kind}
            self._notifications.add(1, {**labels, "result": outcome})
            self._attempt.record(
                result.latency * 1000.0,
                {"channel_kind": channel_kind, "result": outcome},
            )
            if result.ok:
                latency = max(0.0, result.at - delivery.created) * 1000.0
                self._latency.record(latency, labels)
        return outcome

    def watch(
        self,
        heap_sizes: Callable[[], list[int]],
        status_counts: Callable[[], Any],
    ) -> None:
        self._heap_sizes = heap_sizes
        self._count = status_counts
        if self.otlp is not None and self._refresher is None:
            self._refresher = asyncio.create_task(
                self._refresh_counts(), name="telemetry-counts"
            )

    def watch_event_clients(self, count: Callable[[], int]) -> None:
        self._event_clients = count

    # Asynchronous instruments, read when the SDK collects.

    def _observe_pings(self, options: CallbackOptions) -> Iterable[Observation]:
        counts = self.pings.counts if self.pings is not None else {}
        for (kind, result), count in list(counts.items()):
            yield Observation(count, {"kind": kind, "result": result})

    def _observe_flips(self, options: CallbackOptions) -> Iterable[Observation]:
        for (status, reason), count in list(self._flips.counts.items()):
            yield Observation(count, {"status": status, "reason": reason})

    def _observe_checks(self, options: CallbackOptions) -> Iterable[Observation]:
        for status, count in sorted(self._counts.items()):
            yield Observation(count, {"status": status})

    def _observe_heaps(self, options: CallbackOptions) -> Iterable[Observation]:
        for index, size in enumerate(self._heap_sizes()):
            yield Observation(size, {"sweeper": str(index)})

    def _observe_event_clients(self, options: CallbackOptions) -> Iterable[Observation]:
        # Nothing until an event stream exists to count the clients of.
        if self._event_clients is not None:
            yield Observation(self._event_clients())

    def _tallies(self) -> list[Metric]:
        metrics = []
        if self.pings is not None:
            metrics.append(
                tally_metric(
                    "serverlord.ping.duration",
                    "Handling time of a ping, its commit included",
                    "ms",
                    self.pings.duration,
                )
            )
        metrics.append(
            tally_metric(
                "serverlord.detection.lag",
                "Time from a check's deadline to its flip stored",
                "ms",
                self._flips.lag,
            )
        )
        metrics.append(
            tally_metric(
                "serverlord.store.batch.size",
                "Operations per group commit",
                "{operation}",
                self._commits.size,
            )
        )
        metrics.append(
            tally_metric(
                "serverlord.store.commit.duration",
                "Time one group commit took",
                "ms",
                self._commits.duration,
            )
        )
        return metrics

    async def refresh_counts(self) -> None:
        """Read the checks by status unless they are fresh enough."""
        if self._count is None:
            return
        now = time.monotonic()
        if now - self._counted_at < COUNTS_FRESH:
            return
        self._counted_at = now
        try:
            counts = await self._count()
            self._counts = {**dict.fromkeys(STORED_STATUSES, 0), **counts}
        except Exception as exc:
            # The store is away: report the last counts; its trouble is
            # logged where pings and sweeps fail.
            log.debug("checks by status not read: %s", exc)

    async def _refresh_counts(self) -> None:
        while True:
            await self.refresh_counts()
            await asyncio.sleep(COUNTS_EVERY)

    # HTTP.

    def route_handlers(self) -> list[Any]:
        if self.prometheus is None:
            return []
        from serverlord.telemetry.http import metrics_route

        return [metrics_route(self)]

    def authorized(self, header: str | None) -> bool:
        """Whether an Authorization header lets its sender read /metrics."""
        if not self.token:
            return True
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        )

    async def exposition(self) -> bytes:
        await self.refresh_counts()
        assert self.prometheus is not None
        return self.prometheus.render().encode()

    def wrap(self, app: Any) -> Any:
        if self.tracer is None:
            return app
        return tracing.traced_http(app, self.tracer, self.ping_share)

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        logs.set_trace_ids(None)
        # Shutting down sends what is left, over the network: not on the loop.
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self.meter_provider.shutdown(timeout_millis=5000)
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()


def tally_metric(name: str, description: str, unit: str, tally: Tally) -> Metric:
    """A tally as the SDK's histogram data, cumulative since it began."""
    now = time.time_ns()
    points = [
        HistogramDataPoint(
            attributes=dict(zip(tally.labels, series.key, strict=True)),
            start_time_unix_nano=tally.started_ns,
            time_unix_nano=now,
            count=series.count,
            sum=series.sum,
            bucket_counts=series.bucket_counts,
            explicit_bounds=tally.bounds,
            min=series.min,
            max=series.max,
        )
        for series in tally.series()
    ]
    data = HistogramData(points, AggregationTemporality.CUMULATIVE)
    return Metric(name=name, description=description, unit=unit, data=data)


def with_tallies(data: MetricsData, tallies: list[Metric]) -> MetricsData:
    """What the SDK collected, with the tallies that have data added to
    serverlord's scope."""
    tallies = [metric for metric in tallies if metric.data.data_points]
    resources = list(data.resource_metrics)
    if not resources:
        return data
    first = resources[0]
    scopes = list(first.scope_metrics)
    for index, scope in enumerate(scopes):
        if scope.scope.name == SCOPE:
            merged = [*scope.metrics, *tallies]
            scopes[index] = ScopeMetrics(scope.scope, merged, scope.schema_url)
            break
    else:
        ours = InstrumentationScope(SCOPE, __version__)
        scopes.append(ScopeMetrics(ours, tallies, ""))
    resources[0] = ResourceMetrics(first.resource, scopes, first.schema_url)
    return MetricsData(resources)


class PrometheusReader(MetricReader):
    """Collects when scraped; ``render`` gives the Prometheus text."""

    def __init__(self, tallies: Callable[[], list[Metric]]) -> None:
        super().__init__()
        self._tallies = tallies
        self._data: MetricsData | None = None

    def render(self) -> str:
        self.collect()
        data, self._data = self._data, None
        return render(data, [] if data is not None else self._tallies())

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        self._data = with_tallies(metrics_data, self._tallies())

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


class OtlpReader(PeriodicExportingMetricReader):
    """The SDK's periodic OTLP export, with the tallies added.

    The tallies are cumulative; when the exporter prefers delta histograms
    (``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE``), each export sends
    what changed since the one before, as the SDK's own histograms do.
    """

    def __init__(
        self, exporter: MetricExporter, tallies: Callable[[], list[Metric]]
    ) -> None:
        super().__init__(exporter)
        self._tallies = tallies
        preferred = getattr(exporter, "_preferred_temporality", None) or {}
        self._delta = preferred.get(Histogram) == AggregationTemporality.DELTA
        self._exported: dict[tuple[str, Any], HistogramDataPoint] = {}

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        tallies = self._tallies()
        if self._delta:
            tallies = [as_delta(metric, self._exported) for metric in tallies]
        data = with_tallies(metrics_data, tallies)
        super()._receive_metrics(data, timeout_millis, **kwargs)


def as_delta(
    metric: Metric, exported: dict[tuple[str, Any], HistogramDataPoint]
) -> Metric:
    """A cumulative histogram as the change since its last export.

    ``exported`` keeps each series' last cumulative point. The smallest and
    largest values of the interval are not kept: they are bounded by the
    buckets that grew and by the values seen since the start.
    """
    assert isinstance(metric.data, HistogramData)
    points = []
    for point in metric.data.data_points:
        key = (metric.name, tuple(sorted((point.attributes or {}).items())))
        before = exported.get(key)
        exported[key] = point
        if before is None:
            points.append(point)
            continue
        counts = [
            now - then
            for now, then in zip(point.bucket_counts, before.bucket_counts, strict=True)
        ]
        if not any(counts):
            continue
        bounds = [-math.inf, *point.explicit_bounds, math.inf]
        grew = [index for index, count in enumerate(counts) if count]
        points.append(
            HistogramDataPoint(
                attributes=point.attributes,
                start_time_unix_nano=before.time_unix_nano,
                time_unix_nano=point.time_unix_nano,
                count=point.count - before.count,
                sum=point.sum - before.sum,
                bucket_counts=counts,
                explicit_bounds=point.explicit_bounds,
                min=max(point.min, bounds[grew[0]]),
                max=min(point.max, bounds[grew[-1] + 1]),
            )
        )
    data = HistogramData(points, AggregationTemporality.DELTA)
    return Metric(metric.name, metric.description, metric.unit, data)


__all__ = ["CONTENT_TYPE", "OtelTelemetry", "start_telemetry"]
