"""A database's schema as plain text, one line per fact, to compare and commit.

Tables in name order; for each its columns in their order (type, NOT NULL,
default), primary key, foreign keys, unique and check constraints, and indexes
(partial ones with their condition; a key's own index goes with its key). The
text leaves out what a database keeps for itself (SQLite's ``sqlite_*`` tables)
and ends with the migrations the database has had. ``tests/schema/<backend>.txt``
holds the committed one.
"""

from __future__ import annotations

import re
import sqlite3

import asyncpg


async def describe_postgres(conn: asyncpg.Connection) -> str:
    lines = []
    tables = await conn.fetch(
        "SELECT oid, relname FROM pg_class "
        "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') "
        "ORDER BY relname"
    )
    for table in tables:
        lines.append(f"table {table['relname']}")
        columns = await conn.fetch(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, "
            "a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS dflt "
            "FROM pg_attribute a LEFT JOIN pg_attrdef d "
            "ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            table["oid"],
        )
        for column in columns:
            lines.append(
                _column(
                    column["attname"],
                    column["type"],
                    column["attnotnull"],
                    column["dflt"],
                )
            )
        constraints = await conn.fetch(
            "SELECT conname, pg_get_constraintdef(oid) AS definition "
            "FROM pg_constraint WHERE conrelid = $1 ORDER BY contype DESC, conname",
            table["oid"],
        )
        for constraint in constraints:
            lines.append(
                f"  constraint {constraint['conname']}: {constraint['definition']}"
            )
        # Indexes of their own: a key's index is its constraint's.
        indexes = await conn.fetch(
            "SELECT c.relname AS indexname, pg_get_indexdef(i.indexrelid) AS indexdef "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = $1 AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint WHERE conindid = i.indexrelid) "
            "ORDER BY c.relname",
            table["oid"],
        )
        for index in indexes:
            definition = index["indexdef"].replace("public.", "")
            lines.append(f"  index {index['indexname']}: {definition}")
    has_migrations = any(t["relname"] == "schema_migrations" for t in tables)
    numbers = []
    if has_migrations:
        numbers = [
            row[0]
            for row in await conn.fetch(
                "SELECT number FROM schema_migrations ORDER BY number"
            )
        ]
    lines.append(f"migrations {_numbers(numbers)}")
    return "\n".join(lines) + "\n"


def describe_sqlite(conn: sqlite3.Connection) -> str:
    lines = []
    tables = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    for name, sql in tables:
        options = [
            option
            for option in ("WITHOUT ROWID", "AUTOINCREMENT")
            if option in " ".join(sql.upper().split())
        ]
        lines.append(" ".join([f"table {name}", *(o.lower() for o in options)]))
        columns = conn.execute(f'PRAGMA table_info("{name}")').fetchall()
        for _, column, kind, notnull, default, _ in columns:
            lines.append(_column(column, kind, bool(notnull), default))
        key = [row[1] for row in sorted(columns, key=lambda row: row[5]) if row[5]]
        if key:
            lines.append(f"  primary key ({', '.join(key)})")
        lines.extend(_sqlite_foreign_keys(conn, name))
        lines.extend(_sqlite_indexes(conn, name))
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    lines.append(f"migrations {_numbers(list(range(1, version + 1)))}")
    return "\n".join(lines) + "\n"


def _sqlite_foreign_keys(conn: sqlite3.Connection, table: str) -> list[str]:
    keys: dict[int, list[tuple[str, str, str, str]]] = {}
    for row in conn.execute(f'PRAGMA foreign_key_list("{table}")'):
        key_id, _, other, here, there, _, on_delete, _ = row
        keys.setdefault(key_id, []).append((other, here, there, on_delete))
    lines = []
    for parts in keys.values():
        other, on_delete = parts[0][0], parts[0][3]
        here = ", ".join(part[1] for part in parts)
        there = ", ".join(part[2] for part in parts)
        lines.append(
            f"  foreign key ({here}) references {other} ({there}) "
            f"on delete {on_delete.lower()}"
        )
    return sorted(lines)


def _sqlite_indexes(conn: sqlite3.Connection, table: str) -> list[str]:
    lines = []
    indexes = conn.execute(f'PRAGMA index_list("{table}")').fetchall()
    for _, name, unique, origin, partial in sorted(indexes, key=lambda row: row[1]):
        if origin == "pk":
            continue  # the primary key's own index
        columns = [
            row[2] for row in conn.execute(f'PRAGMA index_info("{name}")').fetchall()
        ]
        text = f"  index {name}: {'unique ' if unique else ''}({', '.join(columns)})"
        if partial:
            [(sql,)] = conn.execute(
                "SELECT sql FROM sqlite_master WHERE name = ?", (name,)
            ).fetchall()
            condition = re.split(r"\bWHERE\b", sql, maxsplit=1, flags=re.I)[1]
            text += f" where {' '.join(condition.split())}"
        lines.append(text)
    return lines


def _column(name: str, kind: str, notnull: bool, default: str | None) -> str:
    text = f"  column {name} {kind.lower()}"
    if notnull:
        text += " not null"
    if default is not None:
        text += f" default {default}"
    return text


def _numbers(numbers: list[int]) -> str:
    return ", ".join(f"{number:04d}" for number in numbers) or "none"
