"""The ``serverlord`` command line.

argparse keeps start-up quick: heavy packages (Litestar, uvicorn) are imported
only by the subcommand that needs them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from serverlord import version_text
from serverlord.account_commands import (
    add_account_commands,
    find_project,
    in_project,
    project_or_default,
)
from serverlord.bench import add_bench_command
from serverlord.channel_commands import add_channel_commands, channel_ids
from serverlord.checks import Check
from serverlord.config import Settings, SettingsError, add_arguments, settings_from
from serverlord.db_commands import add_db_commands
from serverlord.durations import DurationError, parse_duration
from serverlord.errors import CommandError, UsageError
from serverlord.output import print_json, report
from serverlord.run_command import add_run_command
from serverlord.schedules import Schedule, ScheduleError, check_seconds, preview
from serverlord.tui.command import add_tui_command

DEFAULT_PERIOD = "1d"
DEFAULT_GRACE = "1h"
NAME_LIMIT = 100
TAG_LIMIT = 50
THRESHOLD_LIMIT = 1000
MIN_REMINDER = 60.0
SLUG_LIMIT = 100
SLUG_RE = re.compile(rf"[a-z0-9_-]{{1,{SLUG_LIMIT}}}")
DESC_LIMIT = 10_000


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        settings = settings_from(args)
        return int(args.run(args, settings) or 0)
    except (SettingsError, ScheduleError, DurationError, UsageError) as exc:
        parser.exit(2, f"serverlord: error: {exc}\n")
    except CommandError as exc:
        parser.exit(1, f"serverlord: {exc}\n")
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (say `| head`) is gone: stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="serverlord",
        description="Monitor cron jobs, systemd timers and backups by their pings.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the server",
        description="Run the ping server and the sweepers.",
    )
    add_arguments(serve, serve=True)
    serve.set_defaults(run=run_serve)

    _add_check_commands(commands)
    add_channel_commands(commands, _common)
    add_account_commands(commands, _common)
    add_run_command(commands)
    _add_schedule_commands(commands)
    add_db_commands(commands)
    add_tui_command(commands)
    add_bench_command(commands)
    return parser


def _add_check_commands(commands: Any) -> None:
    check = commands.add_parser("check", help="add, list, show, pause or remove checks")
    actions = check.add_subparsers(title="actions", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="add a check and print its ping URL")
    add.add_argument("name")
    kind = add.add_mutually_exclusive_group()
    kind.add_argument(
        "--period", help=f"ping expected every D (default {DEFAULT_PERIOD})"
    )
    kind.add_argument("--cron", metavar="EXPR", help="5-field cron expression")
    kind.add_argument(
        "--oncalendar", metavar="EXPR", help="systemd OnCalendar expression"
    )
    add.add_argument("--tz", default="UTC", help="IANA time zone of the schedule")
    add.add_argument(
        "--grace",
        default=DEFAULT_GRACE,
        help=f"how late a ping may be (default {DEFAULT_GRACE})",
    )
    add.add_argument("--max-runtime", help="longest a started run may take")
    add.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    add.add_argument("--slug", default="", help="a short lowercase name for the check")
    add.add_argument("--desc", default="", help="description")
    add.add_argument(
        "--manual-resume",
        action="store_true",
        help="a paused check stays paused when pinged",
    )
    add.add_argument(
        "--failure-threshold",
        type=int,
        default=1,
        metavar="N",
        help="go down only after N failed or missed runs in a row (default 1)",
    )
    add.add_argument(
        "--recovery-threshold",
        type=int,
        default=1,
        metavar="N",
        help="come back up only after N successes in a row (default 1)",
    )
    add.add_argument(
        "--remind-every", metavar="D", help="remind people every D while down"
    )
    links = add.add_mutually_exclusive_group()
    links.add_argument(
        "--channel",
        action="append",
        default=[],
        metavar="ID",
        help="alert this channel (repeatable; default: every channel)",
    )
    links.add_argument(
        "--no-channels", action="store_true", help="link no channel for now"
    )
    _common(add, _add)

    channels = actions.add_parser("channels", help="show or set a check's channels")
    channels.add_argument("id", help="the check's uuid")
    channels.add_argument(
        "--set", metavar="ID,ID", help="link exactly these channels ('' for none)"
    )
    _common(channels, _channels)

    _common(actions.add_parser("list", help="list checks"), _list)
    for name, helptext, handler in (
        ("show", "show a check with its recent pings and flips", _show),
        ("pause", "pause a check: no alerts until its next ping", _pause),
        ("resume", "resume a paused check", _resume),
        ("rm", "remove a check and its history", _remove),
    ):
        sub = actions.add_parser(name, help=helptext)
        sub.add_argument("id", help="the check's uuid")
        _common(sub, handler)


def _add_schedule_commands(commands: Any) -> None:
    schedule = commands.add_parser("schedule", help="try out schedule expressions")
    actions = schedule.add_subparsers(title="actions", metavar="ACTION", required=True)
    show = actions.add_parser("preview", help="print the next due times of EXPR")
    show.add_argument("expression", help="cron or OnCalendar expression")
    show.add_argument("--tz", default="UTC", help="IANA time zone")
    show.add_argument("--after", help="start from this ISO time (default: now)")
    show.add_argument("-n", type=int, default=5, help="how many (default 5)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=run_preview)


def _common(
    parser: argparse.ArgumentParser, handler: Callable[..., Any], project: bool = True
) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")
    if project:
        parser.add_argument(
            "--project",
            metavar="PROJECT",
            default=os.environ.get("SERVERLORD_PROJECT") or None,
            help="the project's id or name: new checks and channels go there, "
            "others must be in it (default: the default project for new ones, "
            "any project otherwise) (env SERVERLORD_PROJECT)",
        )
    add_arguments(parser, serve=False)
    parser.set_defaults(run=lambda args, settings: _with_store(args, settings, handler))


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    from serverlord.server import bind, serve
    from serverlord.store import DatabaseUrlError
    from serverlord.telemetry import logs
    from serverlord.telemetry.environment import check_otel_environment

    check_otel_environment()
    logs.configure(settings.log_level, settings.log_format)
    if settings.workers == 1:
        try:
            _run_loop(serve(settings))
        except DatabaseUrlError as exc:
            raise UsageError(f"the database URL is not valid: {exc}") from exc
        except OSError as exc:
            raise CommandError(str(exc)) from exc
        return 0

    from serverlord.workers import Supervisor

    if not settings.database_url.startswith(("postgresql://", "postgres://")):
        raise UsageError(
            "--workers: more than one worker needs a PostgreSQL store "
            "(--database-url postgresql://...); SQLite takes one server process"
        )

    def worker(sock: socket.socket, index: int) -> int:
        try:
            _run_loop(serve(settings, sock, index))
        except DatabaseUrlError as exc:
            print(
                f"serverlord: error: the database URL is not valid: {exc}",
                file=sys.stderr,
                flush=True,
            )
            return 2
        except OSError as exc:
            print(f"serverlord: {exc}", file=sys.stderr, flush=True)
            return 1
        return 0

    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        raise CommandError(str(exc)) from exc
    with sock:
        return Supervisor(sock, settings.workers, worker).run()


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def run_preview(args: argparse.Namespace, settings: Settings) -> int:
    schedule = Schedule.parse(args.expression, args.tz)
    after = datetime.now(UTC) if args.after is None else _parse_time(args.after)
    if not 1 <= args.n <= 1000:
        raise UsageError("-n: must be between 1 and 1000")
    times = preview(schedule, after, args.n)
    zone = ZoneInfo(schedule.tz)
    if args.json:
        print_json(
            [
                {"utc": t.isoformat(), "local": t.astimezone(zone).isoformat()}
                for t in times
            ]
        )
        return 0
    print(f"{schedule.describe()}, next {len(times)} after {after.isoformat()}:")
    for t in times:
        print(f"  {t.isoformat()}   {t.astimezone(zone).isoformat()} {schedule.tz}")
    if not times:
        print("  (never again)")
    return 0


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"--after: {text!r} is not an ISO 8601 time") from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


# Check commands: each runs against the store, with the store open.

Handler = Callable[[argparse.Namespace, Settings, Any], Awaitable[int]]


def _with_store(args: argparse.Namespace, settings: Settings, handler: Handler) -> int:
    from serverlord.store import StoreError, open_for_command, open_store

    async def run() -> int:
        store = open_store(settings)
        await open_for_command(store)
        try:
            return await handler(args, settings, store)
        except StoreError as exc:
            raise CommandError(f"the store refused: {exc}") from exc
        finally:
            await store.close()

    return asyncio.run(run())


async def _add(args: argparse.Namespace, settings: Settings, store: Any) -> int:
    check = check_from_args(args)
    project = await project_or_default(store, args.project)
    check.project = project.id
    if args.no_channels:
        linked = []
    elif args.channel:
        wanted = channel_ids(",".join(args.channel))
        linked = await _known_channels(store, wanted, project.id)
    else:
        linked = [c.id for c in await store.project_channels(project.id)]
    # With its links, in one write: a channel removed meanwhile leaves no check.
    await store.add_checks([check], linked)

    url = f"{settings.resolved_base_url()}/ping/{check.id}"
    if args.json:
        data = _check_json(check, settings)
        data["channels"] = linked
        print_json(data)
    else:
        print(f"added check {check.name!r} ({check.schedule.describe()})")
        print(f"id:       {check.id}")
        print(f"ping URL: {url}")
        print(f"alerts go to {len(linked)} channel(s)")
    return 0


async def _channels(args: argparse.Namespace, settings: Settings, store: Any) -> int:
    check = await _get(store, args.id, args.project)
    if args.set is not None:
        wanted = await _known_channels(store, channel_ids(args.set), check.project)
        await store.set_check_channels(check.id, wanted)
    linked = await store.check_channels(check.id)
    if args.json:
        print_json({"uuid": check.id, "channels": linked})
    elif linked:
        print(f"check {check.name!r} alerts: {', '.join(linked)}")
    else:
        print(f"check {check.name!r} alerts no channel")
    return 0


async def _known_channels(store: Any, wanted: list[str], project: str) -> list[str]:
    for channel_id in wanted:
        channel = await store.get_channel(channel_id)
        # Alerts of a check go only to channels of its own project.
        if channel is None or channel.project != project:
            raise CommandError(f"no channel has the id {channel_id}")
    return wanted


def check_from_args(args: argparse.Namespace) -> Check:
    name = args.name.strip()
    if not name or len(name) > NAME_LIMIT or not name.isprintable():
        raise UsageError(f"name: must be 1 to {NAME_LIMIT} printable characters")
    for flag, value in (
        ("--cron", args.cron),
        ("--oncalendar", args.oncalendar),
        ("--period", args.period),
        ("--max-runtime", args.max_runtime),
        ("--remind-every", args.remind_every),
    ):
        if value is not None and not value.strip():
            raise UsageError(f"{flag}: must not be empty")
    if args.cron is not None:
        schedule = Schedule.cron(args.cron, args.tz)
    elif args.oncalendar is not None:
        schedule = Schedule.oncalendar(args.oncalendar, args.tz)
    else:
        if args.tz != "UTC":
            raise UsageError("--tz: applies to --cron and --oncalendar schedules only")
        period = _duration("--period", args.period or DEFAULT_PERIOD)
        schedule = Schedule.simple(period)
    if args.slug and not SLUG_RE.fullmatch(args.slug):
        raise UsageError(
            f"--slug: {args.slug!r} must be lowercase letters, digits, - and _ "
            f"(at most {SLUG_LIMIT} characters)"
        )
    if len(args.desc) > DESC_LIMIT:
        raise UsageError(f"--desc: longer than {DESC_LIMIT} characters")
    grace = _duration("--grace", args.grace)
    max_runtime = None
    if args.max_runtime:
        max_runtime = _duration("--max-runtime", args.max_runtime)
    for flag, value in (
        ("--failure-threshold", args.failure_threshold),
        ("--recovery-threshold", args.recovery_threshold),
    ):
        if not 1 <= value <= THRESHOLD_LIMIT:
            raise UsageError(f"{flag}: must be between 1 and {THRESHOLD_LIMIT}")
    reminder = None
    if args.remind_every:
        reminder = _duration("--remind-every", args.remind_every)
        if reminder < MIN_REMINDER:
            raise UsageError("--remind-every: at least 1m, so people can keep up")
    for tag in args.tag:
        if not tag or len(tag) > TAG_LIMIT or not tag.isprintable() or " " in tag:
            raise UsageError(
                f"tag: {tag!r} must be 1 to {TAG_LIMIT} characters, without spaces"
            )
    return Check(
        id=str(uuid.uuid4()),
        name=name,
        schedule=schedule,
        grace=grace,
        slug=args.slug,
        tags=" ".join(dict.fromkeys(args.tag)),
        desc=args.desc,
        max_runtime=max_runtime,
        manual_resume=args.manual_resume,
        created=time.time(),
        failure_threshold=args.failure_threshold,
        recovery_threshold=args.recovery_threshold,
        reminder_every=reminder,
    )


def _duration(flag: str, text: str) -> float:
    """A duration flag in seconds, within the bounds; errors name the flag."""
    try:
        return check_seconds(flag, parse_duration(text))
    except DurationError as exc:
        raise UsageError(f"{flag}: {exc}") from exc


async def _list(args: argparse.Namespace, settings: Settings, store: Any) -> int:
    from serverlord.render import check_line

    if args.project is None:
        checks = await store.list_checks()
    else:
        project = await find_project(store, args.project)
        checks = await store.project_checks(project.id)
    if args.json:
        print_json([_check_json(check, settings) for check in checks])
        return 0
    now = time.time()
    for check in checks:
        print(check_line(check, now))
    if not checks:
        print("no checks yet: add one with `serverlord check add NAME --period 5m`")
    return 0


async def _show(args: argparse.Namespace, settings: Settings, store: Any) -> int:
    from serverlord.render import attempt_json, check_details, flip_json, ping_json

    check = await _get(store, args.id, args.project)
    pings = await store.recent_pings(check.id, 10)
    flips = await store.recent_flips(check.id, 10)
    attempts = await store.recent_attempts(check.id, 10)
    if args.json:
        data = _check_json(check, settings)
        data["pings"] = [ping_json(ping) for ping in pings]
        data["flips"] = [flip_json(flip) for flip in flips]
        data["deliveries"] = [attempt_json(attempt) for attempt in attempts]
        print_json(data)
        return 0
    base = settings.resolved_base_url()
    print(check_details(check, base, pings, flips, time.time(), attempts))
    return 0


async def _pause(args: argparse.Namespace, settings: Settings, store: Any) -> int:
    found = await _get(store, args.id, args.project)
    check = await store.pause_check(found.id, time.time())
    return _report(args, settings, check, "paused")


async def _resume(args: argparse.Namespace, settings: Settings, store: Any) -> int:
    from serverlord.store import ConflictError

    found = await _get(store, args.id, args.project)
    try:
        check = await store.resume_check(found.id, time.time())
    except ConflictError as exc:
        raise CommandError(f"check {found.id}: {exc}") from exc
    return _report(args, settings, check, "resumed")


async def _remove(args: argparse.Namespace, settings: Settings, store: Any) -> int:
    check = await _get(store, args.id, args.project)
    await store.delete_check(check.id)
    report(
        args,
        {"uuid": check.id, "deleted": True},
        f"removed check {check.name!r} ({check.id})",
    )
    return 0


async def _get(store: Any, check_id: str, project: str | None = None) -> Check:
    try:
        canonical = str(uuid.UUID(check_id))
    except ValueError as exc:
        raise UsageError(f"id: {check_id!r} is not a check id (a uuid)") from exc
    check: Check | None = await store.get_check(canonical)
    if check is None or not await in_project(store, check.project, project):
        raise CommandError(f"no check has the id {canonical}")
    return check


def _report(
    args: argparse.Namespace, settings: Settings, check: Check, done: str
) -> int:
    if args.json:
        print_json(_check_json(check, settings))
    else:
        print(f"{done} check {check.name!r} ({check.id})")
    return 0


def _check_json(check: Check, settings: Settings) -> dict[str, Any]:
    from serverlord.render import check_json

    return check_json(check, settings.resolved_base_url())


if __name__ == "__main__":
    sys.exit(main())
