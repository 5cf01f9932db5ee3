"""The per-process hub: one channel-layer channel for every subscription of a
server process.

The hub's channel joins an instance's group while at least one local
subscription watches that instance, receives each change once, and hands it to
the local subscriptions in memory. A change therefore costs one channel-layer
delivery per server process, not one per subscriber; and a subscription only
ever sees events of its own group.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Final, TypeVar

from channels.layers import InMemoryChannelLayer, channel_layers

from .events import CHANGE, Action, ChangeEvent, LastValues
from .publish import Publisher, set_local_publisher
from .settings import get_settings

__all__ = ["CLOSED", "Delivery", "Hub", "Subscription", "current_hub", "get_hub"]

logger = logging.getLogger(__name__)
R = TypeVar("R")


class Delivery:
    """One change as the local subscriptions of its group see it.

    ``read`` shares one database read per permission context among every
    subscription that handles this delivery.
    """

    __slots__ = ("_reads", "action", "last", "resync")

    def __init__(self, action: Action, last: LastValues | None, *, resync: bool = False) -> None:
        self.action: Action = action
        self.last = last
        self.resync = resync
        self._reads: dict[Hashable, asyncio.Future[Any]] = {}

    async def read(self, key: Hashable, load: Callable[[], Awaitable[R]]) -> R:
        future = self._reads.get(key)
        if future is None:
            future = asyncio.ensure_future(load())
            self._reads[key] = future
        # shield: one subscriber going away must not cancel the others' read.
        result: R = await asyncio.shield(future)
        return result


#: Handed to subscriptions when the hub shuts down.
CLOSED: Final = Delivery("delete", None)


class Subscription:
    """One local subscription to one group: a buffer of one, latest wins.

    Events carry identity, not data, so a newer change supersedes an older
    one that was not handled yet; a delete is never superseded.
    """

    __slots__ = ("_pending", "_waiter", "dropped", "group")

    def __init__(self, group: str) -> None:
        self.group = group
        self._pending: Delivery | None = None
        self._waiter: asyncio.Future[None] | None = None
        #: Deliveries merged into a later one because this subscriber was busy.
        self.dropped = 0

    def push(self, delivery: Delivery) -> None:
        pending = self._pending
        if pending is not None:
            self.dropped += 1
            if pending.action == "delete":
                return
        self._pending = delivery
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self) -> Delivery:
        """The next delivery; waits without a task of its own."""
        while self._pending is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        delivery, self._pending = self._pending, None
        return delivery


class Hub:
    """Group membership and local dispatch for one event loop (one per process)."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.loop = asyncio.get_running_loop()
        self.channel: str | None = None
        self.groups: dict[str, set[Subscription]] = {}
        #: Groups the hub's channel is a member of in the layer.
        self.joined: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.publisher: Publisher | None = None
        if isinstance(layer, InMemoryChannelLayer):
            self.publisher = Publisher(layer, self.loop, get_settings()["PUBLISH_TIMEOUT"])
            self.publisher.start()
            set_local_publisher(self.publisher)
        self._ready = self._spawn(self._start(), "gql_observer.hub.start")

    # -- lifecycle ---------------------------------------------------------

    def _spawn(self, coro: Awaitable[R], name: str) -> asyncio.Task[R]:
        task: asyncio.Task[R] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _start(self) -> None:
        # The layer's default prefix: channels_redis receives every process-local
        # channel of one layer instance through one shared prefix.
        self.channel = await self.layer.new_channel()
        self._spawn(self._receive_loop(), "gql_observer.hub.receive")
        self._spawn(self._refresh_loop(), "gql_observer.hub.refresh")

    async def close(self) -> None:
        """Complete every local subscription, leave every group, stop."""
        if self._closed:
            return
        self._closed = True
        for subscriptions in self.groups.values():
            for subscription in subscriptions:
                subscription.push(CLOSED)
        if self.channel is not None:
            for group in list(self.joined):
                try:
                    await self.layer.group_discard(group, self.channel)
                except Exception:
                    logger.exception("Could not leave group %s", group)
            self.joined.clear()
        if self.publisher is not None:
            await self.publisher.stop()
            set_local_publisher(None)
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        global _hub
        if _hub is self:
            _hub = None

    @property
    def tasks(self) -> set[asyncio.Task[Any]]:
        """The hub's own tasks (for tests: nothing is left after ``close``)."""
        return set(self._tasks)

    # -- membership ----------------------------------------------------------

    async def join(self, group: str) -> Subscription:
        """Subscribe locally to ``group``; the hub's channel is in the group on return."""
        if self._closed:
            raise RuntimeError("The hub is closed.")
        await self._ready
        subscription = Subscription(group)
        self.groups.setdefault(group, set()).add(subscription)
        try:
            async with self._lock(group):
                if group not in self.joined:
                    await self.layer.group_add(group, self.channel)
                    self.joined.add(group)
        except BaseException:
            self.leave(subscription)
            raise
        return subscription

    def leave(self, subscription: Subscription) -> None:
        """Forget ``subscription``; the group is left when its last one goes.

        Synchronous, so it is safe in a ``finally`` of a cancelled task.
        """
        group = subscription.group
        subscriptions = self.groups.get(group)
        if subscriptions is None:
            return
        subscriptions.discard(subscription)
        if not subscriptions:
            del self.groups[group]
            if not self._closed:
                self._spawn(self._discard(group), "gql_observer.hub.discard")

    def _lock(self, group: str) -> asyncio.Lock:
        lock = self._locks.get(group)
        if lock is None:
            lock = self._locks[group] = asyncio.Lock()
        return lock

    async def _discard(self, group: str) -> None:
        lock = self._lock(group)
        async with lock:
            if group in self.joined and not self.groups.get(group):
                try:
                    await self.layer.group_discard(group, self.channel)
                except Exception:
                    logger.exception("Could not leave group %s", group)
                self.joined.discard(group)
        if group not in self.groups and not lock.locked() and self._locks.get(group) is lock:
            del self._locks[group]

    async def _refresh_loop(self) -> None:
        # channels_redis forgets memberships after group_expiry; renew them well before.
        interval = get_settings()["GROUP_REFRESH_INTERVAL"]
        if interval is None:
            interval = max(1.0, float(getattr(self.layer, "group_expiry", 86400)) / 2)
        while True:
            await asyncio.sleep(interval)
            await self._add_all()

    async def _add_all(self) -> None:
        for group in list(self.joined):
            await self.layer.group_add(group, self.channel)

    # -- receiving -----------------------------------------------------------

    async def _receive_loop(self) -> None:
        delay = 0.1
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Channel layer receive failed; reconnecting in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                await self._recover()
                continue
            delay = 0.1
            self.dispatch(message)

    async def _recover(self) -> None:
        """Re-join every group, then let every subscriber re-read: what was
        published while the layer was unreachable is lost, the state is not."""
        delay = 0.1
        while True:
            try:
                await self._add_all()
                break
            except Exception:
                logger.warning("Channel layer still unreachable; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        for group, subscriptions in self.groups.items():
            delivery = Delivery("update", None, resync=True)
            for subscription in list(subscriptions):
                subscription.push(delivery)
            logger.info("Resynchronised %d subscription(s) of %s", len(subscriptions), group)

    def dispatch(self, message: dict[str, Any]) -> None:
        """Hand one channel-layer message to the local subscriptions of its group."""
        if message.get("type") != CHANGE:
            logger.warning("Ignored a message of type %r", message.get("type"))
            return
        event: ChangeEvent = message  # type: ignore[assignment]
        subscriptions = self.groups.get(event["group"])
        if not subscriptions:
            return
        delivery = Delivery(event["action"], event["last"])
        for subscription in list(subscriptions):
            subscription.push(delivery)


_hub: Hub | None = None


def current_hub() -> Hub | None:
    """This loop's hub, if one was started."""
    return _hub


def get_hub() -> Hub:
    """The hub of the running event loop, started on first use."""
    global _hub
    loop = asyncio.get_running_loop()
    if _hub is None or _hub.loop is not loop or _hub._closed:
        _hub = Hub(channel_layers[get_settings()["CHANNEL_LAYER"]])
    return _hub
