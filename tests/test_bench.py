"""``serverlord bench``: a tiny run of each scenario through the real command.

These tests check that every scenario completes and reports sane figures
(positive, percentiles in order); they never judge a speed, which depends on
the machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from serverlord.bench.target import Target, free_port, http_get
from serverlord.config import LEGACY_VARIABLES

pytestmark = pytest.mark.slow
pytest_plugins = ("tests.postgres",)


def clean_env() -> dict[str, str]:
    """This machine's environment without anything that would choose a store."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SERVERLORD_", "PG", "OTEL_"))
        and k not in LEGACY_VARIABLES
    }


def bench(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = clean_env()
    return subprocess.run(
        [sys.executable, "-m", "serverlord", "bench", *argv, "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def report(*argv: str) -> dict[str, Any]:
    done = bench(*argv, "--json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def assert_ordered(figures: dict[str, float]) -> None:
    values = [figures[k] for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")]
    assert 0 <= values[0] <= values[1] <= values[2] <= values[3]


def test_setup_creates_the_users_and_checks_it_was_asked_for() -> None:
    result = report("setup", "--users", "20", "--checks", "300")

    assert result["users"] == 20
    assert result["checks"] == 300
    assert result["checks_per_s"] > 0
    assert result["users_per_s"] > 0


def test_setup_prints_a_table() -> None:
    done = bench("setup", "--users", "2", "--checks", "10")

    assert done.returncode == 0, done.stderr
    assert "checks created" in done.stdout
    assert "10" in done.stdout


def test_ingest_reports_each_connection_count_beside_the_bare_responder() -> None:
    result = report(
        "ingest", "--checks", "50", "--seconds", "1", "--connections", "1,4"
    )

    assert [level["connections"] for level in result["levels"]] == [1, 4]
    for level in result["levels"]:
        ours, bare = level["serverlord"], level["bare"]
        assert ours["ok_per_s"] > 0 and bare["ok_per_s"] > 0
        assert ours["errors"] == 0
        assert_ordered(ours)
        assert_ordered(bare)
        assert level["ratio"] > 0
    assert result["cpu_us_per_ping"] > 0


def test_ingest_pings_one_check_past_the_servers_per_check_rate_limit() -> None:
    """The bench's own server has no per-check limit: one check pinged for two
    seconds flat out (far more than the default's burst of 100) gets no 429."""
    result = report("ingest", "--checks", "1", "--seconds", "2", "--connections", "2")

    ours = result["levels"][0]["serverlord"]
    assert ours["requests"] > 100
    assert ours["errors"] == 0


def test_ingest_holds_a_rate_with_the_builtin_client() -> None:
    result = report(
        "ingest",
        "--checks",
        "20",
        "--seconds",
        "1",
        "--connections",
        "2",
        "--rate",
        "100",
        "--no-wrk",
    )

    level = result["levels"][0]
    assert level["serverlord"]["generator"] == "builtin"
    assert 0 < level["serverlord"]["ok_per_s"] <= 150
    assert_ordered(level["serverlord"])


def test_lag_flips_every_silent_check() -> None:
    result = report(
        "lag",
        "--checks",
        "100",
        "--lag-checks",
        "20",
        "--seconds",
        "1",
        "--connections",
        "2",
    )

    assert result["flipped"] == result["silent_checks"] == 20
    assert_ordered(result["lag"])
    assert result["traffic"]["ok_per_s"] > 0


def test_wave_flips_and_alerts_every_check() -> None:
    result = report("wave", "--wave", "50", "--lead", "3", "--timeout", "30")

    assert result["flipped"] == result["delivered"] == 50
    assert 0 <= result["all_flipped_s"] <= result["all_delivered_s"]
    assert result["all_flipped_s"] <= result["all_stored_s"]


def test_memory_measures_an_empty_and_a_loaded_server() -> None:
    result = report("memory", "--checks", "500")

    assert result["empty_rss_bytes"] > 0
    assert result["loaded_rss_bytes"] > 0
    assert result["startup_s"] > 0
    assert result["checks"] == 500


def running_server_with_a_user(data_dir: Path) -> tuple[Target, str]:
    """A started server on ``data_dir`` with one user: the server and the
    read-write API key of the user's project (stop the server after)."""
    env = {**clean_env(), "SERVERLORD_DATA_DIR": str(data_dir)}
    added = subprocess.run(
        [sys.executable, "-m", "serverlord", "user", "add", "bench@example.com"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    key = re.search(r"API key \(read-write\): (\S+)", added.stdout)
    assert key is not None, added.stdout
    server = Target(data_dir)
    server.start()
    return server, key[1]


def test_setup_and_ingest_load_a_running_server_through_its_api(
    tmp_path: Path,
) -> None:
    server, key = running_server_with_a_user(tmp_path)
    try:
        created = report(
            "setup", "--url", server.url, "--api-key", key, "--checks", "40"
        )
        loaded = report(
            "ingest",
            "--url",
            server.url,
            "--api-key",
            key,
            "--seconds",
            "1",
            "--connections",
            "2",
        )
    finally:
        server.stop()

    assert created["checks"] == 40 and created["users"] == 0
    assert loaded["checks"] == 40
    assert loaded["levels"][0]["serverlord"]["ok_per_s"] > 0
    assert loaded["levels"][0]["serverlord"]["errors"] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lag", "--url", "http://127.0.0.1:9", "--api-key", "k"], "own server only"),
        (["ingest", "--url", "http://127.0.0.1:9"], "--url needs --api-key"),
        (["ingest", "--url", "ftp://x"], "must be http://HOST:PORT"),
        (["setup", "--url", "http://127.0.0.1:abc"], "must be http://HOST:PORT"),
        (["setup", "--url", "http://127.0.0.1:99999"], "must be http://HOST:PORT"),
        (["ingest", "--connections", "0"], "each count must be 1-10000"),
        (["ingest", "--seconds", "0"], "--seconds: 0 is not between"),
        (["nothing"], "invalid choice"),
        (["responder"], "the responder needs it"),
        (["ingest", "--port", "8000"], "--port goes with the responder"),
        (["responder", "--port", "70000"], "--port: 70000 is not between"),
    ],
)
def test_bad_input_exits_2_with_a_precise_message(
    argv: list[str], message: str
) -> None:
    done = bench(*argv, timeout=30)

    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_the_responder_answers_ok_guards_its_port_and_is_no_serverlord() -> None:
    port = free_port()
    responder = subprocess.Popen(
        [sys.executable, "-m", "serverlord", "bench", "responder", "--port", str(port)],
        env=clean_env(),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert http_get(port, "/anything") == 200
                break
            except OSError:
                assert time.monotonic() < deadline, "the responder never answered"
                time.sleep(0.05)
        taken = bench("responder", "--port", str(port), timeout=30)
        # A server that answers OK to anything is not taken for serverlord.
        fooled = bench(
            "setup",
            "--url",
            f"http://127.0.0.1:{port}",
            "--api-key",
            "k",
            "--checks",
            "3",
            timeout=60,
        )
    finally:
        responder.terminate()
        responder.wait(10)

    assert taken.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in taken.stderr
    assert "Traceback" not in taken.stderr
    assert responder.returncode == 0
    assert fooled.returncode == 1
    assert "is it serverlord?" in fooled.stderr
    assert "Traceback" not in fooled.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["memory", "--checks", "300"],
        ["ingest", "--checks", "20", "--seconds", "1", "--connections", "2"],
        ["wave", "--wave", "20", "--timeout", "30"],
    ],
    ids=["memory", "ingest", "wave"],
)
def test_scenarios_run_on_an_empty_postgresql_database(
    argv: list[str], postgres_url: str
) -> None:
    result = report(*argv, "--database-url", postgres_url)

    if argv[0] == "memory":
        assert result["checks"] == 300
        assert result["loaded_rss_bytes"] > 0 and result["startup_s"] > 0
    elif argv[0] == "ingest":
        ours = result["levels"][0]["serverlord"]
        assert ours["ok_per_s"] > 0 and ours["errors"] == 0
    else:
        assert result["flipped"] == 20 and result["delivered"] == 20


def test_setup_waits_out_the_api_rate_limit_of_a_running_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 30 requests at once, then one every two seconds.
    monkeypatch.setenv("SERVERLORD_API_RATE_LIMIT", "30")
    server, key = running_server_with_a_user(tmp_path)
    try:
        created = report(
            "setup", "--url", server.url, "--api-key", key, "--checks", "34"
        )
    finally:
        server.stop()

    assert created["checks"] == 34


@pytest.mark.parametrize("scenario", ["setup", "ingest"])
def test_a_running_server_out_of_reach_is_one_line_not_a_traceback(
    scenario: str,
) -> None:
    port = free_port()  # nothing listens there
    done = bench(
        scenario, "--url", f"http://127.0.0.1:{port}", "--api-key", "k", timeout=60
    )

    assert done.returncode == 1
    assert f"cannot reach http://127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("postgresql://127.0.0.1:{port}/x", 1, "cannot open the store"),
        ("postgresql://127.0.0.1:{port}/x?sslmode=bogus", 2, "URL is not valid"),
        (
            "postgresql://127.0.0.1:{port}/x?sslmode=verify-full"
            "&sslrootcert=/nonexistent/root.crt",
            1,
            "No such file or directory",
        ),
    ],
)
def test_a_database_the_bench_cannot_open_is_one_line_not_a_traceback(
    url: str, code: int, message: str
) -> None:
    database = url.format(port=free_port())  # nothing listens there

    done = bench("setup", "--checks", "1", "--database-url", database, timeout=60)

    assert done.returncode == code
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
