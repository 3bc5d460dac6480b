"""Where the TUI connects: URL and API key from flags, environment or the file.

Flags win over ``SERVERLORD_URL`` / ``SERVERLORD_API_KEY`` /
``SERVERLORD_METRICS_TOKEN``, which win over the config file
(``tui.json`` in the user's config folder, or ``--config``). ``--save``
writes what was used to that file, with mode 0600, once the server has
accepted the key.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from platformdirs import user_config_dir, user_log_dir

from serverlord.errors import UsageError

DEFAULT_URL = "http://127.0.0.1:8000"
KEY_LENGTH = 32


@dataclass(frozen=True)
class Connection:
    url: str
    api_key: str
    metrics_token: str = ""


def default_config_path() -> Path:
    return Path(user_config_dir("serverlord")) / "tui.json"


def default_log_path() -> Path:
    return Path(user_log_dir("serverlord")) / "tui.log"


def resolve(
    url: str | None,
    api_key: str | None,
    metrics_token: str | None,
    config: Path,
    environ: dict[str, str],
) -> Connection:
    """The connection to use, or UsageError naming what is missing or wrong."""
    saved = load(config)
    chosen_url = url or environ.get("SERVERLORD_URL") or saved.get("url") or DEFAULT_URL
    key = api_key or environ.get("SERVERLORD_API_KEY") or saved.get("api_key") or ""
    token = (
        metrics_token
        or environ.get("SERVERLORD_METRICS_TOKEN")
        or saved.get("metrics_token")
        or ""
    )

    parts = urlsplit(chosen_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url: {chosen_url!r} is not an http(s) URL of a server")
    try:
        port = parts.port
    except ValueError:
        port = -1  # not a number, or past 65535
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(
            f"--url: the port of {chosen_url!r} is not a number from 1 to 65535"
        )
    if not key:
        raise UsageError(
            "an API key is needed: give --api-key, set SERVERLORD_API_KEY, "
            f"or save one in {config} with --save "
            "(`serverlord user add EMAIL` prints one)"
        )
    if len(key) != KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise UsageError(f"--api-key: an API key is {KEY_LENGTH} printable characters")
    return Connection(chosen_url.rstrip("/"), key, token)


def load(config: Path) -> dict[str, str]:
    """The saved settings; empty when the file does not exist."""
    try:
        text = config.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"--config: cannot read {config}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--config: {config} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(value, str) for value in data.values()
    ):
        raise UsageError(f"--config: {config} must hold an object of strings")
    return data


def save(connection: Connection, config: Path) -> None:
    """Write the connection to ``config``, readable by its owner only."""
    config.parent.mkdir(parents=True, exist_ok=True)
    fields = {name: value for name, value in asdict(connection).items() if value}
    # Created with 0600 from the start: the key is never readable by others,
    # not even for a moment.
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(fields, file, indent=2)
        file.write("\n")
