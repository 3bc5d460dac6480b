"""A live serverlord with its telemetry, and an OTLP/HTTP receiver, on 127.0.0.1.

The server is composed as ``serverlord serve`` composes it (``http_app``) and
served by uvicorn on a real socket in the test's loop. The receiver is a plain
HTTP server in a thread that decodes what the OpenTelemetry exporters send.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import uvicorn
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from serverlord.checks import Check
from serverlord.config import Settings
from serverlord.http.app import with_fast_pings
from serverlord.schedules import Schedule
from serverlord.server import Server, http_app
from serverlord.store import Store
from serverlord.telemetry import Telemetry
from tests.conftest import Live, free_socket


@asynccontextmanager
async def observed(
    settings: Settings, store: Store, telemetry: Telemetry
) -> AsyncIterator[Live]:
    """A started server with ``telemetry``, its HTTP side on a free port."""
    server = Server(settings, store, telemetry)
    await server.start()
    app = telemetry.wrap(with_fast_pings(http_app(server)))
    sock = free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        log_level="warning",
        log_config=None,
        http="httptools",
    )
    http = uvicorn.Server(config)
    http.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(http.serve(sockets=[sock]))
    try:
        while not http.started:
            await asyncio.sleep(0.005)
        base_url = f"http://127.0.0.1:{port}"
        settings.base_url = base_url
        async with httpx.AsyncClient(base_url=base_url) as client:
            yield Live(settings, store, server, client, base_url)
    finally:
        http.should_exit = True
        await task
        await server.stop()
        await telemetry.stop()
        sock.close()


class OtlpReceiver:
    """Takes OTLP/HTTP protobuf exports of metrics and traces, answers 200."""

    def __init__(self) -> None:
        self.metric_exports: list[ExportMetricsServiceRequest] = []
        self.trace_exports: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def take(self, path: str, body: bytes) -> None:
        with self._lock:
            self.paths.append(path)
            if path == "/v1/metrics":
                request = ExportMetricsServiceRequest()
                request.ParseFromString(body)
                self.metric_exports.append(request)
            elif path == "/v1/traces":
                trace_request = ExportTraceServiceRequest()
                trace_request.ParseFromString(body)
                self.trace_exports.append(trace_request)

    def latest_metrics(self) -> dict[str, Metric]:
        """Each metric by name, from the latest export that has it."""
        with self._lock:
            exports = list(self.metric_exports)
        found: dict[str, Metric] = {}
        for export in exports:
            for resource in export.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        found[metric.name] = metric
        return found

    def resource_attributes(self) -> dict[str, str]:
        with self._lock:
            exports = list(self.metric_exports) + list(self.trace_exports)
        attributes: dict[str, str] = {}
        for export in exports:
            for resource in getattr(export, "resource_metrics", None) or getattr(
                export, "resource_spans", []
            ):
                for attribute in resource.resource.attributes:
                    value = attribute.value
                    kind = value.WhichOneof("value")
                    attributes[attribute.key] = str(getattr(value, kind))
        return attributes

    def spans(self) -> list[Span]:
        with self._lock:
            exports = list(self.trace_exports)
        return [
            span
            for export in exports
            for resource in export.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    async def wait_for(
        self, condition: Callable[[], bool], timeout: float = 10
    ) -> None:
        give_up = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > give_up:
                raise AssertionError(f"the receiver did not get it in {timeout} s")
            await asyncio.sleep(0.05)


def _handler_for(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            receiver.take(self.path, body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


async def add_check(
    store: Store, period: float = 86400.0, grace: float = 3600.0
) -> Check:
    """A simple check, straight into the store."""
    check = Check(
        id=str(uuid.uuid4()),
        name="backup",
        schedule=Schedule.simple(period),
        grace=grace,
        created=time.time(),
    )
    await store.add_check(check)
    return check
