"""A system clock that jumps an hour, forward or back, through a live server.

For the whole test process ``jump`` moves the system clock (``time.time`` and
``time.time_ns``) as an NTP step or an operator's ``date -s`` would; the
monotonic and boot clocks go on untouched, as they do then. A check that keeps
pinging stays up, one that falls silent goes down once its period and grace
have passed, not an hour early or late, and the step is logged once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

import pytest

from serverlord.checks import DOWN, UP, Check
from serverlord.schedules import Schedule
from tests.conftest import Live

HOUR = 3600.0
PERIOD = 2.0
GRACE = 1.0
JUMPS = [pytest.param(HOUR, id="forward"), pytest.param(-HOUR, id="back")]


async def short_check(live: Live) -> Check:
    check = Check(
        id=str(uuid.uuid4()),
        name="every two seconds",
        created=time.time(),
        schedule=Schedule.simple(PERIOD),
        grace=GRACE,
    )
    await live.store.add_check(check)
    return check


async def status_of(live: Live, check: Check) -> str:
    stored = await live.store.get_check(check.id)
    assert stored is not None
    return stored.status


@pytest.mark.parametrize("seconds", JUMPS)
async def test_a_clock_jump_fires_no_false_alarm_on_a_check_that_keeps_pinging(
    live: Live, jump: Callable[[float], None], seconds: float
) -> None:
    check = await short_check(live)
    assert (await live.client.get(f"/ping/{check.id}")).status_code == 200

    jump(seconds)
    statuses = []
    loop = asyncio.get_running_loop()
    until = loop.time() + 3 * (PERIOD + GRACE)
    while loop.time() < until:
        await asyncio.sleep(PERIOD / 2)
        assert (await live.client.get(f"/ping/{check.id}")).status_code == 200
        statuses.append(await status_of(live, check))

    flips = await live.store.recent_flips(check.id, 10)
    assert set(statuses) == {UP}
    assert [flip.new_status for flip in flips] == [UP]


@pytest.mark.parametrize("seconds", JUMPS)
async def test_a_clock_jump_delays_no_real_alarm_by_the_size_of_the_jump(
    live: Live, jump: Callable[[float], None], seconds: float
) -> None:
    check = await short_check(live)
    loop = asyncio.get_running_loop()
    sent = loop.time()
    assert (await live.client.get(f"/ping/{check.id}")).status_code == 200

    jump(seconds)
    while await status_of(live, check) != DOWN:
        # An hour's delay would be a failure long before this gives up.
        assert loop.time() - sent < 10 * (PERIOD + GRACE), "no alarm came"
        await asyncio.sleep(0.05)
    down_after = loop.time() - sent

    # Not before its period and grace have passed on the monotonic clock.
    assert down_after >= PERIOD + GRACE
    flips = await live.store.recent_flips(check.id, 10)
    assert [flip.new_status for flip in flips] == [DOWN, UP]


async def test_a_clock_step_is_logged_once_with_its_size(
    live: Live, jump: Callable[[float], None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)

    live.server.watch_clock()
    jump(-HOUR)
    for _ in range(3):
        live.server.watch_clock()

    lines = [
        record.getMessage()
        for record in caplog.records
        if getattr(record, "action", None) == "clock_stepped"
    ]
    assert len(lines) == 1
    assert "moved by -3600 s" in lines[0]
