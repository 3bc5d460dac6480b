"""How checks, pings and flips read: JSON with Healthchecks' v3 field names and
plain text for the terminal. Ping bodies may hold any bytes: they are always
decoded with replacement characters and stripped of control characters."""

from __future__ import annotations

from typing import Any

from serverlord import clock
from serverlord.checks import (
    STARTED,
    Check,
    Flip,
    next_due,
    reason_text,
    status_at,
    to_datetime,
)
from serverlord.durations import format_duration
from serverlord.pings import Ping


def iso(ts: float | None) -> str | None:
    """An ISO 8601 UTC time to the second, as Healthchecks writes them."""
    if ts is None:
        return None
    return to_datetime(ts).replace(microsecond=0).isoformat()


def seconds(value: float | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def safe_text(data: bytes, limit: int | None = None) -> str:
    """Any bytes as printable text: bad UTF-8 replaced, control characters shown."""
    text = (
        data[:limit].decode("utf-8", "replace")
        if limit
        else data.decode("utf-8", "replace")
    )
    # Nearly all text is printable already: one C-level test spares the
    # character-by-character copy, a good part of composing an alert.
    if text.isprintable() or text.replace("\n", "").replace("\t", "").isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or ch in "\n\t" else f"\\x{ord(ch):02x}" for ch in text
    )


def check_json(check: Check, base_url: str, now: float | None = None) -> dict[str, Any]:
    now = clock.now() if now is None else now
    status = status_at(check, now)
    data: dict[str, Any] = {
        "name": check.name,
        "slug": check.slug,
        "tags": check.tags,
        "desc": check.desc,
        "grace": seconds(check.grace),
        "n_pings": check.n_pings,
        "status": status,
        "started": check.last_start is not None,
        "last_ping": iso(check.last_ping),
        "next_ping": iso(next_due(check)),
        "manual_resume": check.manual_resume,
        "methods": "",
        "uuid": check.id,
        "ping_url": f"{base_url}/ping/{check.id}",
        "max_runtime": seconds(check.max_runtime),
        "last_duration": seconds(check.last_duration),
        "failure_threshold": check.failure_threshold,
        "recovery_threshold": check.recovery_threshold,
        "reminder_every": seconds(check.reminder_every),
    }
    if check.schedule.kind == "simple":
        data["timeout"] = seconds(check.schedule.timeout)
    else:
        data["schedule"] = check.schedule.expression
        data["tz"] = check.schedule.tz
    return data


def ping_json(ping: Ping) -> dict[str, Any]:
    return {
        "type": ping.kind,
        "date": to_datetime(ping.received).isoformat(),
        "n": ping.n,
        "scheme": "http",
        "remote_addr": ping.remote_addr,
        "method": ping.method,
        "ua": ping.user_agent,
        "rid": ping.rid,
        "exitstatus": ping.exit_status,
        "duration": ping.duration,
        "body": safe_text(ping.body, 1000),
        "body_size": len(ping.body),
    }


def flip_json(flip: Flip) -> dict[str, Any]:
    return {
        "id": flip.id,
        "timestamp": to_datetime(flip.at).isoformat(),
        "detected": to_datetime(flip.detected).isoformat(),
        "up": 1 if flip.new_status == "up" else 0,
        "old_status": flip.old_status,
        "new_status": flip.new_status,
        "reason": reason_text(flip),
    }


def ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "never"
    delta = now - ts
    if delta < 0:
        return f"in {format_duration(round(-delta) or 1)}"
    return f"{format_duration(round(delta) or 1)} ago" if delta >= 1 else "just now"


def check_line(check: Check, now: float) -> str:
    status = status_at(check, now)
    return (
        f"{check.id}  {status:<8} {check.name[:30]:<30} "
        f"{check.schedule.describe():<28} last ping {ago(check.last_ping, now)}"
    )


def attempt_json(attempt: dict[str, Any]) -> dict[str, Any]:
    """A delivery attempt as stored (see Store.recent_attempts), for JSON."""
    return {
        "at": iso(attempt["at"]),
        "ok": bool(attempt["ok"]),
        "error": attempt["error"],
        "latency": attempt["latency"],
        "kind": attempt["kind"],
        "flip_id": attempt["flip_id"],
        "channel": attempt["channel_id"],
        "channel_name": attempt["channel_name"],
        "state": attempt["state"],
    }


def check_details(
    check: Check,
    base_url: str,
    pings: list[Ping],
    flips: list[Flip],
    now: float,
    attempts: list[dict[str, Any]] | None = None,
) -> str:
    status = status_at(check, now)
    due = next_due(check)
    lines = [
        f"{check.name}  [{status}{' (running)' if status == STARTED else ''}]",
        f"  id            {check.id}",
        f"  ping URL      {base_url}/ping/{check.id}",
        f"  schedule      {check.schedule.describe()}",
        f"  grace         {format_duration(check.grace)}",
    ]
    if check.max_runtime is not None:
        lines.append(f"  max run time  {format_duration(check.max_runtime)}")
    if check.tags:
        lines.append(f"  tags          {check.tags}")
    if check.failure_threshold > 1 or check.recovery_threshold > 1:
        lines.append(
            f"  thresholds    down after {check.failure_threshold} failed runs, "
            f"up after {check.recovery_threshold} successes"
        )
    if check.reminder_every is not None:
        lines.append(f"  reminders     every {format_duration(check.reminder_every)}")
    lines += [
        f"  last ping     {iso(check.last_ping) or 'never'} "
        f"({ago(check.last_ping, now)})",
        f"  next due      {iso(due) or '-'}",
        "  last duration "
        + (
            format_duration(round(check.last_duration, 3))
            if check.last_duration
            else "-"
        ),
        f"  pings         {check.n_pings}",
        "",
        "recent pings:",
    ]
    for ping in pings:
        extra = "" if ping.exit_status is None else f" exit {ping.exit_status}"
        took = "" if ping.duration is None else f" took {ping.duration:.3f}s"
        body = safe_text(ping.body, 60).replace("\n", " ")
        lines.append(
            f"  #{ping.n:<5} {iso(ping.received)} {ping.kind:<7} {ping.method:<4}"
            f"{extra}{took} {body}".rstrip()
        )
    lines += ["", "recent flips:"]
    for flip in flips:
        lines.append(
            f"  {iso(flip.at)} {flip.old_status} -> {flip.new_status}: "
            f"{reason_text(flip)} (noticed {flip.detected - flip.at:.3f}s later)"
        )
    lines += ["", "recent deliveries:"]
    for attempt in attempts or []:
        result = "ok" if attempt["ok"] else f"FAILED: {attempt['error']}"
        lines.append(
            f"  {iso(attempt['at'])} {attempt['kind']:<8} to "
            f"{attempt['channel_name']}: {result}"
        )
    return "\n".join(lines)
