"""What scenarios share: reading flips back from the store, and the table."""

from __future__ import annotations

import sqlite3
from typing import Any

from serverlord.bench.target import Target


async def down_flips(target: Target, ids: list[str]) -> list[tuple[int, float, float]]:
    """(flip id, deadline, detected) of the down flips of these checks."""
    if target.database_url:
        import asyncpg

        pg = await asyncpg.connect(target.database_url)
        try:
            rows = await pg.fetch(
                "SELECT id, at, detected FROM flips"
                " WHERE new_status = 'down' AND check_id = ANY($1::text[])",
                ids,
            )
        finally:
            await pg.close()
        return [(int(r[0]), float(r[1]), float(r[2])) for r in rows]
    conn = sqlite3.connect(f"file:{target.sqlite_path}?mode=ro", uri=True)
    try:
        conn.execute("CREATE TEMP TABLE wanted (id TEXT PRIMARY KEY)")
        conn.executemany("INSERT INTO wanted VALUES (?)", [(i,) for i in ids])
        rows = conn.execute(
            "SELECT flips.id, at, detected FROM flips JOIN wanted"
            " ON flips.check_id = wanted.id WHERE new_status = 'down'"
        ).fetchall()
    finally:
        conn.close()
    return [(int(r[0]), float(r[1]), float(r[2])) for r in rows]


def table(title: str, rows: list[tuple[str, Any]]) -> str:
    """Two aligned columns under a title, numbers with thousands separators."""

    def text(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    width = max(len(label) for label, _ in rows)
    lines = [title, "-" * len(title)]
    lines += [f"{label.ljust(width)}  {text(value)}" for label, value in rows]
    return "\n".join(lines)
