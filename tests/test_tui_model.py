"""The TUI's plain parts, without Textual: rows, text, forms, metrics, settings."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from serverlord.cli import main
from serverlord.errors import UsageError
from serverlord.tui import metrics
from serverlord.tui.connection import Connection, resolve, save
from serverlord.tui.forms import check_form, form_values
from serverlord.tui.model import (
    CheckRow,
    ago,
    apply_flip,
    apply_ping,
    body_preview,
    countdown,
    counts,
    lateness,
    matches,
    row_from_api,
    schedule_words,
    short_duration,
    sort_key,
    sparkline,
    status_at,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()
KEY = "k" * 32


def row(**fields: object) -> CheckRow:
    data = {"uuid": "u1", "name": "backup", "status": "up", "timeout": 60.0}
    return row_from_api({**data, **fields})


def test_schedules_read_as_words() -> None:
    assert schedule_words(row(timeout=300.0)) == "every 5m"
    cron = row(schedule="0 3 * * *", tz="Europe/Riga")
    assert schedule_words(cron) == "cron 0 3 * * * Europe/Riga"
    assert schedule_words(row(schedule="Mon *-*-* 04:00")) == (
        "OnCalendar Mon *-*-* 04:00 UTC"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0123, "12ms"), (12.34, "12.3s"), (250, "4m10s"), (7530, "2h5m"),
     (90000 + 59, "1d1h")],
)  # fmt: skip
def test_durations_fit_a_narrow_column(seconds: float, text: str) -> None:
    assert short_duration(seconds) == text


def test_times_are_relative_to_the_clock() -> None:
    assert ago(None, NOW) == "never"
    assert ago(NOW - 45, NOW) == "45s ago"
    assert ago(NOW - 3 * 3600 - 5, NOW) == "3h ago"
    assert countdown(NOW + 252, NOW) == "in 4m12s"
    assert countdown(NOW - 30, NOW) == "overdue 30s"
    assert countdown(None, NOW) == "—"
    assert lateness(None) == "—"
    assert lateness(-3) == "on time"
    assert lateness(75) == "+1m15s"


def test_a_sparkline_scales_from_smallest_to_largest() -> None:
    assert sparkline([]) == ""
    assert sparkline([1, 2, 3, 8]) == "▁▂▃█"
    assert sparkline([5, 5]) == "▄▄"


def test_an_up_check_past_its_due_time_shows_grace() -> None:
    check = row(next_ping="2026-03-01T12:00:00+00:00")

    assert status_at(check, NOW - 1) == "up"
    assert status_at(check, NOW) == "grace"
    assert status_at(row(status="paused"), NOW) == "paused"


def test_a_ping_moves_the_due_time_and_says_how_late_it_came() -> None:
    check = row(next_ping="2026-03-01T12:00:00+00:00")

    apply_ping(check, {"type": "start", "date": "2026-03-01T12:00:30+00:00", "n": 4})
    assert check.status == "started"
    apply_ping(
        check,
        {"type": "success", "date": "2026-03-01T12:01:30+00:00", "n": 5,
         "duration": 60.0},
    )  # fmt: skip

    assert check.status == "up"
    assert check.late == 90
    assert check.next_ping == NOW + 90 + 60
    assert list(check.durations) == [60.0]
    assert check.n_pings == 5


def ended_run(check: CheckRow, kind: str, exit_status: int | None = None) -> str:
    apply_ping(check, {"type": "start", "date": "2026-03-01T12:00:00+00:00"})
    assert check.status == "started"
    apply_ping(
        check,
        {"type": kind, "date": "2026-03-01T12:00:05+00:00", "exitstatus": exit_status},
    )
    return check.status


def test_a_run_that_fails_ends_down_never_up() -> None:
    # The repro: down, then /start, then /1 (kind fail, exit status 1).
    assert ended_run(row(status="down"), "fail", 1) == "down"
    assert ended_run(row(status="down"), "fail") == "down"
    # With the default failure threshold (1) one failure turns an up check down.
    assert ended_run(row(status="up"), "fail", 1) == "down"
    assert ended_run(row(status="new"), "fail") == "down"
    # Under a higher threshold the server's streak decides: no guess, the status
    # stays as the server kept it until its flip event comes.
    assert ended_run(row(status="up", failure_threshold=3), "fail", 2) == "up"
    # A failure without a start is read the same way.
    check = row(status="down")
    apply_ping(check, {"type": "fail", "date": "2026-03-01T12:00:05+00:00"})
    assert check.status == "down"


def test_a_run_that_succeeds_ends_up_as_the_server_says() -> None:
    assert ended_run(row(status="down"), "success", 0) == "up"
    assert ended_run(row(status="new"), "success") == "up"
    # A down check needs recovery_threshold successes in a row: the flip says.
    assert ended_run(row(status="down", recovery_threshold=2), "success") == "down"
    check = row(status="down", recovery_threshold=2)
    ended_run(check, "success")
    apply_flip(check, {"new_status": "up"})
    assert check.status == "up"


def test_a_flip_sets_the_status() -> None:
    check = row()
    apply_flip(check, {"new_status": "down"})
    assert check.status == "down"


def test_the_filter_matches_name_tag_and_status_words() -> None:
    check = row(name="DB backup", tags="nightly prod")

    assert matches(check, "backup", NOW)
    assert matches(check, "night up", NOW)
    assert not matches(check, "down", NOW)
    # "up" is a status word: it does not match the "up" inside "backup".
    assert not matches(row(status="new", name="backup"), "up", NOW)


def test_sorts_and_counts() -> None:
    rows = [row(uuid="1", name="b", status="up"), row(uuid="2", name="a",
            status="down"), row(uuid="3", name="c", status="new")]  # fmt: skip

    by_status = sorted(rows, key=sort_key("status", NOW))
    assert [r.name for r in by_status] == ["a", "c", "b"]
    assert [r.name for r in sorted(rows, key=sort_key("name", NOW))] == ["a", "b", "c"]
    assert counts(rows, NOW) == {"down": 1, "new": 1, "up": 1}


def test_a_body_preview_is_safe_for_any_bytes() -> None:
    assert body_preview(b"ok") == "ok"
    assert body_preview(b"\x1b[2Jgone\r\n\xff\x00") == "\\x1b[2Jgone\\r\\n\\xff\\x00"
    assert body_preview("é".encode()) == "é"
    assert len(body_preview(b"x" * 500)) == 80


def test_metrics_give_pings_per_second_and_detection_lag() -> None:
    text = (
        "# TYPE serverlord_pings_total counter\n"
        'serverlord_pings_total{kind="success",result="ok"} 10\n'
        'serverlord_pings_total{kind="start",result="ok"} 5\n'
        'serverlord_detection_lag_milliseconds_sum{reason="missed"} 40.0\n'
        'serverlord_detection_lag_milliseconds_count{reason="missed"} 4\n'
    )
    first = metrics.parse(text, at=10.0)
    later = metrics.parse(text.replace("} 10", "} 30"), at=12.0)

    assert (first.pings, first.lag_sum, first.lag_count) == (15, 40, 4)
    assert metrics.rate(None, first) is None
    assert metrics.rate(first, later) == 10.0
    assert metrics.lag(first, later) == 10.0


def test_the_form_checks_each_field_with_the_servers_rules() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    wrong = check_form(
        {"name": "", "schedule": "61 * * * *", "tz": "Mars/Base", "grace": "0"}, now
    )
    assert set(wrong.problems) == {"name", "schedule", "tz", "grace"}
    assert wrong.problems["tz"] == '"Mars/Base" is not a known IANA time zone'
    assert wrong.zone == "UTC"  # the preview's zone when the field's is unknown

    cron = check_form(
        {"name": "r", "schedule": "0 3 * * *", "tz": "Europe/Riga", "grace": "1h",
         "max_runtime": "2h"}, now,
    )  # fmt: skip
    assert cron.ok
    assert cron.zone == "Europe/Riga"
    assert cron.fields == {"name": "r", "tags": "", "schedule": "0 3 * * *",
        "tz": "Europe/Riga", "grace": 3600.0, "max_runtime": 7200.0}  # fmt: skip
    assert cron.due[0] == datetime(2026, 3, 2, 1, 0, tzinfo=UTC)

    period = check_form({"name": "p", "schedule": "5m", "grace": "30s"}, now)
    assert period.fields["timeout"] == 300.0
    assert len(period.due) == 5


def test_the_form_starts_from_the_check() -> None:
    values = form_values({"name": "a", "timeout": 90.0, "grace": 60.0, "tags": "x"})
    assert values["schedule"] == "1m30s"
    assert values["grace"] == "1m"


def test_flags_win_over_environment_over_the_saved_file(tmp_path: Path) -> None:
    config = tmp_path / "tui.json"
    save(Connection("http://127.0.0.1:1", "s" * 32, "tok"), config)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

    saved = resolve(None, None, None, config, {})
    assert saved == Connection("http://127.0.0.1:1", "s" * 32, "tok")
    environ = {"SERVERLORD_URL": "http://127.0.0.1:2", "SERVERLORD_API_KEY": KEY}
    from_env = resolve(None, None, None, config, environ)
    assert (from_env.url, from_env.api_key) == ("http://127.0.0.1:2", KEY)
    flagged = resolve("http://127.0.0.1:3/", "f" * 32, None, config, environ)
    assert (flagged.url, flagged.api_key) == ("http://127.0.0.1:3", "f" * 32)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--api-key", KEY, "--url", "ftp://x"], "is not an http(s) URL"),
        (
            ["--api-key", KEY, "--url", "http://127.0.0.1:99999"],
            "the port of 'http://127.0.0.1:99999' is not a number from 1 to 65535",
        ),
        (["--api-key", KEY, "--url", "http://127.0.0.1:0"], "from 1 to 65535"),
        (["--api-key", KEY, "--url", "http://127.0.0.1:x/"], "from 1 to 65535"),
        (["--api-key", "short"], "an API key is 32 printable characters"),
        ([], "an API key is needed"),
        (["--api-key", KEY, "--config", "{dir}/bad.json"], "is not JSON"),
        (["--api-key", KEY, "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_input_to_tui_exits_2_with_a_precise_error(
    argv: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "bad.json").write_text("{nope")
    monkeypatch.delenv("SERVERLORD_API_KEY", raising=False)
    monkeypatch.delenv("SERVERLORD_URL", raising=False)
    args = [a.replace("{dir}", str(tmp_path)) for a in argv]
    if "--config" not in args:
        args += ["--config", str(tmp_path / "none.json")]

    with pytest.raises(SystemExit) as exited:
        main(["tui", *args])

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_tui_needs_a_terminal(tmp_path: Path) -> None:
    # pytest captures stdout: no terminal, a usage error rather than a hang.
    with pytest.raises(UsageError, match="tui needs a terminal"):
        from types import SimpleNamespace

        from serverlord.tui.command import run_tui

        run_tui(
            SimpleNamespace(url=None, api_key=KEY, metrics_token=None,
                config=tmp_path / "c.json", save=False, log_file=None),
            None,
        )  # fmt: skip
