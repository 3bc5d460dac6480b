"""Checks, pings, flips and channels as the management API shows them."""

from __future__ import annotations

from msgspec import UNSET

from serverlord.accounts import unique_key
from serverlord.channels import Channel
from serverlord.checks import UP, Check, Flip, next_due, reason_text, status_at
from serverlord.http.api_schema import ChannelOut, CheckOut, FlipOut, PingOut
from serverlord.pings import Ping
from serverlord.render import iso, seconds


def check_out(
    check: Check,
    base_url: str,
    now: float,
    *,
    read_only: bool,
    channels: list[str] | None = None,
) -> CheckOut:
    out = CheckOut(
        name=check.name,
        slug=check.slug,
        tags=check.tags,
        desc=check.desc,
        grace=_number(check.grace),
        n_pings=check.n_pings,
        status=status_at(check, now),  # type: ignore[arg-type]
        started=check.last_start is not None,
        last_ping=iso(check.last_ping),
        next_ping=iso(next_due(check)),
        manual_resume=check.manual_resume,
        methods="",
        subject="",
        subject_fail="",
        start_kw="",
        success_kw="",
        failure_kw="",
        filter_subject=False,
        filter_body=False,
        max_runtime=seconds(check.max_runtime),
        failure_threshold=check.failure_threshold,
        recovery_threshold=check.recovery_threshold,
        reminder_every=seconds(check.reminder_every),
    )
    if check.last_duration:
        out.last_duration = _number(check.last_duration)
    if read_only:
        out.unique_key = unique_key(check.id)
    else:
        api = f"{base_url}/api/v3/checks/{check.id}"
        out.uuid = check.id
        out.ping_url = f"{base_url}/ping/{check.id}"
        out.update_url = api
        out.pause_url = f"{api}/pause"
        out.resume_url = f"{api}/resume"
        out.channels = ",".join(sorted(channels or []))
    if check.schedule.kind == "simple":
        assert check.schedule.timeout is not None
        out.timeout = _number(check.schedule.timeout)
    else:
        out.schedule = check.schedule.expression or UNSET
        out.tz = check.schedule.tz
    return out


def ping_out(ping: Ping, body_size: int, body_url: str) -> PingOut:
    out = PingOut(
        type=ping.kind,  # type: ignore[arg-type]
        date=iso_precise(ping.received),
        n=ping.n,
        scheme="http",
        remote_addr=ping.remote_addr,
        method=ping.method,
        ua=ping.user_agent,
        rid=ping.rid,
        body_url=body_url if body_size else None,
        exitstatus=ping.exit_status,
    )
    if ping.duration is not None:
        out.duration = ping.duration
    return out


def flip_out(flip: Flip) -> FlipOut:
    return FlipOut(
        timestamp=iso(flip.at) or "",
        up=1 if flip.new_status == UP else 0,
        old_status=flip.old_status,
        new_status=flip.new_status,
        reason=reason_text(flip),
    )


def channel_out(channel: Channel) -> ChannelOut:
    return ChannelOut(id=channel.id, name=channel.name, kind=channel.kind)


def iso_precise(ts: float) -> str:
    from serverlord.checks import to_datetime

    return to_datetime(ts).isoformat()


def _number(value: float) -> float:
    # Whole seconds read as integers, as Healthchecks writes them.
    shown = seconds(value)
    assert shown is not None
    return shown
