"""Channels: where alerts go, as Apprise URLs, and the deliveries owed to them.

A flip that people should hear about writes one delivery per linked channel in
the same transaction as the flip itself (the outbox). The notifier claims
deliveries with a compare-and-set, sends them through Apprise and records every
attempt, so an alert survives any crash between the flip and the send.
"""

from __future__ import annotations

from dataclasses import dataclass

from serverlord.accounts import DEFAULT_PROJECT

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
DOWN_ALERT, UP_ALERT, REMINDER, TEST = "down", "up", "reminder", "test"


class ChannelError(ValueError):
    """A channel URL that Apprise cannot use; the message says why."""


@dataclass(slots=True)
class Channel:
    id: str
    name: str
    url: str
    """The Apprise URL; it often holds a secret, so show ``masked_url`` instead."""
    kind: str
    """Apprise's name for the service, like ``json``, ``slack`` or ``mailto``."""
    masked_url: str
    created: float
    last_attempt: float | None = None
    last_ok: bool | None = None
    last_error: str | None = None
    project: str = DEFAULT_PROJECT


@dataclass(slots=True)
class Delivery:
    """One message owed to one channel (a row of the outbox)."""

    id: int
    flip_id: int | None
    check_id: str | None
    channel_id: str
    channel_url: str
    kind: str
    title: str
    body: str
    attempts: int
    created: float


@dataclass(slots=True, frozen=True)
class Digests:
    """When a claim bundles a channel's deliveries into digest messages.

    A channel with at least ``storm_at`` deliveries due at once is in a storm:
    its deliveries are claimed ``per_digest`` to a message. Otherwise, and
    always without this rule, each delivery is a message of its own.
    """

    storm_at: int
    per_digest: int


@dataclass(slots=True, frozen=True)
class AttemptResult:
    """What one try to deliver gave, and what happens next."""

    at: float
    ok: bool
    error: str | None
    latency: float
    next_attempt: float | None
    """When to try again; None when the delivery is finished (sent or failed)."""
