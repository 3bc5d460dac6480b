"""``serverlord db``: the database's schema, for operators who migrate by hand."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from serverlord.config import Settings, add_arguments
from serverlord.errors import CommandError, UsageError
from serverlord.output import print_json

STORE_SETTINGS = ("data_dir", "database_url", "sqlite_synchronous")
"""The settings that say which database a command works on."""


def add_db_commands(commands: Any) -> None:
    db = commands.add_parser("db", help="migrate the database's schema")
    actions = db.add_subparsers(title="actions", metavar="ACTION", required=True)
    migrate = actions.add_parser(
        "migrate",
        help="apply the pending schema migrations and print them",
        description="Apply every schema migration the database has not had yet, "
        "in one transaction, and print what was applied. Safe to run while "
        "servers run, and again: a database that is up to date is left as it is.",
    )
    migrate.add_argument("--json", action="store_true", help="print JSON")
    add_arguments(migrate, serve=False, only=STORE_SETTINGS)
    migrate.set_defaults(run=run_migrate)


def run_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from serverlord.store import DatabaseUrlError, StoreError
    from serverlord.store.migrations import migrate_database

    try:
        done = asyncio.run(migrate_database(settings))
    except DatabaseUrlError as exc:
        raise UsageError(f"the database URL is not valid: {exc}") from exc
    except StoreError as exc:
        raise CommandError(str(exc)) from exc

    if args.json:
        print_json(
            {
                "database": done.database,
                "applied": [
                    {"number": number, "name": name} for number, name in done.applied
                ],
                "version": done.version,
            }
        )
        return 0
    for number, name in done.applied:
        print(f"applied {number:04d}_{name}")
    state = f"{done.database} is at migration {done.version:04d}"
    if not done.applied:
        state = f"nothing to apply: {state}"
    print(state)
    return 0
