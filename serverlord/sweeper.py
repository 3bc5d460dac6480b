"""Sharded sweepers: each shard sleeps until its earliest deadline, then flips.

A sweeper never scans all checks. Pings push deadlines into the heap of their
check's shard; the shard's task sleeps until the earliest one, confirms the
checks that fell due against the store (a ping may have moved them) and lets the
store flip them with a compare-and-set. Heap times are on the event loop's
monotonic clock (a deadline is turned into "so many seconds from now" when it
is set), and each sweep tells the store which deadline it timed, so that a step
of the system clock neither fires a deadline early nor holds it back (see
``serverlord.clock``).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from serverlord import clock
from serverlord.checks import Flip, shard_of
from serverlord.ownership import OfflineWindow
from serverlord.store.base import Due, Store, StoreError, SweepOutcome
from serverlord.telemetry import NO_TELEMETRY, Telemetry
from serverlord.trouble import Trouble

log = logging.getLogger(__name__)

MIN_TICK = 0.002
"""Shortest sleep: uvloop rounds shorter ones to zero and would busy-loop."""
MAX_SWEEP = 1000
"""Most checks confirmed against the store in one call.

A sweep is set-based, so its cost per check barely depends on its size (in
process, 1,000 or 30,000 checks a call cost the same within 10%), and the
store commits the sweeps of all shards waiting together in one transaction
anyway. A larger one would only hold the store's writer longer while pings
wait behind it."""
RETRY_AFTER = 1.0
"""Pause before confirming again when the store refused a sweep."""

FlipListener = Callable[[list[Flip], bool], None]
"""Told of the flips of a sweep, and whether it wrote deliveries."""


@dataclass(slots=True)
class _Offline:
    """A deadline that fell while serverlord was down, held back by one grace."""

    not_before: float
    since: float | None
    until: float
    fires: float = 0.0
    """When its heap entry fires, on the loop's clock."""


