"""Structured logs: one JSON object a line, or readable text on a terminal.

Every record keeps what the code passed in ``extra`` (an ``action`` and the
ids involved) as fields of its own. Where a span is active, the record carries
its trace and span ids, so a log line leads to its trace and back.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

TraceIds = Callable[[], tuple[str, str] | None]
"""The ids (hex) of the active trace and span, or None outside any span."""

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    # uvicorn's copy of the message with terminal colours.
    "color_message",
}
"""Attributes every record has: what is left came from ``extra``."""

_trace_ids: TraceIds | None = None


def set_trace_ids(source: TraceIds | None) -> None:
    """Where the trace ids of log records come from (set when tracing starts)."""
    global _trace_ids
    _trace_ids = source


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record was given through ``extra``, and its trace ids."""
    fields = {
        name: value
        for name, value in record.__dict__.items()
        if name not in _STANDARD and not name.startswith("_")
    }
    if _trace_ids is not None:
        ids = _trace_ids()
        if ids is not None:
            fields["trace_id"], fields["span_id"] = ids
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(fields_of(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The message for people, then the fields as ``name=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = fields_of(record)
        if not fields:
            return text
        pairs = " ".join(f"{name}={_short(value)}" for name, value in fields.items())
        head, newline, rest = text.partition("\n")
        return f"{head} [{pairs}]{newline}{rest}"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def configure(
    level: str,
    form: str = "auto",
    stream: TextIO | None = None,
    *,
    force: bool = False,
) -> None:
    """Send every log record to ``stream`` (stderr) as JSON or as text.

    ``form`` is json, text, or auto: JSON unless the stream is a terminal.
    Like ``logging.basicConfig``, it leaves logging alone where handlers are
    set up already (a program that runs serverlord's CLI in-process), unless
    ``force``.
    """
    root = logging.getLogger()
    if root.handlers and not force:
        return
    stream = sys.stderr if stream is None else stream
    if form == "auto":
        form = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if form == "json" else TextFormatter())
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Their debug lines quote channel URLs and request lines, secrets included.
    for chatty in ("apprise", "urllib3"):
        logging.getLogger(chatty).setLevel(max(logging.INFO, root.level))
