"""The parts of telemetry on their own: tallies, ping kinds, log formats, set-up."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

import pytest

from serverlord.apprise_urls import service_kind
from serverlord.config import Settings, SettingsError
from serverlord.telemetry import NO_TELEMETRY, logs, start
from serverlord.telemetry.environment import check_otel_environment
from serverlord.telemetry.meters import Tally, ping_kind
from serverlord.telemetry.otel import OtelTelemetry
from tests.cli_runner import runner


@pytest.mark.parametrize(
    ("suffix", "kind"),
    [
        (None, "success"),
        ("start", "start"),
        ("fail", "fail"),
        ("log", "log"),
        ("0", "success"),
        ("000", "success"),
        ("1", "fail"),
        ("255", "fail"),
        ("nope", "unknown"),
    ],
)
def test_a_ping_suffix_names_its_kind(suffix: str | None, kind: str) -> None:
    assert ping_kind(suffix) == kind


def test_a_tally_counts_a_value_on_a_bound_in_that_bound() -> None:
    tally = Tally((1.0, 2.0), ("result",))

    for value in (0.5, 1.0, 1.5, 2.0, 9.0):
        tally.record(value, ("ok",))

    [series] = tally.series()
    assert series.bucket_counts == [2, 2, 1]
    assert series.count == 5 and series.sum == 14.0
    assert (series.min, series.max) == (0.5, 9.0)


def test_a_channel_url_names_its_service_kind_without_its_secrets() -> None:
    assert service_kind("jsons://user:secret@example.org/hook") == "json"
    assert service_kind("mailtos://u:p@example.org") == "mailto"
    assert service_kind("nonsense://x") == "unknown"
    assert service_kind("no scheme at all") == "unknown"


def record(message: str, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("serverlord.test")
    return logger.makeRecord(
        logger.name, logging.WARNING, __file__, 1, message, (), None, extra=extra
    )


def test_a_json_line_has_the_message_action_and_ids() -> None:
    line = logs.JsonFormatter().format(
        record("check down", action="flip", check_id="c1", flip_id=7)
    )

    entry = json.loads(line)
    assert entry["message"] == "check down"
    assert entry["level"] == "warning"
    assert entry["logger"] == "serverlord.test"
    assert (entry["action"], entry["check_id"], entry["flip_id"]) == ("flip", "c1", 7)
    assert "trace_id" not in entry
    assert entry["time"].endswith("+00:00")


def test_a_json_line_has_the_trace_where_a_span_is_active() -> None:
    logs.set_trace_ids(lambda: ("a" * 32, "b" * 16))
    try:
        entry = json.loads(logs.JsonFormatter().format(record("x", action="y")))
    finally:
        logs.set_trace_ids(None)

    assert (entry["trace_id"], entry["span_id"]) == ("a" * 32, "b" * 16)


def test_a_json_line_keeps_a_traceback_in_one_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logger = logging.getLogger("serverlord.test")
        failed = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )

    line = logs.JsonFormatter().format(failed)

    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_text_lines_show_the_fields_after_the_message() -> None:
    line = logs.TextFormatter().format(record("check down", action="flip", lag=0.0123))

    assert line.endswith("serverlord.test: check down [action=flip lag=0.0123]")


def test_logs_are_json_unless_the_stream_is_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        for stream, is_json in ((io.StringIO(), True), (Terminal(), False)):
            logs.configure("info", "auto", stream, force=True)
            logging.getLogger("serverlord.test").info("hi", extra={"action": "a"})
            text = stream.getvalue().strip()
            assert text.startswith("{") == is_json, text
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_logging_set_up_already_is_left_alone() -> None:
    root = logging.getLogger()
    kept = logging.StreamHandler(io.StringIO())
    handlers, level = list(root.handlers), root.level
    root.addHandler(kept)
    try:
        logs.configure("debug", "json", io.StringIO())

        assert kept in root.handlers and root.level == level
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_without_metrics_or_an_otlp_endpoint_nothing_is_set_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)

    assert start(Settings(data_dir=tmp_path, metrics=False)) is NO_TELEMETRY


async def test_otel_sdk_disabled_turns_metrics_and_traces_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")

    telemetry = start(Settings(data_dir=tmp_path))

    assert telemetry.pings is None and telemetry.route_handlers() == []
    await telemetry.stop()


async def test_traces_exporter_none_keeps_metrics_and_drops_traces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")

    telemetry = start(Settings(data_dir=tmp_path))

    assert isinstance(telemetry, OtelTelemetry)
    assert telemetry.tracer is None and telemetry.otlp is None
    assert telemetry.pings is not None
    await telemetry.stop()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_METRIC_EXPORT_INTERVAL": "0"}, "OTEL_METRIC_EXPORT_INTERVAL: '0' is"),
        ({"OTEL_METRIC_EXPORT_INTERVAL": "-5"}, "'-5' is not a number above 0"),
        ({"OTEL_BSP_SCHEDULE_DELAY": "soon"}, "OTEL_BSP_SCHEDULE_DELAY: 'soon'"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "inf"}, "OTEL_EXPORTER_OTLP_TIMEOUT"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "'0' is not a whole number above 0"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "1.5"}, "OTEL_BSP_MAX_QUEUE_SIZE: '1.5'"),
        (
            {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "100", "OTEL_BSP_MAX_QUEUE_SIZE": "10"},
            "100 is more than OTEL_BSP_MAX_QUEUE_SIZE (10) holds",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "is not an http://"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://[::1"}, "is not a URL"),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "https://"}, "with a host"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "api-key:S3CRET"}, "entry 1 is not"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "a=b,=S3CRET"}, "entry 2 is not"),
    ],
)
def test_an_otel_variable_the_sdk_would_trip_on_is_a_settings_error(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        check_otel_environment(env)

    assert message in str(refused.value)
    assert "S3CRET" not in str(refused.value)


def test_an_endpoint_password_is_not_repeated_in_the_error() -> None:
    with pytest.raises(SettingsError) as refused:
        check_otel_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://u:S3CRET@h"})

    assert "S3CRET" not in str(refused.value)


def test_good_otel_variables_or_a_disabled_sdk_pass() -> None:
    check_otel_environment(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=a%3Db, x-team = ops ,",
            "OTEL_METRIC_EXPORT_INTERVAL": "1500.5",
            "OTEL_BSP_MAX_QUEUE_SIZE": "4096",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1024",
        }
    )
    check_otel_environment(
        {"OTEL_SDK_DISABLED": "true", "OTEL_BSP_MAX_QUEUE_SIZE": "0"}
    )


def test_serve_refuses_a_bad_otel_variable_before_it_binds(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    run = runner(capsys, monkeypatch, tmp_path)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization:Bearer S3CRET")

    result = run("serve", "--port", "1")

    assert result.code == 2
    assert result.err.strip() == (
        "serverlord: error: OTEL_EXPORTER_OTLP_HEADERS: entry 1 is not written "
        "as key=value (entries are separated by commas)"
    )


@pytest.mark.parametrize(
    ("flag", "token"),
    [("--metrics-token", "t0k3n "), ("SERVERLORD_METRICS_TOKEN", "tökén")],
)
def test_a_metrics_token_no_client_could_send_is_refused_unshown(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    flag: str,
    token: str,
) -> None:
    run = runner(capsys, monkeypatch, tmp_path)
    args = ["serve", "--port", "1"]
    if flag.startswith("--"):
        args += [flag, token]
    else:
        monkeypatch.setenv(flag, token)

    result = run(*args)

    assert result.code == 2
    assert f"{flag}: not valid: a bearer token is ASCII letters" in result.err
    assert token.strip() not in result.err
