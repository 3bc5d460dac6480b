"""How flips reach the log: a line each, or a summary when a sweep flips many."""

from __future__ import annotations

import logging
import uuid

import pytest

from serverlord.checks import DOWN, MISSED, UP, Flip
from serverlord.server import FLIPS_LOGGED_EACH, log_flips


def flips(count: int) -> list[Flip]:
    return [
        Flip(
            check_id=str(uuid.uuid4()),
            shard=1,
            at=100.0,
            detected=100.01,
            old_status=UP,
            new_status=DOWN,
            reason=MISSED,
            id=n,
        )
        for n in range(count)
    ]


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "serverlord.server" and r.levelno == level
    ]


def test_a_few_flips_get_a_line_each_with_their_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="serverlord.server")
    few = flips(FLIPS_LOGGED_EACH)

    log_flips(few)

    lines = records(caplog, logging.INFO)
    assert [r.__dict__["check_id"] for r in lines] == [f.check_id for f in few]
    assert {r.__dict__["action"] for r in lines} == {"flip"}
    assert [r.__dict__["flip_id"] for r in lines] == [f.id for f in few]


def test_a_wave_gets_one_summary_line_and_each_flip_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="serverlord.server")
    wave = flips(FLIPS_LOGGED_EACH + 1)
    wave[0].new_status, wave[0].old_status = UP, DOWN

    log_flips(wave)

    (summary,) = records(caplog, logging.INFO)
    assert summary.getMessage() == (
        f"{len(wave)} checks changed status at once: {len(wave) - 1} down, 1 up"
    )
    assert summary.__dict__["action"] == "flips"
    assert summary.__dict__["count"] == len(wave)
    assert (
        summary.__dict__["check_ids"] == [f.check_id for f in wave][:FLIPS_LOGGED_EACH]
    )
    each = records(caplog, logging.DEBUG)
    assert [r.__dict__["check_id"] for r in each] == [f.check_id for f in wave]
