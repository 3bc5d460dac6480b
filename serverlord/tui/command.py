"""``serverlord tui``: the command that starts the terminal interface."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from serverlord.errors import UsageError
from serverlord.tui.connection import (
    default_config_path,
    default_log_path,
    resolve,
    save,
)


def add_tui_command(commands: Any) -> None:
    tui = commands.add_parser(
        "tui",
        help="watch and manage checks live in the terminal",
        description="A live terminal view of a running server's checks. The URL "
        "and API key come from the flags, else SERVERLORD_URL and "
        "SERVERLORD_API_KEY, else the config file (written by --save, mode "
        "0600). Errors are shown on screen and written to the log file.",
    )
    tui.add_argument(
        "--url", help="the server's base URL (default http://127.0.0.1:8000)"
    )
    tui.add_argument(
        "--api-key", help="a read-write (or read-only) API key of a project"
    )
    tui.add_argument(
        "--metrics-token",
        help="bearer token of the server's /metrics, if it asks for one "
        "(or SERVERLORD_METRICS_TOKEN)",
    )
    tui.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"config file (default {default_config_path()})",
    )
    tui.add_argument(
        "--save",
        action="store_true",
        help="save the URL and key to the config file once the server accepts them",
    )
    tui.add_argument(
        "--log-file",
        type=Path,
        default=None,
        help=f"where errors are written (default {default_log_path()})",
    )
    tui.set_defaults(run=run_tui)


def run_tui(args: argparse.Namespace, settings: Any) -> int:
    config = args.config or default_config_path()
    connection = resolve(
        args.url, args.api_key, args.metrics_token, config, dict(os.environ)
    )
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        raise UsageError("tui needs a terminal: run it in one, not through a pipe")
    log_file = args.log_file or default_log_path()
    _log_to(log_file)

    # Textual is imported only here: the other commands start faster without it.
    from serverlord.tui.app import ServerlordApp
    from serverlord.tui.client import Client

    def connected() -> None:
        if args.save:
            save(connection, config)
            logging.getLogger(__name__).info(
                "saved the connection to %s", config, extra={"action": "tui_saved"}
            )

    client = Client(connection.url, connection.api_key, connection.metrics_token)
    app = ServerlordApp(client, on_connected=connected)
    try:
        app.run()
    except Exception as exc:  # any crash: logged, exit 1
        app.crash = app.crash or exc
        logging.getLogger(__name__).error(
            "stopped on an unexpected error",
            exc_info=exc,
            extra={"action": "tui_crashed"},
        )
    if app.crash is not None:
        print(app.crash_line(log_file), file=sys.stderr)
        return 1
    return app.return_code or 0


def _log_to(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--log-file: cannot write {path}: {exc.strerror}") from exc
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    logger = logging.getLogger("serverlord.tui")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
