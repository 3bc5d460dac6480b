"""Checks read by id on the SQLite writer, for a run of pings or a sweep."""

from __future__ import annotations

import json
import sqlite3

from serverlord.checks import Check
from serverlord.store.queries import load_queries
from serverlord.store.rows import check_reader

Q = load_queries("sqlite")


def read_checks(conn: sqlite3.Connection, check_ids: list[str]) -> dict[str, Check]:
    """The checks of these ids that exist, by id, read with one query."""
    cursor = conn.cursor()
    cursor.row_factory = None  # plain tuples: sqlite3.Row costs more
    cursor.execute(Q["get_checks"], (json.dumps(check_ids),))
    read = check_reader([column[0] for column in cursor.description])
    checks = (read(values) for values in cursor)
    return {check.id: check for check in checks}


CACHED_CHECKS = 20_000
"""Checks the writer keeps between batches: about 17 MB (840 bytes each, measured
with tracemalloc for checks with a fixed period)."""


class CheckCache:
    """The checks the writer read lately, so that a check pinged often is not
    built from its row again on every ping.

    A kept check is used only while its row still has the same version and
    creation time: every statement that changes a check raises its version
    (another process's writes included), and a check deleted and made again
    is another row. Only the writer thread uses it. The operations that read
    through it change its checks in place as they write their rows; the
    writer forgets everything when a transaction is undone, and the oldest
    checks when there are more than ``size``.
    """

    def __init__(self, size: int = CACHED_CHECKS) -> None:
        self.size = size
        self._checks: dict[str, Check] = {}

    def read(
        self, conn: sqlite3.Connection, check_ids: list[str], keep: bool = True
    ) -> dict[str, Check]:
        """The checks of these ids that exist, as ``read_checks`` gives them.

        ``keep`` adds the checks that had to be read to the cache: pings
        keep theirs, a sweep of checks that went silent does not.
        """
        found = self._still_valid(conn, check_ids)
        missing = [check_id for check_id in check_ids if check_id not in found]
        if missing:
            fresh = read_checks(conn, missing)
            found.update(fresh)
            if keep:
                self._keep(fresh)
        return found

    def forget(self) -> None:
        self._checks.clear()

    def _still_valid(
        self, conn: sqlite3.Connection, check_ids: list[str]
    ) -> dict[str, Check]:
        known = [check_id for check_id in check_ids if check_id in self._checks]
        if not known:
            return {}
        found = {}
        rows = conn.execute(Q["check_versions"], (json.dumps(known),))
        for check_id, version, created in rows:
            check = self._checks[check_id]
            if check.version == version and check.created == created:
                found[check_id] = check
        return found

    def _keep(self, checks: dict[str, Check]) -> None:
        self._checks.update(checks)
        while len(self._checks) > self.size:
            del self._checks[next(iter(self._checks))]
