"""Telemetry of serverlord itself: metrics, traces and structured logs.

The server, its sweepers, the notifier and the stores report to one
``Telemetry`` object. This base class records nothing, so a component built
without telemetry (in a test, or by a CLI command) pays nothing for it.
``serverlord serve`` builds an ``OtelTelemetry`` (``telemetry.otel``) instead,
which imports the OpenTelemetry SDK only then.

What is measured, and the names Prometheus sees, are listed in ``otel``; the
per-project check metrics are in ``projects``; logging is set up by ``logs``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serverlord.channels import AttemptResult, Delivery
    from serverlord.checks import Flip
    from serverlord.config import Settings
    from serverlord.store.base import CommitObserver, SweepOutcome
    from serverlord.telemetry.meters import PingMeter

__all__ = ["NO_TELEMETRY", "Telemetry", "start"]

Delivered = Callable[["AttemptResult"], None]
"""Told the result of one delivery attempt."""


class Telemetry:
    """Telemetry that records nothing: the default of every component."""

    pings: PingMeter | None = None
    """Counts and times each ping when set; the ping routes measure nothing
    while it is None."""

    def commits(self, backend: str) -> CommitObserver | None:
        """What the store's writer tells of each group commit, if anything."""
        return None

    def flips(self, flips: Sequence[Flip], now: float) -> None:
        """Flips stored at ``now`` (by a ping or a sweep)."""

    def sweep(
        self,
        sweeper: int,
        due: int,
        outcomes: Sequence[SweepOutcome],
        started_ns: int,
    ) -> AbstractContextManager[object]:
        """The span of a sweep that began at ``started_ns`` (wall clock) and
        confirmed ``due`` checks; entered while its outcomes are applied."""
        return nullcontext()

    @contextmanager
    def delivering(self, delivery: Delivery) -> Iterator[Delivered]:
        """Around one attempt to deliver; call what it yields with the result."""
        yield _ignore

    def watch(
        self,
        heap_sizes: Callable[[], list[int]],
        status_counts: Callable[[], Any],
    ) -> None:
        """Report what these tell (sweeper heaps; checks by status, awaited)."""

    def watch_event_clients(self, count: Callable[[], int]) -> None:
        """Report how many event-stream clients ``count`` says are connected."""

    def route_handlers(self) -> list[Any]:
        """The HTTP routes that serve the metrics (none here)."""
        return []

    def wrap(self, app: Any) -> Any:
        """The ASGI application to serve: ``app``, traced where asked."""
        return app

    async def stop(self) -> None:
        """Send what is left and stop the exporters."""


def _ignore(result: AttemptResult) -> None:
    return None


NO_TELEMETRY = Telemetry()


def start(settings: Settings, worker: int | None = None) -> Telemetry:
    """The telemetry that the settings and the OTEL_* variables ask for.

    With metrics off and no OTLP endpoint, OpenTelemetry is not even imported.
    """
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    wanted = settings.metrics and not disabled
    if not wanted and not any(
        os.environ.get(f"OTEL_EXPORTER_OTLP{signal}_ENDPOINT")
        for signal in ("", "_TRACES")
    ):
        return NO_TELEMETRY
    from serverlord.telemetry.otel import start_telemetry

    return start_telemetry(settings, worker)
