"""Users with a project and keys, made in a store for the API tests."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from serverlord.accounts import (
    DEFAULT_PROJECT,
    Project,
    new_api_key,
    new_project,
    new_user,
)
from serverlord.channels import Channel


@dataclass
class Tenant:
    """A user's project with its read-write and read-only API keys."""

    project: Project
    write: str
    read: str

    @property
    def rw(self) -> dict[str, str]:
        return {"X-Api-Key": self.write}

    @property
    def ro(self) -> dict[str, str]:
        return {"X-Api-Key": self.read}


async def make_tenant(store: Any, email: str = "alice@example.com") -> Tenant:
    now = time.time()
    user = new_user(email, now)
    project = new_project(email, user.id, now)
    write, write_stored = new_api_key(project.id, False, now)
    read, read_stored = new_api_key(project.id, True, now)
    await store.add_user(user, project, [write_stored, read_stored])
    return Tenant(project, write, read)


def unreachable_channel(name: str, project: str = "") -> Channel:
    """A json:// channel to port 9 of 127.0.0.1, where nothing listens."""
    return Channel(
        id=str(uuid.uuid4()),
        name=name,
        url="json://127.0.0.1:9/",
        kind="json",
        masked_url="json://127.0.0.1:9/",
        created=time.time(),
        project=project or DEFAULT_PROJECT,
    )
