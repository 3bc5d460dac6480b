"""Checks read by id on the SQLite writer, for a run of pings or a sweep."""

from __future__ import annotations

import json
import sqlite3

from serverlord.checks import Check
from serverlord.store.queries import load_queries
from serverlord.store.rows import check_from_row

Q = load_queries("sqlite")


def read_checks(conn: sqlite3.Connection, check_ids: list[str]) -> dict[str, Check]:
    """The checks of these ids that exist, by id, read with one query."""
    # sqlite3.Row finds a column by comparing names one by one: for a check's
    # thirty columns that cost more than the rest of reading it. Plain tuples
    # zipped with the names once per query make the same lookups dict ones.
    cursor = conn.cursor()
    cursor.row_factory = None
    cursor.execute(Q["get_checks"], (json.dumps(check_ids),))
    names = [column[0] for column in cursor.description]
    rows = (dict(zip(names, values, strict=True)) for values in cursor)
    checks = (check_from_row(row) for row in rows)
    return {check.id: check for check in checks}
