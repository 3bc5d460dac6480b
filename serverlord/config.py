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

from serverlord.durations import DurationError, parse_duration


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


def _size(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    return parse_duration(text)


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
        "where checks are stored: sqlite:///PATH (default: SQLite in --data-dir)",
        "",
        serve_only=False,
        metavar="URL",
    )
    host: str = _setting("address to listen on", "127.0.0.1", metavar="HOST")
    port: int = _setting("TCP port to listen on", 8000, flag_type=_size, metavar="PORT")
    shards: int = _setting(
        "number of sweeper shards", 8, flag_type=_positive, metavar="N"
    )
    base_url: str = _setting(
        "public URL of this server, used in printed ping URLs "
        "(default: http://HOST:PORT)",
        "",
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
        flag_type=_size,
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
        serve_only=False,
        metavar="MODE",
    )
    log_level: str = _setting(
        "log level: debug, info, warning or error", "info", metavar="LEVEL"
    )
    notify_timeout: float = _setting(
        "how long one attempt to deliver an alert may take",
        10,
        flag_type=_seconds,
        metavar="DURATION",
    )
    notify_concurrency: int = _setting(
        "most alerts sent at the same time", 32, flag_type=_positive, metavar="N"
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
    """Settings from parsed flags, falling back to SERVERLORD_* variables."""
    environ = dict(os.environ) if environ is None else environ
    values: dict[str, Any] = {}
    for setting in fields(Settings):
        raw = getattr(args, setting.name, None)
        source = "--" + setting.name.replace("_", "-")
        if raw is None:
            env = "SERVERLORD_" + setting.name.upper()
            raw = environ.get(env)
            source = env
        if raw is None:
            continue
        try:
            values[setting.name] = setting.metadata["type"](raw)
        except (ValueError, DurationError) as exc:
            raise SettingsError(f"{source}: {raw!r} is not valid: {exc}") from exc
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    if settings.port > 65535:
        raise SettingsError(f"--port: {settings.port} is not a TCP port (0-65535)")
    if settings.sqlite_synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
        raise SettingsError("--sqlite-synchronous: use FULL, NORMAL or EXTRA")
    settings.sqlite_synchronous = settings.sqlite_synchronous.upper()
    if settings.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise SettingsError("--log-level: use debug, info, warning or error")
    if settings.ping_body_limit > settings.ping_body_cap:
        raise SettingsError("--ping-body-limit must not exceed --ping-body-cap")
    if settings.database_url and not settings.database_url.startswith("sqlite:///"):
        raise SettingsError(
            f"--database-url: {settings.database_url!r} is not supported: "
            "use sqlite:///PATH"
        )
