"""What a local subscription receives from its process's hub: a
:class:`Delivery` per change, through a buffer of one (:class:`Subscription`:
latest wins, a delete is never superseded), on one clock that keeps every
subscriber's states in commit order (:func:`tick`)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Final, Literal, TypeVar

from gql_observer.changes.events import LastValues

__all__ = ["CLOSED", "Delivery", "DeliveryAction", "Subscription", "Waiting", "tick"]

R = TypeVar("R")

#: ``close``: the hub shuts down (only :data:`CLOSED` carries it).
DeliveryAction = Literal["update", "delete", "close"]


# One clock for the reads of a loop: a read that starts after a subscription
# asked for its next delivery starts after that subscription's previous read
# finished.
_ticks = itertools.count(1)


def tick() -> int:
    """Now, on the reads' clock: a delivery that arrives later has a larger
    ``arrived``."""
    return next(_ticks)


class Delivery:
    """One change as the local subscriptions of its group see it.

    ``read`` shares one database read per permission context among the
    subscriptions that handle this delivery, with one exception that keeps
    every subscription's states in commit order: a subscription never adopts a
    read that started before it asked for this delivery (that read may have
    run before the subscription's previous one, and seen an older state). It
    reads again instead. On a database where a read that starts after another
    finished sees at least as much (one PostgreSQL or SQLite database, not
    asynchronous replicas), a subscription never delivers an older committed
    state after a newer one, whatever process wrote them and whatever order
    their events arrived in.
    """

    __slots__ = (
        "_not_before",
        "_reader",
        "_reads",
        "action",
        "arrived",
        "last",
        "resync",
    )

    def __init__(
        self, action: DeliveryAction, last: LastValues | None, *, resync: bool = False
    ) -> None:
        self.action: DeliveryAction = action
        self.last = last
        #: Sent after the hub lost the channel layer: nothing may have changed.
        self.resync = resync
        #: When it reached this process (on the reads' clock): its commit came before.
        self.arrived = next(_ticks)
        self._reads: dict[Hashable, tuple[int, asyncio.Future[Any]]] = {}
        self._not_before = 0
        self._reader: Subscription | None = None

    def _handed(self, tick: int, reader: Subscription) -> Delivery:
        """This delivery as ``reader``, which asked for it at ``tick``, sees it."""
        handed = Delivery.__new__(Delivery)
        handed.action, handed.last = self.action, self.last
        handed.resync, handed.arrived = self.resync, self.arrived
        handed._reads, handed._not_before, handed._reader = self._reads, tick, reader
        return handed

    async def read(self, key: Hashable, load: Callable[[], Awaitable[R]]) -> R:
        entry = self._reads.get(key)
        if entry is None or entry[0] < self._not_before:
            entry = (next(_ticks), asyncio.ensure_future(load()))
            self._reads[key] = entry
        if self._reader is not None:
            self._reader.read_from = max(self._reader.read_from, entry[0])
        # shield: one subscriber going away must not cancel the others' read.
        result: R = await asyncio.shield(entry[1])
        return result


#: Handed to subscriptions when the hub shuts down; never superseded.
CLOSED: Final = Delivery("close", None)


class Waiting:
    """What one reader waits on without a task of its own: a future exists only
    while the reader waits (an ``asyncio.Event`` per subscriber would cost more)."""

    __slots__ = ("_waiter",)

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        """Wake the reader, if one waits."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self) -> None:
        """Wait until :meth:`_wake`."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class Subscription(Waiting):
    """One local subscription to one group: a buffer of one, latest wins.

    Events carry identity, not data, so a newer change supersedes an older
    one that was not handled yet; a delete is never superseded. A client that
    reads slowly therefore costs one pending delivery, never a queue.
    """

    __slots__ = (
        "_pending",
        "delivered",
        "dropped",
        "group",
        "model_group",
        "read_from",
        "skipped",
    )

    def __init__(self, group: str, model_group: str | None = None) -> None:
        super().__init__()
        self.group = group
        #: The group of the instance's model (batches of changes arrive there).
        self.model_group = model_group
        self._pending: Delivery | None = None
        #: Deliveries merged into a later one because this subscriber was busy.
        self.dropped = 0
        #: Deliveries handed to the subscriber.
        self.delivered = 0
        #: Updates not handed over because a read that started after they
        #: arrived was delivered already (it saw their commit).
        self.skipped = 0
        #: When the last read this subscriber delivered started.
        self.read_from = 0

    @property
    def pending(self) -> int:
        """Deliveries waiting for the subscriber: 0 or 1, never more."""
        return 0 if self._pending is None else 1

    def push(self, delivery: Delivery) -> None:
        pending = self._pending
        if pending is not None:
            self.dropped += 1
            if pending.action != "update":  # a delete, or the hub's close
                return
        self._pending = delivery
        self._wake()

    async def next(self) -> Delivery:
        """The next delivery; waits without a task of its own."""
        tick = next(_ticks)
        while True:
            while self._pending is None:
                await self._sleep()
            delivery, self._pending = self._pending, None
            if delivery is CLOSED:
                return delivery
            if delivery.action == "update" and delivery.arrived < self.read_from:
                self.skipped += 1
                continue
            self.delivered += 1
            return delivery._handed(tick, self)
