"""serverlord.clock: the system clock's time, and the steps it takes.

The system clock is replaced by one the test moves, while the boot clock goes
on untouched, as it does when NTP or ``date -s`` steps the time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from serverlord import clock

HOUR = 3600.0


@pytest.fixture
def jump(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Move this process's system clock by so many seconds from now on.

    The clock, and what serverlord's clock made of its steps, are put back
    afterwards: the next test starts from the real time, with no step seen.
    """
    clock.observe()
    for name in ("_moved", "_skipped", "_highest"):
        monkeypatch.setattr(clock, name, getattr(clock, name))
    real_time = time.time
    offset = [0.0]
    monkeypatch.setattr(time, "time", lambda: real_time() + offset[0])

    def move(seconds: float) -> None:
        offset[0] += seconds

    return move


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
