"""The OTEL_* variables, checked before the server starts.

The SDK reads them itself, but meets some mistakes only halfway through
start-up (an export interval of 0 is a traceback) and others never (an
endpoint that is no URL fails at every export, for as long as the server
runs; a header written with ``:`` is logged, secret and all). A wrong value
is a settings error naming the variable, as a wrong flag is, and no value is
repeated in the message: headers hold API keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from serverlord.config import SettingsError, hide_password

_SIGNALS = ("", "_METRICS", "_TRACES")
_POSITIVE_NUMBERS = (
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_METRIC_EXPORT_TIMEOUT",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
    *(f"OTEL_EXPORTER_OTLP{signal}_TIMEOUT" for signal in _SIGNALS),
)
_QUEUE = ("OTEL_BSP_MAX_QUEUE_SIZE", 2048)
_BATCH = ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)


def check_otel_environment(env: Mapping[str, str] = os.environ) -> None:
    """Raise SettingsError for the first OTEL_* variable the SDK would trip on."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    for name in _POSITIVE_NUMBERS:
        _positive(env, name, float, "a number above 0")
    queue = _positive(env, _QUEUE[0], int, "a whole number above 0") or _QUEUE[1]
    batch = _positive(env, _BATCH[0], int, "a whole number above 0") or _BATCH[1]
    if batch > queue:
        raise SettingsError(
            f"{_BATCH[0]}: {batch} is more than {_QUEUE[0]} ({queue}) holds"
        )
    for signal in _SIGNALS:
        _endpoint(env, f"OTEL_EXPORTER_OTLP{signal}_ENDPOINT")
        _headers(env, f"OTEL_EXPORTER_OTLP{signal}_HEADERS")


def _positive(
    env: Mapping[str, str], name: str, kind: type[float] | type[int], wanted: str
) -> float | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        number = kind(text)
    except ValueError:
        number = 0
    if not number > 0 or number == float("inf"):
        raise SettingsError(f"{name}: {text!r} is not {wanted}")
    return number


def _endpoint(env: Mapping[str, str], name: str) -> None:
    text = env.get(name, "").strip()
    if not text:
        return
    shown = hide_password(text)
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - reading it checks it
    except ValueError as exc:
        raise SettingsError(f"{name}: {shown!r} is not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"{name}: {shown!r} is not an http:// or https:// URL with a host"
        )


def _headers(env: Mapping[str, str], name: str) -> None:
    for number, entry in enumerate(env.get(name, "").split(","), start=1):
        if not entry.strip():
            continue
        key, equals, _ = entry.partition("=")
        if not equals or not key.strip():
            # The entry itself may be a secret: say where, not what.
            raise SettingsError(
                f"{name}: entry {number} is not written as key=value "
                "(entries are separated by commas)"
            )
