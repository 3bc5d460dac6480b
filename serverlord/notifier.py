"""The notifier: it delivers the outbox of alerts through Apprise.

Deliveries are claimed from the store with a lease, sent under a bound on
concurrent sends and a per-attempt timeout (each on a thread of its own, see
``serverlord.sending``), and every attempt is recorded. A failed attempt is
retried with exponential back-off and full jitter until ``notify_retry_for``
has passed since the delivery was created. Delivery is at least once: a
claim left unfinished by a crash or a stop runs out and the message goes out
again. A channel in an alert storm gets digests that carry many deliveries
in one message (see ``serverlord.digests``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections import Counter
from typing import Any

from serverlord import clock, digests
from serverlord.apprise_urls import body_limit, load_plugins
from serverlord.channels import (
    DOWN_ALERT,
    REMINDER,
    TEST,
    UP_ALERT,
    AttemptResult,
    Channel,
    Delivery,
)
from serverlord.config import Settings
from serverlord.sending import ERROR_CHARS, Sent, send_message
from serverlord.store.base import Store, StoreError
from serverlord.telemetry import NO_TELEMETRY, Telemetry
from serverlord.trouble import Trouble

__all__ = ["Notifier", "retry_at", "send_now"]

log = logging.getLogger(__name__)

POLL = 1.0
"""Longest sleep between two looks at the outbox: other processes add to it."""

MIN_TICK = 0.01
"""Shortest sleep: uvloop rounds shorter ones to zero, which would spin."""

ERROR_PAUSE = 1.0
"""Pause after the store failed, before trying again."""

STOP_WAIT = 2.0
"""How long ``stop`` waits for sends in flight before leaving them."""

CHANNEL_SLOTS = 16
"""Most send threads one channel may have running, timed out ones included."""
THREADS_PER_SLOT = 4
"""Send threads allowed per slot of concurrency, counting ones that timed out."""


def retry_at(
    delivery: Delivery, now: float, settings: Settings, rng: random.Random
) -> float | None:
    """When to try ``delivery`` again after a failed attempt, or None to give up.

    The wait doubles with each attempt up to ``notify_retry_max``; a random
    share of it (full jitter, at least half) keeps many deliveries that failed
    together from all coming back at once.
    """
    if now - delivery.created >= settings.notify_retry_for:
        return None
    doublings = min(max(delivery.attempts, 1) - 1, 60)
    ceiling = min(
        settings.notify_retry_max, settings.notify_retry_base * 2.0**doublings
    )
    return now + rng.uniform(0.5, 1.0) * ceiling


class Notifier:
    """Delivers the outbox of ``store`` until stopped."""

    def __init__(
        self, store: Store, settings: Settings, telemetry: Telemetry = NO_TELEMETRY
    ) -> None:
        self.store = store
        self.settings = settings
        self.telemetry = telemetry
        self._busy = 0
        """Messages claimed (a delivery, or a digest of many) not yet sent."""
        self._threads: Counter[str] = Counter()
        """Send threads still running, by channel, including ones that timed out."""
        self._wake = asyncio.Event()
        self._sends: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._stopping = False
        self._rng = random.Random()

    def start(self, *, release_claims: bool = True) -> None:
        """Start delivering in the background (call from the event loop).

        ``release_claims`` sends again what the last run left unfinished; only
        right when no other notifier shares the store (claims of another one
        still alive would be sent twice), else claims run out with their lease.
        """
        if self._loop is None:
            self._stopping = False
            self._loop = asyncio.create_task(self._run(release_claims), name="notifier")

    def wake(self) -> None:
        """Look at the outbox now: a delivery was just added."""
        self._wake.set()

    async def stop(self, wait: float = STOP_WAIT) -> None:
        """Stop claiming; wait up to ``wait`` for sends in flight, then leave them.

        A send left unfinished keeps its claim, which runs out (or is
        released at the next start): the message is sent again then.
        """
        self._stopping = True
        self._wake.set()
        if self._loop is not None:
            await asyncio.wait({self._loop}, timeout=wait)
            await _cancel({self._loop})
            self._loop = None

        if self._sends:
            _, pending = await asyncio.wait(set(self._sends), timeout=wait)
            await _cancel(pending)
        # Threads still sending are daemons: they end on their own socket
        # timeouts, or with the process.

    # The loop.

    async def _run(self, release_claims: bool) -> None:
        try:
            await asyncio.to_thread(load_plugins)
        except Exception:
            # Apprise loads them at the first message then, blocking the loop.
            log.exception(
                "could not load Apprise's plugins ahead",
                extra={"action": "plugins_failed"},
            )
        if release_claims:
            await self._release_claims()
        trouble = Trouble(log, "notifier cannot read the outbox", "outbox_failed")
        while not self._stopping:
            self._wake.clear()
            try:
                delay = await self._claim_and_send()
            except StoreError as exc:
                trouble.failed(exc)
                delay = ERROR_PAUSE
            except Exception:
                log.exception(
                    "notifier could not read the outbox; trying again shortly",
                    extra={"action": "outbox_failed"},
                )
                delay = ERROR_PAUSE
            else:
                trouble.ok()
            await self._sleep(delay)

    async def _release_claims(self) -> None:
        # The only notifier on the store: every claim found at start-up
        # belongs to a process that is gone.
        trouble = Trouble(
            log, "notifier cannot release old claims", "release_claims_failed"
        )
        while not self._stopping:
            try:
                released = await self.store.release_claims()
            except StoreError as exc:
                # A full disk or a locked database: one line, not a traceback.
                trouble.failed(exc)
                await self._sleep(ERROR_PAUSE)
                continue
            except Exception:
                log.exception(
                    "notifier could not release old claims; trying again shortly",
                    extra={"action": "outbox_failed"},
                )
                await self._sleep(ERROR_PAUSE)
                continue
            trouble.ok()
            if released:
                log.info(
                    "%d deliveries left unfinished by the last run will be sent",
                    released,
                    extra={"action": "claims_released", "count": released},
                )
            return

    async def _claim_and_send(self) -> float:
        """Start sends for what is due; return how long to sleep after."""
        free = self.settings.notify_concurrency - self._busy
        if free <= 0 or (self._busy and free < self.settings.notify_concurrency / 4):
            # Slots set free wake the loop; claiming a few at a time in a burst
            # would cost the store one write for every message.
            return POLL
        if sum(self._threads.values()) >= THREADS_PER_SLOT * (
            self.settings.notify_concurrency
        ):
            # Too many sends hang past their timeout: wait for some to end.
            return POLL

        # A channel whose receiver is slow keeps its threads busy long after
        # their attempts timed out: it gets no more until some are done, so
        # it cannot take every slot from the other channels.
        crowded = [c for c, n in self._threads.items() if n >= CHANNEL_SLOTS]
        now = clock.now()
        claimed = await self.store.claim_deliveries(
            now, free, self._lease(), crowded, CHANNEL_SLOTS, digests.DIGESTS
        )
        grouped = digests.messages(claimed)
        for message in grouped:
            self._busy += 1
            self._threads[message[0].channel_id] += 1
            if len(message) == 1:
                task = asyncio.create_task(self._deliver(message[0]))
            else:
                task = asyncio.create_task(self._deliver_digest(message))
            self._sends.add(task)
            task.add_done_callback(self._sent)
        if len(grouped) >= free or (crowded and not claimed):
            # There may be more due already; the next free slot, or a thread of
            # a crowded channel ending, wakes us.
            return POLL

        next_at = await self.store.next_delivery_at()
        if next_at is None:
            return POLL
        return min(POLL, next_at - clock.now())

    def _lease(self) -> float:
        # Long enough for the send, its timeout and the store write after it.
        return 2 * self.settings.notify_timeout + 30

    async def _sleep(self, delay: float) -> None:
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(delay, MIN_TICK)):
                await self._wake.wait()

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "a send task failed",
                exc_info=task.exception(),
                extra={"action": "delivery_crashed"},
            )
        self._wake.set()

    # One delivery.

    async def _deliver(self, delivery: Delivery) -> None:
        with self.telemetry.delivering(delivery) as delivered:
            try:
                result = await self._attempt(delivery)
            finally:
                self._busy -= 1
                self._wake.set()
            delivered(result)
            self._log(delivery, result)
            await self._record([delivery], result)

    # One digest.

    async def _deliver_digest(self, deliveries: list[Delivery]) -> None:
        """Send a digest, in as many parts as the service's message size needs.

        The parts go one after the other on the channel's slot; once one
        fails, the rest are not sent but retried with it, so the receiver is
        not flooded with parts while it is failing.
        """
        channel_id = deliveries[0].channel_id
        slot_taken = False
        failed: AttemptResult | None = None
        results: list[tuple[list[Delivery], AttemptResult]] = []
        try:
            limit = body_limit(deliveries[0].channel_url, self.settings.notify_timeout)
            for part in digests.parts(deliveries, limit):
                if failed is not None:
                    results.append((part.deliveries, _unsent(failed)))
                    continue
                if slot_taken:
                    self._threads[channel_id] += 1
                slot_taken = True
                outcomes = await self._attempt_part(part)
                results += outcomes
                failed = next((r for _, r in outcomes if not r.ok), None)
        finally:
            if not slot_taken:
                self._thread_done(channel_id)
            # The slot is free once the sends are done, as for a single
            # alert: the next claim need not wait for these records.
            self._busy -= 1
            self._wake.set()
        for members, result in results:
            await self._record(members, result)

    async def _attempt_part(
        self, part: digests.Part
    ) -> list[tuple[list[Delivery], AttemptResult]]:
        """Send one part of a digest; the results to record, by deliveries."""
        first = part.deliveries[0]
        with contextlib.ExitStack() as stack:
            counters = {
                d.id: stack.enter_context(self.telemetry.delivering(d))
                for d in part.deliveries
            }
            sent = await send_message(
                first.channel_url,
                part.title,
                part.body,
                _digest_kind(part.deliveries),
                self.settings.notify_timeout,
                done=lambda: self._thread_done(first.channel_id),
                log_extra={"channel_id": first.channel_id},
            )
            outcomes = self._digest_results(part.deliveries, sent)
            for members, result in outcomes:
                for delivery in members:
                    counters[delivery.id](result)
        self._log_digest(part, sent)
        return outcomes

    def _digest_results(
        self, deliveries: list[Delivery], sent: Sent
    ) -> list[tuple[list[Delivery], AttemptResult]]:
        """One result for all the deliveries of a part, but for those whose
        time to retry is over: they fail for good."""
        now = clock.now()
        if sent.error is None:
            return [(deliveries, AttemptResult(now, True, None, sent.latency, None))]

        over = [
            d
            for d in deliveries
            if sent.permanent or now - d.created >= self.settings.notify_retry_for
        ]
        given_up = {d.id for d in over}
        going_on = [d for d in deliveries if d.id not in given_up]
        outcomes = []
        if over:
            final = AttemptResult(now, False, sent.error, sent.latency, None)
            outcomes.append((over, final))
        if going_on:
            # One back-off for all, so that they come back as one digest.
            most_tried = max(going_on, key=lambda d: d.attempts)
            next_at = retry_at(most_tried, now, self.settings, self._rng)
            again = AttemptResult(now, False, sent.error, sent.latency, next_at)
            outcomes.append((going_on, again))
        return outcomes

    def _log_digest(self, part: digests.Part, sent: Sent) -> None:
        first = part.deliveries[0]
        extra = {
            "channel_id": first.channel_id,
            "delivery_ids": [d.id for d in part.deliveries],
        }
        if sent.error is None:
            log.debug(
                "digest of %d deliveries sent in %.3fs",
                len(part.deliveries),
                sent.latency,
                extra={**extra, "action": "digest_sent"},
            )
            return
        log.warning(
            "digest of %d deliveries to channel %s failed: %s",
            len(part.deliveries),
            first.channel_id,
            sent.error,
            extra={**extra, "action": "digest_failed"},
        )

    def _thread_done(self, channel_id: str) -> None:
        self._threads[channel_id] -= 1
        if self._threads[channel_id] <= 0:
            del self._threads[channel_id]
        self._wake.set()

    async def _attempt(self, delivery: Delivery) -> AttemptResult:
        sent = await send_message(
            delivery.channel_url,
            delivery.title,
            delivery.body,
            delivery.kind,
            self.settings.notify_timeout,
            done=lambda: self._thread_done(delivery.channel_id),
            log_extra=_ids(delivery),
        )
        now = clock.now()
        if sent.error is None:
            return AttemptResult(now, True, None, sent.latency, None)
        next_at = (
            None
            if sent.permanent
            else retry_at(delivery, now, self.settings, self._rng)
        )
        return AttemptResult(now, False, sent.error, sent.latency, next_at)

    async def _record(self, deliveries: list[Delivery], result: AttemptResult) -> None:
        # A result that is not recorded means sending again once the claim
        # runs out, so the store gets a few chances.
        delivery = deliveries[0]
        for pause in (0.1, 0.5, 1.0, 2.0, None):
            try:
                await self.store.finish_attempts(deliveries, result)
                return
            except Exception as exc:
                # The store's own trouble (the database away) says enough in
                # one line; anything else is a bug, with its traceback.
                trace = not isinstance(exc, StoreError)
                if pause is None or self._stopping:
                    log.error(
                        "could not record the attempt of delivery %s (%s); it "
                        "will be sent again when its claim runs out",
                        delivery.id,
                        exc,
                        exc_info=trace,
                        extra=_ids(delivery, action="attempt_not_recorded"),
                    )
                    return
                log.warning(
                    "could not record the attempt of delivery %s (%s); retrying",
                    delivery.id,
                    exc,
                    exc_info=trace,
                    extra=_ids(delivery, action="attempt_not_recorded"),
                )
                await asyncio.sleep(pause)

    def _log(self, delivery: Delivery, result: AttemptResult) -> None:
        if result.ok:
            log.debug(
                "delivery %s sent in %.3fs",
                delivery.id,
                result.latency,
                extra=_ids(delivery, action="delivery_sent"),
            )
            return
        then = (
            "given up"
            if result.next_attempt is None
            else f"next try in {result.next_attempt - result.at:.1f}s"
        )
        log.warning(
            "delivery %s failed (attempt %d, %s): %s",
            delivery.id,
            delivery.attempts,
            then,
            result.error,
            extra=_ids(
                delivery,
                action="delivery_failed",
                attempt=delivery.attempts,
                final=result.next_attempt is None,
            ),
        )


def _digest_kind(deliveries: list[Delivery]) -> str:
    """The kind a digest is shown as: down when any check went down."""
    kinds = {d.kind for d in deliveries}
    for kind in (DOWN_ALERT, REMINDER, UP_ALERT):
        if kind in kinds:
            return kind
    return TEST


def _unsent(failed: AttemptResult) -> AttemptResult:
    """The result of a digest's part left unsent after an earlier one failed."""
    error = f"not sent: an earlier part of its digest failed ({failed.error})"
    return dataclasses.replace(failed, error=error[:ERROR_CHARS], latency=0.0)


def _ids(delivery: Delivery, **fields: Any) -> dict[str, Any]:
    return {
        "delivery_id": delivery.id,
        "channel_id": delivery.channel_id,
        "check_id": delivery.check_id,
        **fields,
    }


async def _cancel(tasks: set[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)


async def send_now(
    store: Store, channel: Channel, title: str, body: str, settings: Settings
) -> AttemptResult:
    """Send one message to a channel at once, outside the outbox (a test), and
    note the result on the channel."""
    sent = await send_message(
        channel.url,
        title,
        body,
        TEST,
        settings.notify_timeout,
        log_extra={"channel_id": channel.id},
    )
    result = AttemptResult(
        at=clock.now(),
        ok=sent.error is None,
        error=sent.error,
        latency=sent.latency,
        next_attempt=None,
    )
    await store.note_channel_result(channel.id, result)
    return result
