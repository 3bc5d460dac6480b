"""Apprise URLs: checking them, masking their secrets and sending through them.

A channel's URL often holds a token or a password. ``describe_url`` gives the
masked form that may be shown and logged; errors name the scheme only, except
that ``describe_url`` adds Apprise's own reason, meant for the person who has
just typed the URL.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import apprise
from apprise import NotifyBase

from serverlord.channels import ChannelError

__all__ = [
    "Service",
    "apprise_log",
    "body_limit",
    "describe_url",
    "load_plugins",
    "plugin_for",
    "service_kind",
    "services",
]

_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]*)://")

_captured: ContextVar[list[str] | None] = ContextVar(
    "serverlord_apprise_log", default=None
)


class _Capture(logging.Handler):
    """Hands Apprise's log records to whoever is listening in this context."""

    def emit(self, record: logging.LogRecord) -> None:
        messages = _captured.get()
        if messages is None:
            return
        try:
            messages.append(record.getMessage())
        except Exception:
            self.handleError(record)


_handler = _Capture(logging.WARNING)


def _install() -> None:
    apprise_logger = logging.getLogger(apprise.LOGGER_NAME)
    if _handler in apprise_logger.handlers:
        return
    apprise_logger.addHandler(_handler)
    # A WARNING record must reach the handler even when the application logs
    # only errors; a more verbose level set by the application is kept.
    if apprise_logger.getEffectiveLevel() > logging.WARNING:
        apprise_logger.setLevel(logging.WARNING)


@contextmanager
def apprise_log() -> Iterator[list[str]]:
    """Collect what Apprise logs at WARNING or above inside this block.

    Only records of the current context are collected; Apprise copies the
    context into the threads it sends from, so their records count too, and
    concurrent sends in other tasks keep their own.
    """
    _install()
    messages: list[str] = []
    token = _captured.set(messages)
    try:
        yield messages
    finally:
        _captured.reset(token)


def load_plugins() -> None:
    """Load Apprise's plugins now (~0.2 s) rather than at the first message."""
    _registry().load_modules()


@dataclass(frozen=True)
class Service:
    """A kind of channel Apprise knows, and whether it can send from here."""

    name: str
    schemes: tuple[str, ...]
    enabled: bool


def services() -> list[Service]:
    """Every service of Apprise's, by name; disabled ones lack a library."""
    found = []
    details = apprise.Apprise().details(show_disabled=True)
    for entry in details["schemas"]:
        schemes = [
            *(entry.get("protocols") or ()),
            *(entry.get("secure_protocols") or ()),
        ]
        found.append(
            Service(
                name=str(entry["service_name"]),
                schemes=tuple(sorted({scheme.lower() for scheme in schemes})),
                enabled=bool(entry["enabled"]),
            )
        )
    return sorted(found, key=lambda service: (service.name.lower(), service.schemes))


def describe_url(url: str) -> tuple[str, str]:
    """The service kind (like ``json`` or ``slack``) and the masked URL.

    Raises ChannelError, saying why, when Apprise cannot send to ``url``.
    """
    plugin = _instantiate(url, explain=True)
    masked: str = plugin.url(privacy=True)  # type: ignore[no-untyped-call]
    kind = _kind(plugin)
    if kind in SECRET_PATHS:
        masked = _hide_path(masked)
    return kind, _hide_extras(masked)


SECRET_PATHS = frozenset({"json", "xml", "form", "ntfy"})
"""Kinds whose URL path (a webhook's secret path, an ntfy topic) or bare user
name can be the secret: Apprise shows those as typed."""


