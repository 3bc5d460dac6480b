"""The server's wall clock: UTC seconds that a step of the system clock does
not move.

It is read from the system clock once, when the process starts, and from then
on advanced by CLOCK_BOOTTIME, which NTP may slow down or speed up a little but
never steps, and which goes on counting while the machine is suspended. A step
of the system clock (an NTP correction, ``date -s``) therefore changes neither
the times stored for pings nor the deadlines computed from them: a check that
keeps pinging is not declared down, and one that stopped is not given an
extra hour. The step is logged; a restart adopts the new system time.
"""

from __future__ import annotations

import time

_TICKS = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
_OFFSET = time.time() - time.clock_gettime(_TICKS)

STEP_TOLERANCE = 1.0
"""Seconds the system clock may drift from this one before it counts as a step."""


def now() -> float:
    """Seconds since the epoch, UTC, on the clock this process started with."""
    return time.clock_gettime(_TICKS) + _OFFSET


def step() -> float:
    """Seconds the system clock has been moved since this process started."""
    return time.time() - now()
