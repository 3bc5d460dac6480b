"""serverlord.clock: the system clock's time, and the steps it takes, and what
the store and the status shown make of deadlines across such steps.

The system clock is replaced by one the test moves, while the boot clock goes
on untouched, as it does when NTP or ``date -s`` steps the time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from serverlord import clock
from serverlord.checks import DOWN, GRACE, UP, Check, status_at
from serverlord.pings import START, SUCCESS_KIND, Ping, apply_ping
from serverlord.schedules import Schedule
from serverlord.store import writes
from serverlord.store.base import Due

HOUR = 3600.0


def test_it_tells_the_system_time() -> None:
    assert abs(clock.now() - time.time()) < 0.01


def test_no_step_is_seen_while_the_clock_runs_on(
    jump: Callable[[float], None],
) -> None:
    jump(0.5)  # within what NTP's slewing may add up to
    assert clock.observe() == 0.0


def test_a_step_is_seen_once_with_its_size(jump: Callable[[float], None]) -> None:
    jump(HOUR)
    assert clock.observe() == pytest.approx(HOUR, abs=0.1)
    assert clock.observe() == 0.0


def test_a_time_jumped_over_moves_on_by_the_jump(
    jump: Callable[[float], None],
) -> None:
    before = clock.now()
    deadline = before + 60

    jump(HOUR)
    clock.observe()

    assert clock.moved_on(deadline) == pytest.approx(deadline + HOUR, abs=0.1)
    # Times before the jump, and after where it landed, stay as they are.
    assert clock.moved_on(before - 60) == before - 60
    later = clock.now() + 60
    assert clock.moved_on(later) == later


def test_a_step_back_lives_through_skipped_times_again(
    jump: Callable[[float], None],
) -> None:
    deadline = clock.now() + 60
    jump(HOUR)
    clock.observe()
    jump(-HOUR)
    clock.observe()

    assert clock.moved_on(deadline) == deadline


def test_a_step_back_is_seen_and_skips_nothing(
    jump: Callable[[float], None],
) -> None:
    deadline = clock.now() + 60
    jump(-HOUR)

    assert clock.observe() == pytest.approx(-HOUR, abs=0.1)
    assert clock.moved_on(deadline) == deadline


def test_a_step_forward_back_to_times_shown_before_skips_none_of_them(
    jump: Callable[[float], None],
) -> None:
    shown = clock.now() - 60
    jump(-HOUR)
    clock.observe()
    jump(HOUR)
    clock.observe()

    assert clock.moved_on(shown) == shown


def daily_check(last_ping: float) -> Check:
    check = Check(
        id=str(uuid.uuid4()),
        name="job",
        created=last_ping - 100,
        schedule=Schedule.simple(60.0),
        grace=60.0,
    )
    check.status = UP
    check.last_ping = last_ping
    return check


def test_a_deadline_timed_across_a_step_forward_has_passed_after_a_step_back(
    jump: Callable[[float], None],
) -> None:
    # Due in 30 s; the clock is pushed an hour ahead, then put back a little
    # further than it was pushed, and the sweeper's timer runs out.
    check = daily_check(clock.now() - 90)
    jump(HOUR)
    clock.observe()
    timed = writes.next_deadline(check)
    jump(-HOUR - 120)
    clock.observe()
    jump(30)

    assert writes.confirm_due(check, Due(check.id, seen=timed), clock.now())


def test_a_confirmation_asked_for_judges_by_the_clock_and_its_steps(
    jump: Callable[[float], None],
) -> None:
    # Another process edited the check: the sweeper asks the store to
    # confirm it, timing no deadline. 30 s are left, across a step forward.
    check = daily_check(clock.now() - 90)
    jump(HOUR)
    clock.observe()

    assert writes.confirm_due(check, Due(check.id), clock.now()) is None
    assert writes.next_deadline(check) == pytest.approx(clock.now() + 30, abs=1)


def test_after_a_step_forward_people_see_the_status_the_sweeper_will_decide(
    jump: Callable[[float], None],
) -> None:
    # Late in 50 s, down in 110 s: so it stays across the step.
    check = daily_check(clock.now() - 10)
    jump(HOUR)
    clock.observe()

    assert status_at(check, clock.now()) == UP
    assert status_at(check, clock.now() + 60) == GRACE
    assert status_at(check, clock.now() + 120) == DOWN


def test_a_run_across_a_step_back_lasts_no_less_than_nothing(
    jump: Callable[[float], None],
) -> None:
    check = daily_check(clock.now() - 10)
    apply_ping(check, Ping(check_id=check.id, received=clock.now(), kind=START))
    jump(-HOUR)
    done = Ping(check_id=check.id, received=clock.now(), kind=SUCCESS_KIND)
    apply_ping(check, done)

    assert done.duration == 0.0
