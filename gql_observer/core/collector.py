"""Python's cyclic garbage collector, paused while an event is delivered.

A watch's delivery of one event to thousands of viewers allocates thousands of
objects that live across its awaits (checked users, their state, the frames):
they survive young collections, get promoted, and soon trigger a full
(generation 2) collection, which then runs in the middle of the next delivery,
with every connection's objects to walk: 100 to 230 ms at 5,000 subscribers
(docs/performance.md). Nothing of a delivery needs the cyclic collector
(reference counting frees what is not in a cycle), so it is paused while any
delivery runs and resumed when the last one ends: whatever collection is due
then runs between events, not before their frames.

The collector is one per process, and so is the :class:`Collector` that pauses
it (:data:`collector`): deliveries on several event loops (threads) share its
count. A collector the application disabled itself is left alone, and a pause
never lasts longer than ``limit`` seconds: a daemon thread enables the
collector again when the deliveries of one pause take longer than that (it
stays enabled until they have all ended).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

__all__ = ["LIMIT", "Collector", "collector"]

logger = logging.getLogger(__name__)

#: Longest pause, in seconds, of the process's :data:`collector`.
LIMIT: Final = 2.0


class Collector:
    """Pauses the cyclic garbage collector while any of its :meth:`paused` blocks
    runs (see the module); thread-safe."""

    def __init__(self, *, limit: float = LIMIT) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        #: Paused blocks running now.
        self._running = 0
        #: Whether this collector disabled ``gc`` (and must enable it again).
        self._disabled = False
        self._deadline = 0.0
        self._watchdog: threading.Thread | None = None
        self._pid = 0
        #: Pauses that began (``gc`` disabled by this collector).
        self.pauses = 0
        #: Pauses ended by the limit rather than by their last block.
        self.expired = 0

    @property
    def pausing(self) -> bool:
        """Whether ``gc`` is disabled by this collector now."""
        return self._disabled

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Keep the cyclic collector disabled while the block runs (and any other
        paused block), at most :attr:`limit` seconds in a row."""
        self._enter()
        try:
            yield
        finally:
            self._exit()

    def _enter(self) -> None:
        with self._lock:
            self._running += 1
            # The first block of a pause decides: one that started while a pause
            # had expired leaves the collector running until they all end.
            if self._running == 1 and gc.isenabled():
                gc.disable()
                self._disabled = True
                self.pauses += 1
                self._deadline = time.monotonic() + self.limit
                self._ensure_watchdog()
                self._wake.notify()

    def _exit(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running == 0 and self._disabled:
                self._disabled = False
                gc.enable()

    def _ensure_watchdog(self) -> None:
        # Called with the lock held. A forked child has no threads: it starts its own.
        pid = os.getpid()
        if self._watchdog is not None and self._pid == pid and self._watchdog.is_alive():
            return
        self._pid = pid
        self._watchdog = threading.Thread(
            target=self._watch, name="gql_observer.collector", daemon=True
        )
        self._watchdog.start()

    def _watch(self) -> None:
        with self._lock:
            while True:
                if not self._disabled:
                    self._wake.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                self._disabled = False
                self.expired += 1
                gc.enable()
                logger.info(
                    "The garbage collector was paused for %.1f s by deliveries that are "
                    "still running: it runs again.",
                    self.limit,
                )


#: The process's collector pauser (the garbage collector is one per process).
collector: Final = Collector()