def _hide_path(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if "mode=cloud" in parts.query:
        # ntfy.sh: the topic stands where a host would.
        host = "****"
    netloc = host if ":" not in host else f"[{host}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    if parts.username:
        password = ":****" if parts.password is not None else ""
        user = "****" if not password else parts.username
        netloc = f"{user}{password}@{netloc}"
    path = "/".join("****" if segment else "" for segment in parts.path.split("/"))
    return urlunsplit(SplitResult(parts.scheme, netloc, path, parts.query, ""))


def service_kind(url: str) -> str:
    """The service kind of a URL, as ``describe_url`` names it, without
    parsing the URL; ``unknown`` for a scheme Apprise does not know."""
    match = _SCHEME.match(url)
    return "unknown" if match is None else _scheme_kind(match.group(1).lower())


@functools.lru_cache(maxsize=256)
def _scheme_kind(scheme: str) -> str:
    registry = _registry()
    if scheme not in registry:
        return "unknown"
    return _kind(registry[scheme])


def _hide_extras(url: str) -> str:
    """Hide the values of headers (``+Name=``), payload fields (``:name=``) and
    extra GET parameters (``-name=``).

    Apprise masks the secrets it knows of, but shows these as they were typed,
    and they often hold a token (``+Authorization=Bearer ...``).
    """
    head, mark, query = url.partition("?")
    if not mark:
        return url
    pieces = []
    for piece in query.split("&"):
        key, equals, value = piece.partition("=")
        if equals and value and unquote(key).startswith(("+", ":", "-")):
            piece = f"{key}=****"
        pieces.append(piece)
    return head + mark + "&".join(pieces)


def plugin_for(url: str, timeout: float) -> NotifyBase:
    """A ready plugin for ``url`` whose sockets give up after ``timeout``.

    Instances are kept and reused: that costs ~35% less per message than a
    new Apprise object each time. Raises ChannelError like ``describe_url``.
    """
    return _cached_plugin(url, timeout)


def body_limit(url: str, timeout: float) -> int | None:
    """The most characters of a message body the service of ``url`` takes
    (Discord 2,000, Telegram 4,096), or None when the URL is unusable."""
    try:
        return int(plugin_for(url, timeout).body_maxlen)
    except ChannelError:
        return None


@functools.lru_cache(maxsize=512)
def _cached_plugin(url: str, timeout: float) -> NotifyBase:
    plugin = _instantiate(url, explain=False)
    plugin.socket_connect_timeout = timeout
    plugin.socket_read_timeout = timeout
    # A plugin spaces the messages it sends (5.5 s for e-mail) by sleeping
    # inside the send, under our timeout: kept for reuse, it would make every
    # message after the first late, or time it out and send it twice.
    plugin.request_rate_per_sec = 0
    return plugin


def _instantiate(url: str, *, explain: bool) -> NotifyBase:
    with apprise_log() as messages:
        plugin = apprise.Apprise.instantiate(url)
    if plugin is not None:
        port = getattr(plugin, "port", None)
        if isinstance(port, int) and not 0 < port < 65536:
            raise ChannelError(f"port {port} is not a TCP port (1-65535)")
        return plugin

    match = _SCHEME.match(url)
    if match is None:
        raise ChannelError(
            "this is not a URL Apprise can send to: it has no scheme "
            "like json:// or mailto://"
        )

    scheme = match.group(1).lower()
    shown = f'"{scheme}://..."'
    registry = _registry()
    if scheme not in registry:
        raise ChannelError(
            f'{shown} is not a URL Apprise can send to: unknown scheme "{scheme}"'
        )
    if not registry[scheme].enabled:
        raise ChannelError(
            f"{shown} is not a URL Apprise can send to: this service is disabled "
            "on this system (a library it needs is missing)"
        )

    # Apprise's warnings say which part is wrong, sometimes quoting it: that
    # may be a secret, so it is only told to the person typing the URL.
    why = next((m for m in messages if "://" not in m), None) if explain else None
    detail = f" ({why.strip()})" if why else ""
    raise ChannelError(
        f"{shown} is not a URL Apprise can send to: Apprise could not parse it" + detail
    )


def _registry() -> Any:
    """Apprise's registry of plugins, one per process."""
    return apprise.NotificationManager()  # type: ignore[no-untyped-call]


def _kind(plugin: NotifyBase | type[NotifyBase]) -> str:
    for names in (plugin.protocol, plugin.secure_protocol):
        if isinstance(names, str) and names:
            return names.lower()
        if isinstance(names, (tuple, list)) and names:
            return str(names[0]).lower()
    return str(plugin.service_name).lower()
