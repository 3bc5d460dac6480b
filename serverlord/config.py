"""Settings of ``serverlord serve`` and the CLI: flags, environment, defaults.

Each setting is a flag ``--name`` and an environment variable
``SERVERLORD_NAME``; the flag wins. A few settings also read older variable
names when neither is given (``SHARD_COUNT``, and ``DB_HOST`` and its kin,
which make a PostgreSQL URL). ``serverlord serve --help`` lists them all with
the one-line help written here.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import platformdirs

from serverlord.checks import SHARD_COUNT
from serverlord.durations import DurationError, parse_duration

DB_VARIABLES = ("DB_HOST", "DB_PORT", "DB_USER", "DB_PASS", "DB_NAME")
"""Older names of the parts of a PostgreSQL URL, read when no URL is given."""
LEGACY_VARIABLES = (*DB_VARIABLES, "SHARD_COUNT")
"""Older variable names read as fall-backs when no SERVERLORD_* setting is given."""

Fallback = Callable[[Mapping[str, str]], tuple[str, str] | None]
"""Where a setting comes from when neither its flag nor its SERVERLORD_* variable
is given: the source's name and the raw value, or None."""


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("serverlord", appauthor=False))


def _setting(
    help: str,
    default: Any,
    *,
    flag_type: Any = str,
    serve_only: bool = True,
    metavar: str = "TEXT",
    fallback: tuple[str, Fallback] | None = None,
) -> Any:
    """A setting; ``fallback`` names the older variables it reads, and reads them."""
    return field(
        default=default,
        metadata={
            "help": help,
            "type": flag_type,
            "serve_only": serve_only,
            "metavar": metavar,
            "fallback": fallback,
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
        try:
            urlsplit(url).port  # noqa: B018 - raises for a bad port or address
        except ValueError as exc:
            raise ValueError(str(exc).lower()) from None
        return url
    if not url.startswith("sqlite:///") or url == "sqlite:///":
        raise ValueError("use sqlite:///PATH or postgresql://USER@HOST/DB")
    return url


def _url_reason(url: str, exc: Exception) -> str:
    """Why a database URL was refused, unless saying it shows the password.

    A password with an unquoted ``/`` makes the parser quote a piece of it as
    the port, say.
    """
    reason = str(exc)
    userinfo = url.partition("://")[2].rpartition("@")[0]
    quoted = re.findall(r"'([^']*)'", reason)
    if userinfo and any(piece and piece in userinfo for piece in quoted):
        return (
            "not a URL (quote special characters of the password: / as %2F, "
            "# as %23, ? as %3F, @ as %40)"
        )
    return reason


def hide_password(url: str) -> str:
    """The URL with its password, if any, replaced by ``***``.

    Everything up to the last ``@`` before the path may be a password with
    characters that should have been quoted (``/``, ``#``, ``?``): all of it
    after the user name goes.
    """
    url = url.strip()
    scheme, found, rest = url.partition("://")
    if not found or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    if ":" not in userinfo and user == userinfo and "/" not in userinfo:
        return url
    return f"{scheme}://{user}:***@{host}"


def _shard_count(environ: Mapping[str, str]) -> tuple[str, str] | None:
    value = environ.get("SHARD_COUNT")
    return ("SHARD_COUNT", value) if value else None


def _db_variables(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """A PostgreSQL URL made of DB_HOST, DB_PORT, DB_USER, DB_PASS and DB_NAME.

    Each part is quoted, so a password may hold any character. What is not set
    is left to the PG* variables and asyncpg's defaults.
    """
    parts = {name: environ.get(name, "") for name in DB_VARIABLES}
    if not any(parts.values()):
        return None
    port = parts["DB_PORT"].strip()
    if port:
        try:
            _port(port)
        except ValueError as exc:
            raise SettingsError(f"DB_PORT: {port!r} is not valid: {exc}") from exc

    host, query = parts["DB_HOST"].strip(), {}
    if host.startswith("/"):
        # A folder of Unix sockets goes in the query; the URL has no host then.
        query = {"host": host, **({"port": port} if port else {})}
        host = port = ""
    elif _is_ipv6(host):
        host = f"[{host}]"
    user = quote(parts["DB_USER"], safe="")
    password = quote(parts["DB_PASS"], safe="")
    auth = user + (f":{password}" if password else "")
    url = "postgresql://" + (f"{auth}@" if auth else "") + host
    url += f":{port}" if port else ""
    url += f"/{quote(parts['DB_NAME'], safe='')}" if parts["DB_NAME"] else ""
    url += f"?{urlencode(query)}" if query else ""
    return "DB_HOST, DB_PORT, DB_USER, DB_PASS, DB_NAME", url


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


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


def _ratio(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError("not a number") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


_BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")


def _bearer_token(text: str) -> str:
    # What RFC 6750 lets a client send after "Bearer ": a token with a space
    # or a letter outside ASCII could never be matched.
    if text and not _BEARER_TOKEN.fullmatch(text):
        raise ValueError(
            "a bearer token is ASCII letters, digits and -._~+/ (= at the end), "
            "without spaces"
        )
    return text


def _rate(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError("not a number") from None
    if value != 0.0 and not 0.01 <= value <= 100_000.0:
        # Below 0.01 a bucket would take days to refill and never be dropped.
        raise ValueError("must be 0 (no limit) or between 0.01 and 100000")
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
        "where checks are stored: sqlite:///PATH, or postgresql://USER:PASS@HOST/DB "
        "with any part left out taken from PGHOST, PGPORT, PGUSER, PGPASSWORD, "
        "PGDATABASE (default: SQLite in --data-dir)",
        "",
        flag_type=_database_url,
        serve_only=False,
        metavar="URL",
        fallback=("DB_HOST, DB_PORT, DB_USER, DB_PASS, DB_NAME", _db_variables),
    )
    auto_migrate: bool = _setting(
        "apply pending schema migrations when the store opens; when false, a "
        "database whose schema is behind is refused (run serverlord db migrate)",
        True,
        flag_type=_flag,
        serve_only=False,
        metavar="BOOL",
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
        fallback=("SHARD_COUNT", _shard_count),
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
    ping_rate_limit: float = _setting(
        "pings a second one check may send on average, ten seconds' worth at "
        "once; more get 429 and are not recorded (0: no limit)",
        10.0,
        flag_type=_rate,
        metavar="N",
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
    log_format: str = _setting(
        "log lines as json, text, or auto: JSON unless stderr is a terminal",
        "auto",
        flag_type=_choice("auto", "json", "text"),
        metavar="FORMAT",
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
    metrics: bool = _setting(
        "keep metrics: served at /metrics, and sent through OTLP/HTTP when "
        "OTEL_EXPORTER_OTLP_ENDPOINT is set",
        True,
        flag_type=_flag,
        metavar="BOOL",
    )
    metrics_token: str = _setting(
        "bearer token that /metrics asks for (default: none asked; "
        "prefer the environment variable to the flag)",
        "",
        flag_type=_bearer_token,
        metavar="TOKEN",
    )
    trace_pings: float = _setting(
        "share of pings traced, 0 to 1, when traces go out through OTLP",
        0.0,
        flag_type=_ratio,
        metavar="RATIO",
    )
    api_rate_limit: int = _setting(
        "management API requests per minute and API key (or client address)",
        600,
        flag_type=_count,
        metavar="N",
    )
    connections_per_address: int = _setting(
        "open connections one client address may hold; more are answered 429 "
        "and closed (behind a proxy every client shares its address)",
        1000,
        flag_type=_count,
        metavar="N",
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


def add_arguments(
    parser: argparse.ArgumentParser,
    *,
    serve: bool,
    only: Collection[str] | None = None,
) -> None:
    """Add one flag per setting: the store settings only, unless ``serve``; of
    those, the ones named in ``only`` if given."""
    for setting in fields(Settings):
        if setting.metadata["serve_only"] and not serve:
            continue
        if only is not None and setting.name not in only:
            continue
        flag = "--" + setting.name.replace("_", "-")
        env = "SERVERLORD_" + setting.name.upper()
        if setting.metadata["fallback"] is not None:
            env += f"; else {setting.metadata['fallback'][0]}"
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
    """Settings from parsed flags, falling back to SERVERLORD_* variables, then
    to the older variables a setting names.

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
        if raw is None and setting.metadata["fallback"] is not None:
            source, raw = setting.metadata["fallback"][1](environ) or (source, None)
        if raw is None:
            continue
        try:
            values[setting.name] = setting.metadata["type"](raw)
        except (ValueError, DurationError) as exc:
            if setting.name == "database_url":
                raise SettingsError(
                    f"{source}: {hide_password(raw)!r} is not valid: "
                    f"{_url_reason(raw, exc)}"
                ) from exc
            if setting.name == "metrics_token":
                raise SettingsError(f"{source}: not valid: {exc}") from exc
            raise SettingsError(f"{source}: {raw!r} is not valid: {exc}") from exc
    settings = Settings(**values)
    if settings.ping_body_limit > settings.ping_body_cap:
        raise SettingsError("--ping-body-limit must not exceed --ping-body-cap")
    if settings.database_url.startswith(("postgresql://", "postgres://")):
        _check_pg_port(environ)
    return settings


def _check_pg_port(environ: Mapping[str, str]) -> None:
    # asyncpg reads PGPORT only when connecting, and fails without naming it.
    for port in (environ.get("PGPORT") or "").split(","):
        if port:
            try:
                _port(port)
            except ValueError as exc:
                raise SettingsError(f"PGPORT: {port!r} is not valid: {exc}") from exc
