"""``setup``: how fast users and checks of a realistic mix can be created.

On a started server's store the rows are written straight into the store
(users with a project and an API key each, checks spread over the projects);
against ``--url`` the checks are created through the management API with the
given key, in that key's project (the API makes no users).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

from serverlord.bench.api import api_client, call
from serverlord.bench.target import Target
from serverlord.bench.workload import Progress, add_checks, add_users, mixed_checks
from serverlord.errors import CommandError

API_CONCURRENCY = 32


async def populate(
    target: Target, users: int, checks: int, shown: bool, seed: int = 1
) -> dict[str, Any]:
    rng = random.Random(seed)
    store = target.open_store()
    await store.open()
    try:
        began = time.monotonic()
        projects = await add_users(store, users, Progress("users ", users, shown))
        users_s = time.monotonic() - began
        began = time.monotonic()
        written = await add_checks(
            store,
            mixed_checks(checks, projects, rng),
            Progress("checks", checks, shown),
        )
        checks_s = time.monotonic() - began
    finally:
        await store.close()
    return {
        "users": users,
        "users_s": users_s,
        "users_per_s": users / users_s if users else 0.0,
        "checks": written,
        "checks_s": checks_s,
        "checks_per_s": written / checks_s if written else 0.0,
    }


async def over_api(url: str, key: str, checks: int, shown: bool) -> dict[str, Any]:
    rng = random.Random(1)
    progress = Progress("checks", checks, shown)
    bodies = []
    for check in mixed_checks(checks, [], rng):
        body: dict[str, Any] = {"name": check.name, "grace": int(check.grace)}
        if check.schedule.kind == "simple":
            body["timeout"] = int(check.schedule.timeout or 60)
        else:
            body["schedule"] = check.schedule.expression
            body["tz"] = check.schedule.tz
        bodies.append(body)
    began = time.monotonic()
    async with api_client(url, key, API_CONCURRENCY) as client:
        for start in range(0, len(bodies), 500):
            chunk = bodies[start : start + 500]
            answers = await asyncio.gather(
                *(call(client, "POST", "/api/v3/checks/", json=b) for b in chunk)
            )
            failed = [a for a in answers if a.status_code not in (200, 201)]
            if failed:
                answer = failed[0]
                raise CommandError(
                    f"{url} refused a check: {answer.status_code} {answer.text[:200]}"
                )
            if not all(_is_check(answer) for answer in answers):
                raise CommandError(
                    f"{url} answered a new check without one: is it serverlord?"
                )
            progress.advance(len(chunk))
    seconds = time.monotonic() - began
    return {
        "users": 0,
        "checks": checks,
        "checks_s": seconds,
        "checks_per_s": checks / seconds if checks else 0.0,
    }


def _is_check(answer: Any) -> bool:
    try:
        body = answer.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "ping_url" in body


def run(args: argparse.Namespace, target: Target | None) -> dict[str, Any]:
    shown = not args.quiet
    if target is None:
        return asyncio.run(over_api(args.url, args.api_key, args.checks, shown))
    return asyncio.run(populate(target, args.users, args.checks, shown))


def rows(report: dict[str, Any]) -> list[tuple[str, Any]]:
    lines: list[tuple[str, Any]] = []
    if report.get("users"):
        lines += [
            ("users created", report["users"]),
            ("users per second", report["users_per_s"]),
        ]
    lines += [
        ("checks created", report["checks"]),
        ("seconds", report["checks_s"]),
        ("checks per second", report["checks_per_s"]),
    ]
    return lines
