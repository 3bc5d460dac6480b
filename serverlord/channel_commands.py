"""``serverlord channel``: add, list, test and remove Apprise channels."""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from typing import Any

from serverlord.channels import Channel, ChannelError
from serverlord.errors import CommandError, UsageError
from serverlord.output import print_json, report

NAME_LIMIT = 100
URL_LIMIT = 4096


def add_channel_commands(commands: Any, common: Callable[..., None]) -> None:
    channel = commands.add_parser(
        "channel", help="add, list, test or remove alert channels (Apprise URLs)"
    )
    actions = channel.add_subparsers(title="actions", metavar="ACTION", required=True)

    add = actions.add_parser(
        "add",
        help="add a channel from an Apprise URL",
        description="Add a channel. URL is any Apprise URL, for example "
        "slack://TOKEN_A/TOKEN_B/TOKEN_C, discord://ID/TOKEN, "
        "mailtos://user:pass@example.com or json://host/path.",
    )
    add.add_argument("url", help="Apprise URL")
    add.add_argument("--name", default="", help="a name for people")
    common(add, _add)

    common(actions.add_parser("list", help="list channels, URLs masked"), _list)
    for name, helptext, handler in (
        ("test", "send a test message now and print the result", _test),
        ("rm", "remove a channel", _remove),
    ):
        sub = actions.add_parser(name, help=helptext)
        sub.add_argument("id", help="the channel's id")
        common(sub, handler)

    service_list = actions.add_parser(
        "services",
        help="list the services Apprise can send to from here, with their schemes",
    )
    service_list.add_argument("--json", action="store_true", help="print JSON")
    service_list.set_defaults(run=_services)


def channel_ids(text: str) -> list[str]:
    """Channel ids from ``ID,ID``, each once; each must be a uuid."""
    ids = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            ids.append(str(uuid.UUID(part)))
        except ValueError as exc:
            raise UsageError(f"channel: {part!r} is not a channel id") from exc
    return list(dict.fromkeys(ids))


async def _add(args: argparse.Namespace, settings: Any, store: Any) -> int:
    from serverlord.apprise_urls import describe_url

    url = args.url.strip()
    name = args.name.strip()
    if len(url) > URL_LIMIT:
        raise UsageError(f"url: longer than {URL_LIMIT} characters")
    if len(name) > NAME_LIMIT or not name.isprintable():
        raise UsageError(f"--name: must be at most {NAME_LIMIT} printable characters")
    try:
        kind, masked = describe_url(url)
    except ChannelError as exc:
        raise UsageError(f"url: {exc}") from exc

    from serverlord.account_commands import project_or_default

    project = await project_or_default(store, args.project)
    channel = Channel(
        project=project.id,
        id=str(uuid.uuid4()),
        name=name or kind,
        url=url,
        kind=kind,
        masked_url=masked,
        created=time.time(),
    )
    await store.add_channel(channel)
    if args.json:
        print_json(channel_json(channel))
    else:
        print(f"added channel {channel.name!r} ({masked})")
        print(f"id: {channel.id}")
        print(
            "new checks alert it by default; link existing ones with "
            f"`serverlord check channels CHECK_ID --set {channel.id}`"
        )
    return 0


async def _list(args: argparse.Namespace, settings: Any, store: Any) -> int:
    from serverlord.account_commands import find_project

    if args.project is None:
        channels = await store.list_channels()
    else:
        project = await find_project(store, args.project)
        channels = await store.project_channels(project.id)
    if args.json:
        print_json([channel_json(channel) for channel in channels])
        return 0
    for channel in channels:
        print(f"{channel.id}  {channel.name[:24]:<24} {channel.masked_url}")
        print(f"    last delivery: {last_result(channel)}")
    if not channels:
        print(
            "no channels yet: add one with "
            "`serverlord channel add 'slack://TOKEN_A/TOKEN_B/TOKEN_C'`"
        )
    return 0


async def _test(args: argparse.Namespace, settings: Any, store: Any) -> int:
    from serverlord.alerts import compose_test
    from serverlord.notifier import send_now

    channel = await _get(store, args.id, args.project)
    title, body = compose_test(channel.name, time.time())
    result = await send_now(store, channel, title, body, settings)
    if args.json:
        print_json(
            {
                "id": channel.id,
                "ok": result.ok,
                "error": result.error,
                "latency": result.latency,
            }
        )
    elif result.ok:
        print(f"sent a test message to {channel.name!r} in {result.latency:.2f}s")
    if not result.ok:
        raise CommandError(f"test message to {channel.name!r} failed: {result.error}")
    return 0


def _services(args: argparse.Namespace, settings: Any) -> int:
    from serverlord.apprise_urls import services

    found = services()
    if args.json:
        print_json(
            [
                {"name": s.name, "schemes": list(s.schemes), "enabled": s.enabled}
                for s in found
            ]
        )
        return 0
    for service in found:
        mark = "" if service.enabled else "  (disabled: a library it needs is missing)"
        print(
            f"{service.name:<32} {' '.join(s + '://' for s in service.schemes)}{mark}"
        )
    return 0


async def _remove(args: argparse.Namespace, settings: Any, store: Any) -> int:
    channel = await _get(store, args.id, args.project)
    await store.delete_channel(channel.id)
    report(
        args,
        {"id": channel.id, "deleted": True},
        f"removed channel {channel.name!r} ({channel.id})",
    )
    return 0


async def _get(store: Any, text: str, project: str | None) -> Channel:
    from serverlord.account_commands import in_project

    channel_id = channel_ids(text)
    if len(channel_id) != 1:
        raise UsageError(f"{text!r} is not a channel id")
    channel: Channel | None = await store.get_channel(channel_id[0])
    if channel is None or not await in_project(store, channel.project, project):
        raise CommandError(f"no channel has the id {channel_id[0]}")
    return channel


def last_result(channel: Channel) -> str:
    if channel.last_attempt is None:
        return "none yet"
    from serverlord.render import iso

    when = iso(channel.last_attempt)
    if channel.last_ok:
        return f"ok at {when}"
    return f"FAILED at {when}: {channel.last_error or 'unknown error'}"


def channel_json(channel: Channel) -> dict[str, Any]:
    from serverlord.render import iso

    return {
        "id": channel.id,
        "name": channel.name,
        "kind": channel.kind,
        "url": channel.masked_url,
        "last_attempt": iso(channel.last_attempt),
        "last_ok": channel.last_ok,
        "last_error": channel.last_error,
    }
