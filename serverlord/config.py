"""Settings of ``serverlord serve`` and the CLI: flags, environment, defaults.

Each setting is a flag ``--name`` and an environment variable
``SERVERLORD_NAME``; the flag wins. ``serverlord serve --help`` lists them all
with the one-line help written here.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

from serverlord.checks import SHARD_COUNT
from serverlord.durations import DurationError, parse_duration


LEGACY_VARIABLES = ("DB_HOST", "DB_PORT", "DB_USER", "DB_PASS", "DB_NAME", "SHARD_COUNT")
"""Older variable names read as fall-backs when no SERVERLORD_* setting is given."""


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("serverlord", appauthor=False))


def _setting(
    help: str,
    default: Any,
    *,
    flag_type: Any = str,
    serve_only: bool = True,
    metavar: str = "TEXT",
) -> Any:
    return field(
        default=default,
        metadata={
            "help": help,
            "type": flag_type,
            "serve_only": serve_only,
            "metavar": metavar,
        },
    )


def _integer(text: str, low: int, high: int) -> int:
    if not (text.isascii() and text.strip().isdigit()):
        raise ValueError("not a whole number")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"must be between {low} and {high}")
    return value


def _size(text: str) -> int:
    return _integer(text, 0, 2**40)


def _cap(text: str) -> int:
    return _integer(text, 1, 2**40)


def _port(text: str) -> int:
    return _integer(text, 1, 65535)


def _shards(text: str) -> int:
    return _integer(text, 1, SHARD_COUNT)


def _workers(text: str) -> int:
    return _integer(text, 1, 64)


def _count(text: str) -> int:
    return _integer(text, 1, 100_000)


def _choice(*choices: str) -> Any:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError("use " + ", ".join(choices))
        return value

    return parse


def _host(text: str) -> str:
    host = text.strip()
    if not host:
        raise ValueError("name an address, like 127.0.0.1 or 0.0.0.0")
    return host


def _url(text: str) -> str:
    url = text.strip()
    if url and not url.startswith(("http://", "https://")):
        raise ValueError("use an http:// or https:// URL")
    return url


def _database_url(text: str) -> str:
    url = text.strip()
    if url.startswith(("postgresql://", "postgres://")):
        return url
    if not url.startswith("sqlite:///") or url == "sqlite:///":
        raise ValueError("use sqlite:///PATH or postgresql://USER@HOST/DB")
    return url


def _seconds(text: str) -> float:
    value = parse_duration(text)
    if value > 365 * 86400:
        raise ValueError("must be at most 365d")
    return value


def _timeout(text: str) -> float:
    value = parse_duration(text)
    if value > 3600:
        raise ValueError("must be at most 1h")
    return value


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("use true or false")


@dataclass(slots=True)
class Settings:
    data_dir: Path = _setting(
        "folder of the embedded SQLite database (default: the user data folder)",
        None,
        flag_type=Path,
        serve_only=False,
        metavar="DIR",
    )
    database_url: str = _setting(
        "where checks are stored: sqlite:///PATH or postgresql://... "
        "(default: SQLite in --data-dir)",
        "",
        flag_type=_database_url,
        serve_only=False,
        metavar="URL",
    )
    host: str = _setting(
        "address to listen on", "127.0.0.1", flag_type=_host, metavar="HOST"
    )
    port: int = _setting("TCP port to listen on", 8000, flag_type=_port, metavar="PORT")
    shards: int = _setting(
        f"number of sweeper shards (1-{SHARD_COUNT})",
        8,
        flag_type=_shards,
        metavar="N",
    )
    workers: int = _setting(
        "server processes sharing the port and the shards "
        "(more than 1 needs PostgreSQL)",
        1,
        flag_type=_workers,
        metavar="N",
    )
    base_url: str = _setting(
        "public URL of this server, used in printed ping URLs "
        "(default: http://HOST:PORT)",
        "",
        flag_type=_url,
        serve_only=False,
        metavar="URL",
    )
    ping_body_limit: int = _setting(
        "bytes of a ping's body that are stored; the rest is cut",
        100_000,
        flag_type=_size,
        metavar="BYTES",
    )
    ping_body_cap: int = _setting(
        "largest ping body accepted at all; larger ones get 413",
        10_000_000,
        flag_type=_cap,
        metavar="BYTES",
    )
    trusted_proxy: bool = _setting(
        "take the client address from X-Forwarded-For (only behind a proxy)",
        False,
        flag_type=_flag,
        metavar="BOOL",
    )
    sqlite_synchronous: str = _setting(
        "SQLite synchronous mode: FULL (fsync each commit) or NORMAL",
        "FULL",
        flag_type=_choice("full", "normal", "extra"),
        serve_only=False,
        metavar="MODE",
    )
    log_level: str = _setting(
        "log level: debug, info, warning or error",
        "info",
        flag_type=_choice("debug", "info", "warning", "error"),
        metavar="LEVEL",
    )
    notify_timeout: float = _setting(
        "how long one attempt to deliver an alert may take",
        10,
        flag_type=_timeout,
        metavar="DURATION",
    )
    notify_concurrency: int = _setting(
        "most alerts sent at the same time", 32, flag_type=_count, metavar="N"
    )
    notify_retry_base: float = _setting(
        "wait before retrying a failed alert; doubled at each failure",
        2,
        flag_type=_seconds,
        metavar="DURATION",
    )
    notify_retry_max: float = _setting(
        "longest wait between two attempts to deliver an alert",
        3600,
        flag_type=_seconds,
        metavar="DURATION",
    )
    notify_retry_for: float = _setting(
        "how long a failing alert is retried before it is given up",
        86400,
        flag_type=_seconds,
        metavar="DURATION",
    )

    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else default_data_dir()

    def resolved_base_url(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


class SettingsError(ValueError):
    """A setting from a flag or the environment is not valid."""


def add_arguments(parser: argparse.ArgumentParser, *, serve: bool) -> None:
    """Add one flag per setting (the store settings only, unless ``serve``)."""
    for setting in fields(Settings):
        if setting.metadata["serve_only"] and not serve:
            continue
        flag = "--" + setting.name.replace("_", "-")
        env = "SERVERLORD_" + setting.name.upper()
        default = setting.default
        shown = "" if default in (None, "") else f" [default: {default}]"
        parser.add_argument(
            flag,
            dest=setting.name,
            default=None,
            metavar=setting.metadata["metavar"],
            help=f"{setting.metadata['help']}{shown} (env {env})",
        )


def settings_from(
    args: argparse.Namespace, environ: dict[str, str] | None = None
) -> Settings:
    """Settings from parsed flags, falling back to SERVERLORD_* variables.

    Only the settings the command takes are read; an empty variable counts as
    unset.
    """
    environ = dict(os.environ) if environ is None else environ
    values: dict[str, Any] = {}
    for setting in fields(Settings):
        # Host and port also make the default base URL the check commands print.
        if not hasattr(args, setting.name) and setting.name not in ("host", "port"):
            continue
        raw = getattr(args, setting.name, None)
        source = "--" + setting.name.replace("_", "-")
        if raw is None:
            source = "SERVERLORD_" + setting.name.upper()
            raw = environ.get(source) or None
        if raw is None:
            continue
        try:
            values[setting.name] = setting.metadata["type"](raw)
        except (ValueError, DurationError) as exc:
            raise SettingsError(f"{source}: {raw!r} is not valid: {exc}") from exc
    settings = Settings(**values)
    if settings.ping_body_limit > settings.ping_body_cap:
        raise SettingsError("--ping-body-limit must not exceed --ping-body-cap")
    return settings
