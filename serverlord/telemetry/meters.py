"""Measurements taken on the hot paths: each ping, group commit and flip.

The SDK's synchronous instruments cost ~9 µs per counter add and ~11 µs per
histogram record on this kind of machine, most of a ping's budget for
telemetry. These tallies cost well under a microsecond: a dict increment and
a bisect into fixed buckets. The SDK reads them when it collects (see
``otel``): the counts through an asynchronous counter, the histograms as data
points added to what the SDK collected, so both exporters see them.

A tally is written by one thread (the event loop, or the SQLite writer) and
read by others; a reader copies each series first and derives the count from
its buckets, so a histogram it reports is always whole.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass

from serverlord.store.base import CommitObserver

PING_MS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500, 5000)
"""Buckets of ping handling time: ~0.2 ms idle, tens of ms under full load."""
COMMIT_MS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 5000)
"""Buckets of the time one group commit takes, fsync included."""
BATCH_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
"""Buckets of operations per group commit (a batch holds at most 2000)."""

_RESULTS = {
    200: "ok",
    201: "created",
    400: "bad_request",
    404: "not_found",
    409: "ambiguous",
    413: "too_large",
    503: "unavailable",
}
_KINDS: dict[str | None, str] = {
    None: "success",
    "": "success",
    "start": "start",
    "fail": "fail",
    "log": "log",
}


def ping_kind(suffix: str | None) -> str:
    """The kind a ping URL's last segment names: an exit status is a success
    or a failure; anything else is ``unknown``."""
    kind = _KINDS.get(suffix)
    if kind is not None:
        return kind
    if suffix is not None and suffix.isascii() and suffix.isdigit():
        # The ping route refuses exit statuses above 255 itself.
        return "success" if suffix.strip("0") == "" else "fail"
    return "unknown"


def ping_result(status: int) -> str:
    return _RESULTS.get(status, "error")


@dataclass(slots=True, frozen=True)
class Series:
    """One histogram series as the SDK's data points need it."""

    key: tuple[str, ...]
    bucket_counts: list[int]
    count: int
    sum: float
    min: float
    max: float


class Tally:
    """A cumulative histogram with fixed bounds, per tuple of label values."""

    def __init__(self, bounds: tuple[float, ...], labels: tuple[str, ...]) -> None:
        self.bounds = bounds
        self.labels = labels
        self.started_ns = time.time_ns()
        # Per series: one count per bucket (the last is +Inf), then the sum,
        # the smallest and the largest value.
        self._series: dict[tuple[str, ...], list[float]] = {}

    def record(self, value: float, key: tuple[str, ...]) -> None:
        series = self._series.get(key)
        if series is None:
            series = [0] * (len(self.bounds) + 1) + [0.0, value, value]
            self._series[key] = series
        series[bisect_left(self.bounds, value)] += 1
        series[-3] += value
        if value < series[-2]:
            series[-2] = value
        elif value > series[-1]:
            series[-1] = value

    def series(self) -> Iterator[Series]:
        for key, values in list(self._series.items()):
            copy = list(values)
            buckets = [int(n) for n in copy[:-3]]
            yield Series(key, buckets, sum(buckets), copy[-3], copy[-2], copy[-1])


class PingMeter:
    """Counts pings by kind and result and times their handling."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.duration = Tally(PING_MS, ("result",))

    def ping(self, suffix: str | None, status: int, started: float) -> None:
        """One ping answered with ``status``; ``started`` is its perf_counter."""
        elapsed = (time.perf_counter() - started) * 1000.0
        result = _RESULTS.get(status, "error")
        key = (ping_kind(suffix), result)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.duration.record(elapsed, (result,))


class FlipMeter:
    """Counts flips by status and reason and times their detection lag.

    A wave of checks falling due together flips thousands in one sweep: at
    the SDK's ~20 µs per flip this took a fifth of the process's time.
    """

    def __init__(self, lag_bounds: tuple[float, ...], lagging: tuple[str, ...]) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.lag = Tally(lag_bounds, ("reason",))
        self._lagging = lagging

    def flip(self, status: str, reason: str, at: float, now: float) -> None:
        """One flip stored at ``now`` whose check changed at ``at``."""
        key = (status, reason)
        self.counts[key] = self.counts.get(key, 0) + 1
        if reason in self._lagging:
            self.lag.record(max(0.0, now - at) * 1000.0, (reason,))


class CommitMeter:
    """Sizes and durations of one store's group commits."""

    def __init__(self) -> None:
        self.size = Tally(BATCH_SIZES, ("store", "result"))
        self.duration = Tally(COMMIT_MS, ("store", "result"))

    def observer(self, backend: str) -> CommitObserver:
        ok, failed = (backend, "ok"), (backend, "error")

        def committed(size: int, seconds: float, success: bool) -> None:
            key = ok if success else failed
            self.size.record(size, key)
            self.duration.record(seconds * 1000.0, key)

        return committed
