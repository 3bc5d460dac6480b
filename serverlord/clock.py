"""The server's wall clock: UTC seconds, as the system clock tells them.

Every process of a deployment, and every node, reads the system clock that NTP
keeps right, so the times they store agree. What a step of that clock (an NTP
correction, ``date -s``) must not do is fire a false alarm or hold back a real
one, so timers wait on the monotonic clock: a deadline becomes "so many
seconds from now" when it is set. Two cases remain, and this module keeps what
they need:

- a deadline set before a step forward and read back from the store after it
  (another process edited the check, a shard changed hands) lies in the time
  the clock jumped over: ``moved_on`` adds the jump, so that it falls due after
  the time it had left, not at once;
- a deadline the sweeper timed on the monotonic clock counts as passed even
  when a step back put the system clock behind it (the store checks that).

``observe`` notices a step by comparing the system clock with the boot clock,
which NTP slows or speeds a little but never steps.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

_TICKS = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
_OFFSET = time.time() - time.clock_gettime(_TICKS)

STEP_TOLERANCE = 1.0
"""Seconds the system clock may drift from the boot clock before it counts as
a step."""
STEPS_KEPT = 32


@dataclass(frozen=True, slots=True)
class Skipped:
    """Times [start, end) a step forward of so many seconds jumped over."""

    start: float
    end: float
    seconds: float


_moved = 0.0
"""How far the system clock had moved against the boot clock when last seen."""
_highest = time.time()
"""The latest time the system clock was seen to show."""
_skipped: tuple[Skipped, ...] = ()
"""Replaced whole, never changed in place: the store's writer thread reads it."""


def now() -> float:
    """Seconds since the epoch, UTC."""
    return time.time()


def observe() -> float:
    """Seconds the system clock was stepped since the last call (0.0 if not).

    Call it on the event loop before trusting stored times against ``now``.
    A step is logged once, by the call that sees it.
    """
    global _moved, _skipped, _highest
    at = now()
    moved = at - time.clock_gettime(_TICKS) - _OFFSET - _moved
    highest, _highest = _highest, max(_highest, at)
    if abs(moved) <= STEP_TOLERANCE:
        return 0.0
    _moved += moved
    log.warning(
        "the system clock moved by %+.0f s; deadlines already set keep the "
        "time they had left",
        moved,
        extra={"action": "clock_stepped", "seconds": round(moved)},
    )
    if moved > 0:
        # A time the clock showed before (it is back from a step back) was
        # lived then, not skipped.
        gap = Skipped(max(at - moved, highest), at, moved)
        _skipped = (*_skipped[-(STEPS_KEPT - 1) :], gap)
    else:
        # Times from here on will be lived again: they are no longer skipped.
        _skipped = tuple(
            Skipped(gap.start, min(gap.end, at), gap.seconds)
            for gap in _skipped
            if gap.start < at
        )
    return moved


def moved_on(at: float) -> float:
    """A stored time, moved on by the steps forward that jumped over it."""
    for gap in _skipped:
        if gap.start <= at < gap.end:
            at += gap.seconds
    return at
