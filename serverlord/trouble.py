"""Failures that repeat while something is away, logged when they start and end.

While the database is down every heartbeat, sweep and batch of pings fails;
one line when the trouble starts and one when it ends say as much as a line
for each of them, without burying everything else.
"""

from __future__ import annotations

import logging


class Trouble:
    """One kind of recurring failure, such as "heartbeat not stored"."""

    def __init__(self, logger: logging.Logger, what: str, action: str) -> None:
        self.logger = logger
        self.what = what
        self.action = action
        self.failures = 0

    def failed(self, exc: BaseException, level: int = logging.WARNING) -> None:
        self.failures += 1
        if self.failures == 1:
            self.logger.log(
                level,
                "%s: %s (said once until it works again)",
                self.what,
                exc or type(exc).__name__,
                extra={"action": self.action},
            )

    def ok(self) -> None:
        if self.failures:
            self.logger.info(
                "%s: works again after %d failures",
                self.what,
                self.failures,
                extra={"action": f"{self.action}_recovered", "count": self.failures},
            )
            self.failures = 0
