"""The header's figures from the server's ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import math
from dataclasses import dataclass

PINGS = "serverlord_pings_total"
LAG = "serverlord_detection_lag_milliseconds"


@dataclass(frozen=True)
class Sample:
    """The counters of one scrape, at ``at`` (monotonic seconds)."""

    at: float
    pings: float
    lag_sum: float
    lag_count: float


def parse(text: str, at: float) -> Sample:
    """Sum the ping counter and the lag histogram over all their labels."""
    pings = lag_sum = lag_count = 0.0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition("{") if "{" in line else line.partition(" ")
        value_text = line.rsplit("}", 1)[-1].split() if "{" in line else rest.split()
        if not value_text:
            continue
        try:
            value = float(value_text[0])
        except ValueError:
            continue
        if not math.isfinite(value):
            continue
        if name == PINGS:
            pings += value
        elif name == LAG + "_sum":
            lag_sum += value
        elif name == LAG + "_count":
            lag_count += value
    return Sample(at, pings, lag_sum, lag_count)


def rate(before: Sample | None, after: Sample) -> float | None:
    """Pings per second between two scrapes; None without an earlier one."""
    if before is None or after.at <= before.at or after.pings < before.pings:
        return None
    return (after.pings - before.pings) / (after.at - before.at)


def lag(before: Sample | None, after: Sample) -> float | None:
    """Mean detection lag in milliseconds of the flips between two scrapes,
    else over the server's whole life; None if it never detected one."""
    if before is not None and after.lag_count > before.lag_count:
        return (after.lag_sum - before.lag_sum) / (after.lag_count - before.lag_count)
    if after.lag_count:
        return after.lag_sum / after.lag_count
    return None
