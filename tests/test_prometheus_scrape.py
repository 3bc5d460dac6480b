"""A real Prometheus (Debian's package, when installed) scrapes serverlord.

Prometheus listens on 127.0.0.1, scrapes a live server every second with the
bearer token set, and must answer a query for the ping counter with the
number of pings sent. Skipped where the ``prometheus`` binary is missing.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from serverlord.checks import Check
from serverlord.config import Settings
from serverlord.schedules import Schedule
from serverlord.store import Store
from serverlord.telemetry import start
from tests.conftest import Live
from tests.observed import observed
from tests.receivers import closed_port

PROMETHEUS = shutil.which("prometheus")
TOKEN = "prometheus-s3cret"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        PROMETHEUS is None, reason="Debian's prometheus is not installed"
    ),
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", shards=2, metrics_token=TOKEN)


@pytest.fixture
async def live(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Live]:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    async with observed(settings, store, start(settings)) as server:
        yield server


async def test_prometheus_scrapes_serverlord_and_answers_for_the_ping_counter(
    live: Live, tmp_path: Path
) -> None:
    assert PROMETHEUS is not None
    target = live.base_url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: serverlord\n"
        f"    authorization: {{credentials: {TOKEN}}}\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    port = closed_port()
    prometheus = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        check = Check(
            id=str(uuid.uuid4()),
            name="backup",
            schedule=Schedule.simple(86400),
            grace=3600,
            created=time.time(),
        )
        await live.store.add_check(check)
        for _ in range(7):
            assert (await live.client.get(f"/ping/{check.id}")).status_code == 200

        query = 'serverlord_pings_total{kind="success",result="ok"}'
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as api:
            give_up = time.monotonic() + 30
            while True:
                found = await _query(api, query)
                if found == 7.0:
                    break
                assert time.monotonic() < give_up, f"Prometheus answered {found}"
                await asyncio.sleep(0.5)
            up = await _query(api, 'up{job="serverlord"}')
        assert up == 1.0
    finally:
        prometheus.terminate()
        prometheus.wait(30)


async def _query(api: httpx.AsyncClient, query: str) -> float | None:
    try:
        response = await api.get("/api/v1/query", params={"query": query})
    except httpx.TransportError:
        return None
    if response.status_code != 200:
        return None
    result = response.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None
