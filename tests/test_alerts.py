"""What alerts say: titles and bodies of down, up, reminder and test messages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from serverlord.alerts import EXCERPT_CHARS, compose, compose_reminder, compose_test
from serverlord.checks import (
    EXIT_STATUS,
    FAILURE,
    MISSED,
    MISSED_OFFLINE,
    RUN_TOO_LONG,
    SUCCESS,
    Check,
    Flip,
)
from serverlord.schedules import Schedule

CHECK_ID = str(uuid.UUID(int=42))
LAST_PING = datetime(2024, 5, 1, 3, 0, 12, tzinfo=UTC).timestamp()
DEADLINE = datetime(2024, 5, 2, 4, 0, tzinfo=UTC).timestamp()


def nightly(name: str = "nightly-backup") -> Check:
    return Check(
        id=CHECK_ID,
        name=name,
        schedule=Schedule.cron("0 3 * * *", "Europe/Paris"),
        grace=3600.0,
        status="down",
        last_ping=LAST_PING,
    )


def down_flip(
    reason: str = MISSED,
    exit_status: int | None = None,
    offline_from: float | None = None,
    offline_until: float | None = None,
) -> Flip:
    return Flip(
        CHECK_ID,
        0,
        DEADLINE,
        DEADLINE + 0.4,
        "up",
        "down",
        reason,
        exit_status=exit_status,
        offline_from=offline_from,
        offline_until=offline_until,
        id=123,
    )


def up_flip(at: float) -> Flip:
    return Flip(CHECK_ID, 0, at, at, "down", "up", SUCCESS, id=124)


def body_lines(body: str) -> dict[str, str]:
    pairs = (line.split(": ", 1) for line in body.splitlines() if ": " in line)
    return {label: value for label, value in pairs}


def assert_printable(text: str, allowed: str = "\n\t") -> None:
    assert all(ch.isprintable() or ch in allowed for ch in text), repr(text)


def test_a_down_alert_says_what_why_when_and_which_flip() -> None:
    title, body = compose(nightly(), down_flip(), b"", DEADLINE + 180)

    assert title == "DOWN: nightly-backup (missed deadline)"
    lines = body_lines(body)
    assert lines["Check"] == "nightly-backup"
    assert lines["Status"] == "down (was up)"
    assert lines["Reason"] == "missed deadline"
    assert lines["Down since"] == "2024-05-02T04:00:00+00:00"
    assert (
        lines["Last ping"]
        == "2024-05-01T03:00:12+00:00 (1d1h before the alert was raised)"
    )
    assert lines["Schedule"] == "cron 0 3 * * * Europe/Paris, grace 1h"
    assert lines["Flip"] == "#123"
    assert lines["Check id"] == CHECK_ID
    assert "Last ping body: (empty)" in body


def test_each_reason_reads_in_words_in_the_title() -> None:
    cases = [
        (down_flip(FAILURE), "DOWN: nightly-backup (failure ping)"),
        (down_flip(EXIT_STATUS, exit_status=3), "DOWN: nightly-backup (exit status 3)"),
        (down_flip(RUN_TOO_LONG), "DOWN: nightly-backup (run too long)"),
    ]
    for flip, expected in cases:
        assert compose(nightly(), flip, None, DEADLINE)[0] == expected


def test_a_miss_while_offline_gives_the_window_in_the_body_only() -> None:
    offline_from = DEADLINE - 7200
    flip = down_flip(MISSED_OFFLINE, offline_from=offline_from, offline_until=DEADLINE)

    title, body = compose(nightly(), flip, None, DEADLINE + 5)

    assert title == "DOWN: nightly-backup (missed while serverlord was offline)"
    assert body_lines(body)["Reason"] == (
        "missed while serverlord was offline "
        "from 2024-05-02T02:00:00+00:00 to 2024-05-02T04:00:00+00:00"
    )


def test_an_up_alert_says_how_long_the_check_was_down() -> None:
    check = nightly()
    check.down_since = DEADLINE
    check.last_ping = DEADLINE + 600

    title, body = compose(check, up_flip(DEADLINE + 600), b"done", DEADLINE + 601)

    assert title == "UP: nightly-backup after 10m down"
    lines = body_lines(body)
    assert lines["Status"] == "up (was down)"
    assert lines["Reason"] == "success ping"
    assert lines["Down for"] == "10m (since 2024-05-02T04:00:00+00:00)"
    assert lines["Flip"] == "#124"
    assert body.endswith("Last ping body:\n  done")


def test_a_long_downtime_is_rounded_to_what_people_read() -> None:
    check = nightly()
    check.down_since = DEADLINE
    at = DEADLINE + 2 * 86400 + 4 * 3600 + 17 * 60 + 9

    assert compose(check, up_flip(at), None, at)[0] == (
        "UP: nightly-backup after 2d4h down"
    )


def test_an_up_alert_without_a_known_downtime_just_says_up() -> None:
    check = nightly()
    check.down_since = None

    title, body = compose(check, up_flip(DEADLINE), None, DEADLINE)

    assert title == "UP: nightly-backup"
    assert "Down for" not in body


def test_a_reminder_says_the_check_is_still_down_and_for_how_long() -> None:
    check = nightly()
    check.reminder_every = 3600.0

    title, body = compose_reminder(check, DEADLINE, b"disk full", DEADLINE + 7260)

    assert title == "STILL DOWN: nightly-backup (down for 2h1m)"
    lines = body_lines(body)
    assert lines["Down for"] == "2h1m (since 2024-05-02T04:00:00+00:00)"
    assert lines["Reminders"] == "every 1h while down"
    assert "  disk full" in body


def test_a_test_message_names_its_channel() -> None:
    title, body = compose_test("ops chat", DEADLINE)

    assert title == "TEST: serverlord to ops chat"
    assert body_lines(body)["Sent"] == "2024-05-02T04:00:00+00:00"


def test_a_body_that_is_not_utf8_is_shown_with_replacement_characters() -> None:
    _, body = compose(nightly(), down_flip(), b"caf\xe9 \xff\xfe ok", DEADLINE)

    assert "  caf\ufffd \ufffd\ufffd ok" in body


def test_a_huge_body_is_cut_to_a_short_excerpt() -> None:
    huge = b"A" * 10_000_000

    _, body = compose(nightly(), down_flip(), huge, DEADLINE)

    excerpt = body.split("Last ping body:\n", 1)[1]
    quoted = excerpt.splitlines()
    assert quoted[0] == "  " + "A" * EXCERPT_CHARS
    assert quoted[1] == "  ... (10000000 bytes in all)"
    assert len(body) < 1000


def test_a_body_of_many_lines_is_cut_to_a_few() -> None:
    _, body = compose(nightly(), down_flip(), b"x\n" * 90, DEADLINE)

    assert body.count("\n  x") == 10
    assert "... (180 bytes in all)" in body


def test_control_characters_in_a_body_are_shown_not_sent() -> None:
    raw = b"\x1b[31mred\x1b[0m\x00bell\x07\r\nnext\rline"

    _, body = compose(nightly(), down_flip(), raw, DEADLINE)

    assert "  \\x1b[31mred\\x1b[0m\\x00bell\\x07\n  next\\x0dline" in body
    assert_printable(body)


def test_a_cut_never_leaves_half_an_escape() -> None:
    raw = b"a" * (EXCERPT_CHARS - 2) + b"\x1b" * 10

    _, body = compose(nightly(), down_flip(), raw, DEADLINE)

    last = body.split("Last ping body:\n", 1)[1].splitlines()[0]
    assert last == "  " + "a" * (EXCERPT_CHARS - 2)


def test_odd_names_stay_on_one_printable_line() -> None:
    name = "backup\n\tof /srv \x1b[2J \u202egnp.exe \U0001f4be \ud800 " + "x" * 500
    flip = down_flip()

    title, body = compose(nightly(name), flip, None, DEADLINE)

    assert_printable(title, allowed="")
    assert_printable(body)
    assert title.startswith(
        "DOWN: backup\\x0a of /srv \\x1b[2J \\x202egnp.exe \U0001f4be ?"
    )
    assert len(title) < 140
    assert body_lines(body)["Check"].endswith("...")


def test_an_empty_name_falls_back_to_the_check_id() -> None:
    title, _ = compose(nightly(""), down_flip(), None, DEADLINE)

    assert title == f"DOWN: {CHECK_ID} (missed deadline)"


@given(name=st.text(), body=st.binary(max_size=3000), channel=st.text())
@example(name="\t\r\n\x00", body=b"\t\r\n\x00\xff" * 300, channel="\n")
def test_any_name_and_body_compose_without_raising(
    name: str, body: bytes, channel: str
) -> None:
    check = nightly(name)
    check.down_since = DEADLINE - 60

    for title, text in (
        compose(check, down_flip(), body, DEADLINE),
        compose(check, up_flip(DEADLINE), body, DEADLINE),
        compose_reminder(check, DEADLINE - 60, body, DEADLINE),
        compose_test(channel, DEADLINE),
    ):
        assert_printable(title, allowed="")
        assert_printable(text)
