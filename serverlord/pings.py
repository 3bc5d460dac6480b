"""Pings and what each one does to its check.

``apply_ping`` is the whole state machine of a ping; it runs inside the store's
transaction so that the check row, the ping row and any flip commit together.
"""

from __future__ import annotations

from dataclasses import dataclass

from serverlord.checks import (
    DOWN,
    EXIT_STATUS,
    FAILURE,
    PAUSED,
    SUCCESS,
    UP,
    Check,
    Flip,
    go_down,
)

SUCCESS_KIND, START, FAIL, LOG, IGNORED = "success", "start", "fail", "log", "ign"
USER_AGENT_LIMIT = 200


class BadPingError(ValueError):
    """The ping URL is malformed; the message is the answer's body."""


@dataclass(slots=True)
class Ping:
    check_id: str
    received: float
    kind: str
    method: str = "GET"
    exit_status: int | None = None
    remote_addr: str = ""
    user_agent: str = ""
    rid: str | None = None
    body: bytes = b""
    duration: float | None = None
    n: int = 0


def kind_of(suffix: str | None) -> tuple[str, int | None]:
    """The ping kind and exit status named by the last segment of a ping URL."""
    if suffix is None or suffix == "":
        return SUCCESS_KIND, None
    if suffix in (START, FAIL, LOG):
        return suffix, None
    if suffix.isascii() and suffix.isdigit():
        # Leading zeros are fine ("0255" is 255), as Healthchecks reads them;
        # the length bound keeps int() cheap on absurd inputs.
        if len(suffix) > 10 or int(suffix) > 255:
            raise BadPingError("invalid url format")
        code = int(suffix)
        return (SUCCESS_KIND if code == 0 else FAIL), code
    raise LookupError(suffix)


def apply_ping(check: Check, ping: Ping) -> Flip | None:
    """Apply one ping to its check; return the flip it causes, if any."""
    check.n_pings += 1
    ping.n = check.n_pings

    if ping.kind == LOG:
        return None
    if check.status == PAUSED and check.manual_resume:
        ping.kind = IGNORED
        return None
    if ping.kind == START:
        check.last_start = ping.received
        check.last_start_rid = ping.rid
        return None

    _close_run(check, ping)
    check.last_ping = ping.received
    check.missed = 0
    if ping.kind == FAIL:
        return _failed(check, ping)
    return _succeeded(check, ping)


def _failed(check: Check, ping: Ping) -> Flip | None:
    check.ok_streak = 0
    check.fail_streak += 1
    if check.status == DOWN or check.fail_streak < check.failure_threshold:
        return None
    flip = _flip(check, ping, DOWN)
    go_down(check, ping.received)
    return flip


def _succeeded(check: Check, ping: Ping) -> Flip | None:
    check.fail_streak = 0
    if check.status == DOWN:
        check.ok_streak += 1
        if check.ok_streak < check.recovery_threshold:
            return None
    check.ok_streak = 0
    check.next_reminder = None
    if check.status == UP:
        return None
    return _flip(check, ping, UP)


def _close_run(check: Check, ping: Ping) -> None:
    # A success with another run id belongs to another run: the open one stays
    # open. A failure ends the open run whatever its id; so does a success
    # without an id, but neither can then say how long the run took.
    if check.last_start is None:
        return
    same_run = ping.rid == check.last_start_rid
    if not same_run and ping.kind != FAIL and ping.rid is not None:
        return
    if same_run:
        # Never negative, should the system clock have stepped back meanwhile.
        ping.duration = max(0.0, ping.received - check.last_start)
        check.last_duration = ping.duration
    check.last_start = None
    check.last_start_rid = None


def _flip(check: Check, ping: Ping, new_status: str) -> Flip:
    if new_status == UP:
        reason = SUCCESS
    else:
        reason = FAILURE if ping.exit_status is None else EXIT_STATUS
    flip = Flip(
        check_id=check.id,
        shard=check.shard,
        at=ping.received,
        detected=ping.received,
        old_status=check.status,
        new_status=new_status,
        reason=reason,
        exit_status=ping.exit_status,
    )
    check.status = new_status
    return flip
