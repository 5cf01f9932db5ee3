"""Changes submitted from any thread, handed over from one event loop in batches
(:class:`Batcher`): what a publisher sends to the channel layer and what a hub
hands to its own subscribers go through one."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Final

from gql_observer.changes.events import ChangeEvent
from gql_observer.core.backoff import next_delay

__all__ = ["WINDOW_GROWTH", "Batcher", "Handler"]

logger = logging.getLogger(__name__)

#: How far the batching window grows during a burst (times the setting).
WINDOW_GROWTH: Final = 8

#: Takes one batch (merged: the latest event per instance, in order); returns how
#: many events it keeps to try again (0: done with all of them).
Handler = Callable[[list[ChangeEvent]], Awaitable[int]]


class Batcher:
    """Changes from any thread, handed to ``handle`` from one loop, in batches.

    After a quiet spell the first change is handed over at once; after that a
    batch starts at most once per window, so a burst of changes to many
    instances costs a batch per window, not one per change. The window is
    ``window`` seconds and doubles after every batch that more changes were
    waiting behind, up to :data:`WINDOW_GROWTH` times ``window``. A batch
    holds the latest change of each instance. While ``handle`` keeps events
    to try again, the next batch comes after a backoff wait (or as soon as a
    new change comes), with whatever arrived meanwhile.
    """

    __slots__ = (
        "_done",
        "_handle",
        "_inbox",
        "_lingering",
        "_loop",
        "_pending",
        "_queue",
        "_setting",
        "_task",
        "kept",
        "window",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, window: float, handle: Handler) -> None:
        self._loop = loop
        self._setting = window
        self._handle = handle
        self._queue: asyncio.Queue[ChangeEvent] = asyncio.Queue()
        # Changes from other threads. While the batcher lingers they wait here
        # without waking its loop (a wake-up per save costs the writer a pipe
        # write and the process a switch of threads); the loop takes them when
        # the window ends.
        self._inbox: collections.deque[ChangeEvent] = collections.deque()
        self._lingering = False
        # Submitted, or kept by the handler, and not done with; guarded by _done.
        self._pending = 0
        self._done = threading.Condition()
        self._task: asyncio.Task[None] | None = None
        #: Events the handler keeps to try again.
        self.kept = 0
        #: The batching window now (seconds): the setting, or more during a burst.
        self.window = window

    @property
    def pending(self) -> int:
        """Changes submitted and not handled yet."""
        return self._pending

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def start(self, name: str) -> None:
        """Start handing over; call from the batcher's own loop."""
        self._task = self._loop.create_task(self._run(), name=name)

    async def stop(self, timeout: float) -> None:
        """Hand over what is queued (for at most ``timeout`` seconds), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained(), timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def submit(self, event: ChangeEvent) -> None:
        """Queue ``event``; safe from any thread, never blocks."""
        with self._done:
            self._pending += 1
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._queue.put_nowait(event)
            return
        # Appended before ``_lingering`` is read: if the loop has stopped
        # lingering by then, it is woken; if not, it takes the inbox after.
        self._inbox.append(event)
        if not self._lingering:
            self._loop.call_soon_threadsafe(self._take_inbox)

    def submit_many(self, events: list[ChangeEvent]) -> None:
        """Queue ``events`` in order (one bulk write's); safe from any thread,
        never blocks, wakes the loop at most once."""
        if not events:
            return
        with self._done:
            self._pending += len(events)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            for event in events:
                self._queue.put_nowait(event)
            return
        self._inbox.extend(events)
        if not self._lingering:
            self._loop.call_soon_threadsafe(self._take_inbox)

    def wait_idle(self, timeout: float) -> bool:
        """Block (from another thread) until every change submitted was handled."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def _take_inbox(self) -> None:
        inbox = self._inbox
        while inbox:
            self._queue.put_nowait(inbox.popleft())

    async def _drained(self) -> None:
        while self._pending:  # noqa: ASYNC110 - the counter is shared with other threads
            await asyncio.sleep(0.01)

    def _settle(self, count: int) -> None:
        if not count:
            return
        with self._done:
            self._pending -= count
            if self._pending == 0:
                self._done.notify_all()

    async def _next_batch(self, wait: float | None) -> tuple[int, list[ChangeEvent]]:
        """How many changes were taken, and the latest of each instance among them."""
        if wait is None:
            taken = [await self._queue.get()]
        else:
            try:
                taken = [await asyncio.wait_for(self._queue.get(), wait)]
            except TimeoutError:
                taken = []
        taken += [self._queue.get_nowait() for _ in range(self._queue.qsize())]
        merged: dict[str, ChangeEvent] = {}
        for event in taken:
            merged.pop(event["group"], None)  # keep the latest, in its place
            merged[event["group"]] = event
        return len(taken), list(merged.values())

    async def _run(self) -> None:
        delay: float | None = None
        while True:
            taken, batch = await self._next_batch(delay if self.kept else None)
            began = self._loop.time()
            in_play = self.kept + taken
            try:
                self.kept = await self._handle(batch)
            except Exception:
                logger.exception("Could not hand over %d change(s)", len(batch))
                self.kept = 0
            # Every change submitted or kept is pending until handled, superseded
            # (merged into a later one) or given up.
            self._settle(in_play - self.kept)
            if self.kept:
                delay = next_delay(delay)
                continue
            delay = None
            if self._setting > 0:
                await self._linger(began)

    async def _linger(self, began: float) -> None:
        # What is submitted meanwhile goes out together. While changes keep
        # coming, each linger is twice the last (up to WINDOW_GROWTH times the
        # setting): a long burst costs a few batches, one change goes at once.
        wait = began + self.window - self._loop.time()
        if wait > 0:
            self._lingering = True
            try:
                await asyncio.sleep(wait)
            finally:
                self._lingering = False
        self._take_inbox()
        if self._queue.empty():
            self.window = self._setting
        else:
            self.window = min(self.window * 2, self._setting * WINDOW_GROWTH)