class Shard:
    """One sweeper: a heap of (monotonic time, deadline, check id) and a task.

    It sweeps the checks of every owned shard number that maps to it; a
    shard given up is forgotten at once.
    """

    def __init__(
        self,
        index: int,
        store: Store,
        on_flips: FlipListener,
        owned: set[int],
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self.index = index
        self.store = store
        self.on_flips = on_flips
        self.owned = owned
        self.telemetry = telemetry
        self._trouble = Trouble(
            log, f"sweeper {index} cannot confirm due checks", "sweep_failed"
        )
        self.heap: list[tuple[float, float, str]] = []
        self.deadlines: dict[str, float] = {}
        self.offline: dict[str, _Offline] = {}
        self.confirming: set[str] = set()
        """Checks whose heap time is when to confirm them, not a deadline."""
        self._waiter: asyncio.Future[None] | None = None

    def schedule(self, check_id: str, deadline: float | None) -> None:
        """Set (or clear, with None) the wall-clock deadline of one check."""
        self.offline.pop(check_id, None)
        self.confirming.discard(check_id)
        if deadline is None:
            self.deadlines.pop(check_id, None)
            return
        if self.deadlines.get(check_id) == deadline:
            return
        self.deadlines[check_id] = deadline
        self._push(check_id, deadline, deadline)

    def confirm(self, check_id: str, at: float) -> None:
        """Confirm the check against the store at ``at``, whatever its deadline
        (another process changed it): the store then judges by its clock."""
        self.schedule(check_id, at)
        self.confirming.add(check_id)

    def schedule_earlier(self, check_id: str, deadline: float) -> None:
        """Move a deadline earlier, never later.

        For news that may be older than what the shard knows: a deadline too
        early costs one confirmation, one too late a late alert.
        """
        current = self.deadlines.get(check_id)
        if current is None or deadline < current:
            self.schedule(check_id, deadline)

    def forget(self, shards: set[int]) -> None:
        """Drop every deadline of the checks of these shards."""
        gone = [cid for cid in self.deadlines if shard_of(cid) in shards]
        for check_id in gone:
            del self.deadlines[check_id]
            self.offline.pop(check_id, None)
            self.confirming.discard(check_id)
        self._compact()

    def hold_back(self, check_id: str, deadline: float, offline: _Offline) -> None:
        """Schedule a deadline missed while offline for one grace after start."""
        self.deadlines[check_id] = deadline
        self.offline[check_id] = offline
        offline.fires = self._push(check_id, deadline, offline.not_before)

    def _push(self, check_id: str, deadline: float, fire_at: float) -> float:
        loop_time = asyncio.get_running_loop().time()
        when = loop_time + (fire_at - clock.now())
        earliest = self.heap[0][0] if self.heap else None
        heapq.heappush(self.heap, (when, deadline, check_id))
        if earliest is None or when < earliest:
            self._wake()
        self._compact()
        return when

    def _compact(self) -> None:
        # Every moved deadline leaves a stale entry behind; rebuild the heap
        # when those outnumber the live ones.
        if len(self.heap) <= 2 * len(self.deadlines) + 1024:
            return
        live = {cid: at for cid, at in self.deadlines.items()}
        self.heap = [entry for entry in self.heap if live.get(entry[2]) == entry[1]]
        heapq.heapify(self.heap)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._sleep(loop)
            due = self._pop_due(loop.time())
            if due:
                await self._confirm(due)

    async def _sleep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._waiter = loop.create_future()
        timer = None
        if self.heap:
            when = max(self.heap[0][0], loop.time() + MIN_TICK)
            timer = loop.call_at(when, self._wake)
        try:
            await self._waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None

    def _pop_due(self, now: float) -> list[Due]:
        due: list[Due] = []
        while self.heap and self.heap[0][0] <= now and len(due) < MAX_SWEEP:
            when, deadline, check_id = heapq.heappop(self.heap)
            if self.deadlines.get(check_id) != deadline:
                continue
            held = self.offline.get(check_id)
            if held is not None and when < held.fires:
                # An entry of the same deadline pushed before the shard was
                # given up and taken again: the held-back one fires later.
                continue
            del self.deadlines[check_id]
            offline = self.offline.pop(check_id, None)
            if check_id in self.confirming:
                self.confirming.discard(check_id)
                due.append(Due(check_id))
            elif offline is None:
                due.append(Due(check_id, seen=deadline))
            else:
                due.append(
                    Due(
                        check_id,
                        offline.not_before,
                        offline.since,
                        offline.until,
                        seen=deadline,
                    )
                )
        return due

    async def _confirm(self, due: list[Due]) -> None:
        started = time.time_ns()  # the span's start, for tracing only
        clock.observe()
        try:
            outcomes = await self.store.sweep(due, clock.now())
        except StoreError as exc:
            self._trouble.failed(exc, logging.ERROR)
            await asyncio.sleep(RETRY_AFTER)
            self._requeue(due)
            return
        self._trouble.ok()
        with self.telemetry.sweep(self.index, len(due), outcomes, started):
            self._apply(outcomes)

    def _requeue(self, due: list[Due]) -> None:
        now = clock.now()
        for item in due:
            if shard_of(item.check_id) not in self.owned:
                continue
            if item.check_id in self.deadlines:
                continue  # news came meanwhile, with its own time
            if item.seen is None:
                self.confirm(item.check_id, now)
            else:
                self.schedule(item.check_id, item.seen)

    def _apply(self, outcomes: list[SweepOutcome]) -> None:
        flips = []
        notify = False
        for outcome in outcomes:
            # A shard given up while this sweep ran is no longer ours.
            if outcome.check_id not in self.deadlines and outcome.shard in self.owned:
                self.schedule(outcome.check_id, outcome.deadline)
            if outcome.flip is not None:
                flips.append(outcome.flip)
            notify = notify or outcome.notify
        if flips or notify:
            self.on_flips(flips, notify)


class Sweepers:
    """The sweepers of this process; shard number k goes to sweeper k % count.

    Only the shards this process owns are swept: news about a check of any
    other shard is ignored, as its owner hears of it.
    """

    def __init__(
        self,
        store: Store,
        count: int,
        on_flips: FlipListener,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self.owned: set[int] = set()
        self.shards = [
            Shard(i, store, on_flips, self.owned, telemetry) for i in range(count)
        ]
        self._tasks: list[asyncio.Task[None]] = []

    def shard_for(self, shard: int) -> Shard:
        return self.shards[shard % len(self.shards)]

    def schedule(self, shard: int, check_id: str, deadline: float | None) -> None:
        if shard in self.owned:
            self.shard_for(shard).schedule(check_id, deadline)

    def confirm(self, shard: int, check_id: str, at: float) -> None:
        if shard in self.owned:
            self.shard_for(shard).confirm(check_id, at)

    def schedule_earlier(self, shard: int, check_id: str, deadline: float) -> None:
        if shard in self.owned:
            self.shard_for(shard).schedule_earlier(check_id, deadline)

    def own(self, shards: list[int]) -> None:
        self.owned.update(shards)

    def disown(self, shards: list[int]) -> None:
        gone = set(shards)
        self.owned.difference_update(gone)
        for sweeper in self.shards:
            sweeper.forget(gone)

    def load(
        self, deadlines: list[tuple[str, int, float, float]], window: OfflineWindow
    ) -> int:
        """Add the deadlines of newly owned shards; return how many were held back.

        A check is held back one grace period from the end of the offline
        window when its ping fell due or its deadline fell in it: the job may
        have pinged while nobody listened.
        """
        held = 0
        for check_id, shard, deadline, grace in deadlines:
            if shard not in self.owned:
                continue
            target = self.shard_for(shard)
            if window.covers(deadline - grace, deadline):
                if check_id not in target.deadlines:
                    offline = _Offline(window.until + grace, window.since, window.until)
                    target.hold_back(check_id, deadline, offline)
                    held += 1
                continue
            # A ping since the shard was taken may know better, or worse.
            target.schedule_earlier(check_id, deadline)
        return held

    def heap_sizes(self) -> list[int]:
        return [len(shard.deadlines) for shard in self.shards]

    def start(self) -> None:
        for shard in self.shards:
            task = asyncio.create_task(shard.run(), name=f"sweeper-{shard.index}")
            self._tasks.append(task)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
