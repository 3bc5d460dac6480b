"""Alert storms: many alerts due at once for one channel go out as digests.

A channel with a few alerts waiting gets each as its own message. When more
are due at once than it may send at once (``STORM_AT``: a host with many jobs
went down, a network cut), a chat would fill with messages and its service
would throttle them (Slack takes about one a second): the notifier claims
them ``PER_DIGEST`` to a message instead and sends digests that list one
alert a line. Every delivery in a digest is still claimed, attempted and
recorded on its own row, so retries, leases and at-least-once delivery work
as for single messages: a digest that fails is retried for all it carries.
"""

from __future__ import annotations

from dataclasses import dataclass

from serverlord.alerts import Listed, compose_digests
from serverlord.channels import TEST, Delivery, Digests

__all__ = [
    "DIGESTS",
    "DIGEST_CHARS",
    "PER_DIGEST",
    "STORM_AT",
    "Part",
    "messages",
    "parts",
]

STORM_AT = 17
"""Alerts due at once for one channel from which they go out as digests: more
than the channel may send at once (the notifier's ``CHANNEL_SLOTS``)."""

PER_DIGEST = 40
"""Most alerts one digest lists."""

DIGEST_CHARS = 4000
"""Longest digest body: what Slack, Telegram and the like show in full (a
service that takes less, like Discord, gets more, shorter digests)."""

DIGESTS = Digests(storm_at=STORM_AT, per_digest=PER_DIGEST)


@dataclass(slots=True, frozen=True)
class Part:
    """One message of a digest: its text and the deliveries it carries."""

    title: str
    body: str
    deliveries: list[Delivery]


def messages(claimed: list[Delivery]) -> list[list[Delivery]]:
    """The claimed deliveries grouped into the messages they go out as.

    A channel that got at least ``STORM_AT`` in the claim is in a storm: its
    alerts go ``PER_DIGEST`` to a digest. Anything else, and a channel test
    always, is a message of its own.
    """
    by_channel: dict[str, list[Delivery]] = {}
    for delivery in claimed:
        by_channel.setdefault(delivery.channel_id, []).append(delivery)

    grouped: list[list[Delivery]] = []
    for deliveries in by_channel.values():
        if len(deliveries) < STORM_AT:
            grouped += [[d] for d in deliveries]
            continue
        alerts = [d for d in deliveries if d.kind != TEST]
        grouped += [[d] for d in deliveries if d.kind == TEST]
        grouped += [
            alerts[i : i + PER_DIGEST] for i in range(0, len(alerts), PER_DIGEST)
        ]
    return grouped


def parts(deliveries: list[Delivery], body_limit: int | None) -> list[Part]:
    """The digest of ``deliveries`` as messages whose bodies fit the service."""
    max_chars = min(DIGEST_CHARS, body_limit or DIGEST_CHARS)
    listed = [Listed(d.kind, d.title, d.flip_id, d.check_id) for d in deliveries]
    found = []
    for digest in compose_digests(listed, max_chars):
        members = [deliveries[i] for i in digest.members]
        if len(members) == 1:
            # A service too small for two lines gets each alert as it is.
            [alone] = members
            found.append(Part(alone.title, alone.body, members))
        else:
            found.append(Part(digest.title, digest.body, members))
    return found
