"""``serverlord user``, ``project`` and ``key``: who may see and change what.

API keys are printed once, when they are made; the store keeps only a digest.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from typing import Any

from serverlord.accounts import (
    DEFAULT_PROJECT,
    KEY_ID_LENGTH,
    AccountError,
    ApiKey,
    Project,
    new_api_key,
    new_project,
    new_user,
)
from serverlord.errors import CommandError, UsageError
from serverlord.output import print_json, report

KEY_NAME_LIMIT = 100


def add_account_commands(commands: Any, common: Callable[..., None]) -> None:
    user = commands.add_parser("user", help="add users (each gets a project and keys)")
    actions = user.add_subparsers(title="actions", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add",
        help="add a user with a project; print its API keys and ping key once",
    )
    add.add_argument("email")
    common(add, _add_user, project=False)

    project = commands.add_parser("project", help="add or list projects")
    actions = project.add_subparsers(title="actions", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a project owned by a user")
    add.add_argument("name")
    add.add_argument("--owner", required=True, metavar="EMAIL", help="its owner")
    common(add, _add_project, project=False)
    common(actions.add_parser("list", help="list projects"), _list_projects, False)

    key = commands.add_parser("key", help="create, list or revoke API keys")
    actions = key.add_subparsers(title="actions", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create an API key; print it once")
    create.add_argument("project", help="the project's id or name")
    create.add_argument(
        "--read-only",
        action="store_true",
        help="it may only read checks, flips and badges",
    )
    create.add_argument("--name", default="", help="what the key is for")
    common(create, _create_key, project=False)
    listing = actions.add_parser("list", help="list a project's keys (never the keys)")
    listing.add_argument("project", help="the project's id or name")
    common(listing, _list_keys, project=False)
    revoke = actions.add_parser("revoke", help="revoke an API key at once")
    revoke.add_argument("key", help="the key, or its id (its first characters)")
    common(revoke, _revoke_key, project=False)


async def find_project(store: Any, text: str) -> Project:
    """The project with this id or, failing that, this unique name."""
    text = text.strip()
    try:
        project_id = str(uuid.UUID(text))
    except ValueError:
        project_id = None
    if project_id is not None:
        found: Project | None = await store.get_project(project_id)
        if found is not None:
            return found
    named: list[Project] = await store.projects_named(text)
    if not named:
        raise CommandError(f"no project has the id or name {text!r}")
    if len(named) > 1:
        ids = ", ".join(project.id for project in named)
        raise CommandError(
            f"{len(named)} projects are named {text!r}; give an id: {ids}"
        )
    return named[0]


async def in_project(store: Any, project_id: str, text: str | None) -> bool:
    """Whether the project named by ``text`` (any project when None) has this id."""
    return text is None or (await find_project(store, text)).id == project_id


async def project_or_default(store: Any, text: str | None) -> Project:
    return await find_project(store, DEFAULT_PROJECT if text is None else text)


async def _add_user(args: argparse.Namespace, settings: Any, store: Any) -> int:
    from serverlord.store import ConflictError

    now = time.time()
    try:
        user = new_user(args.email, now)
        project = new_project(user.email, user.id, now)
    except AccountError as exc:
        raise UsageError(str(exc)) from exc
    write_key, write_stored = new_api_key(project.id, False, now, "default")
    read_key, read_stored = new_api_key(project.id, True, now, "default read-only")
    try:
        await store.add_user(user, project, [write_stored, read_stored])
    except ConflictError as exc:
        raise CommandError(f"a user with the e-mail {user.email} exists") from exc

    if args.json:
        print_json(
            {
                "email": user.email,
                "project": project.id,
                "api_key": write_key,
                "api_key_readonly": read_key,
                "ping_key": project.ping_key,
            }
        )
        return 0
    print(f"added user {user.email} with project {project.name!r} ({project.id})")
    print(f"API key (read-write): {write_key}")
    print(f"API key (read-only):  {read_key}")
    print(f"ping key:             {project.ping_key}")
    print("the API keys are shown this once: keep them now")
    return 0


async def _add_project(args: argparse.Namespace, settings: Any, store: Any) -> int:
    owner = await store.get_user(args.owner)
    if owner is None:
        raise CommandError(f"no user has the e-mail {args.owner.strip()}")
    try:
        project = new_project(args.name, owner.id, time.time())
    except AccountError as exc:
        raise UsageError(str(exc)) from exc
    await store.add_project(project)
    if args.json:
        print_json(_project_json(project, owner.email))
        return 0
    print(f"added project {project.name!r} ({project.id}) owned by {owner.email}")
    print(f"ping key: {project.ping_key}")
    print(f"create its API keys with `serverlord key create {project.id}`")
    return 0


async def _list_projects(args: argparse.Namespace, settings: Any, store: Any) -> int:
    projects = await store.list_projects()
    if args.json:
        print_json([_project_json(project, email) for project, email in projects])
        return 0
    for project, email in projects:
        print(f"{project.id}  {project.name[:30]:<30} {email or '(no owner)'}")
    return 0


def _project_json(project: Project, owner_email: str | None) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "owner": owner_email,
        "ping_key": project.ping_key,
    }


async def _create_key(args: argparse.Namespace, settings: Any, store: Any) -> int:
    from serverlord.store import ConflictError

    name = args.name.strip()
    if len(name) > KEY_NAME_LIMIT or not name.isprintable():
        raise UsageError(f"--name: at most {KEY_NAME_LIMIT} printable characters")
    project = await find_project(store, args.project)
    # A new key whose id is taken (1 in 2**48 per key) is drawn again.
    for _ in range(3):
        key, stored = new_api_key(project.id, args.read_only, time.time(), name)
        try:
            await store.add_api_key(stored)
            break
        except ConflictError:
            continue
    else:
        raise CommandError("could not draw an unused key id; try again")

    kind = "read-only" if stored.read_only else "read-write"
    if args.json:
        print_json({**_key_json(stored), "key": key})
        return 0
    print(f"created a {kind} API key {stored.id} for project {project.name!r}")
    print(f"key: {key}")
    print("it is shown this once: keep it now")
    return 0


async def _list_keys(args: argparse.Namespace, settings: Any, store: Any) -> int:
    from serverlord.render import iso

    project = await find_project(store, args.project)
    keys = await store.list_api_keys(project.id)
    if args.json:
        print_json([_key_json(key) for key in keys])
        return 0
    for key in keys:
        kind = "read-only" if key.read_only else "read-write"
        state = "in use" if key.revoked is None else f"revoked {iso(key.revoked)}"
        print(f"{key.id}  {kind:<10} {key.name[:30]:<30} {state}")
    if not keys:
        print(f"project {project.name!r} has no API keys")
    return 0


async def _revoke_key(args: argparse.Namespace, settings: Any, store: Any) -> int:
    key_id = args.key.strip()[:KEY_ID_LENGTH]
    if len(key_id) != KEY_ID_LENGTH:
        raise UsageError(f"key: give the key or its {KEY_ID_LENGTH}-character id")
    if not await store.revoke_api_key(key_id, time.time()):
        raise CommandError(f"no API key in use has the id {key_id}")
    report(args, {"id": key_id, "revoked": True}, f"revoked API key {key_id}")
    return 0


def _key_json(key: ApiKey) -> dict[str, Any]:
    from serverlord.render import iso

    return {
        "id": key.id,
        "project": key.project,
        "read_only": key.read_only,
        "name": key.name,
        "created": iso(key.created),
        "revoked": iso(key.revoked),
    }
