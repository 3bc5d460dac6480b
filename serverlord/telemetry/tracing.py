"""Traces: HTTP requests other than pings, sweeps that flip, deliveries.

A ping is traced only when ``--trace-pings`` asks for a share of them: the
HTTP wrapper lets every other ping straight through after one look at its
path. A sweep's span is made after the sweep, and only when it flipped
checks, with the time the sweep began; sweeps that find nothing to flip, the
vast majority, cost nothing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import (
    TraceContextTextMapPropagator,
)

from serverlord.store.base import SweepOutcome

ASGIApp = Any
"""An ASGI application: ``await app(scope, receive, send)``."""

FLIP_EVENTS = 100
"""Most flips named as events of one sweep's span."""

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = (b"traceparent", b"tracestate")


def trace_ids() -> tuple[str, str] | None:
    """The hex ids of the active trace and span, for log records."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def sweep_span(
    tracer: Tracer,
    sweeper: int,
    due: int,
    outcomes: Sequence[SweepOutcome],
    started_ns: int,
) -> AbstractContextManager[object]:
    flips = [outcome.flip for outcome in outcomes if outcome.flip is not None]
    if not flips:
        return nullcontext()
    span = tracer.start_span(
        "serverlord.sweep",
        start_time=started_ns,
        attributes={
            "serverlord.sweeper": sweeper,
            "serverlord.sweep.due": due,
            "serverlord.sweep.flips": len(flips),
        },
    )
    for flip in flips[:FLIP_EVENTS]:
        span.add_event(
            "flip",
            {
                "serverlord.check.id": flip.check_id,
                "serverlord.flip.id": flip.id if flip.id is not None else -1,
                "serverlord.flip.status": flip.new_status,
                "serverlord.flip.reason": flip.reason,
            },
        )
    return trace.use_span(span, end_on_exit=True)


def traced_http(app: ASGIApp, tracer: Tracer, ping_share: float) -> ASGIApp:
    """``app`` with a server span around each request but most pings.

    Spans are named by the route template (``GET /metrics``), never by the
    raw path: paths hold check ids and keys.
    """

    async def traced(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or (
            scope["path"].startswith("/ping/")
            and (not ping_share or random.random() >= ping_share)
        ):
            await app(scope, receive, send)
            return

        method = scope["method"]
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _TRACE_HEADERS
        }
        status = 0

        async def capture(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with tracer.start_as_current_span(
            method,
            context=_PROPAGATOR.extract(carrier) if carrier else None,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method},
        ) as span:
            try:
                await app(scope, receive, capture)
            finally:
                # Litestar writes the matched route into the scope it is given.
                template = scope.get("path_template")
                if template:
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(StatusCode.ERROR)

    return traced
