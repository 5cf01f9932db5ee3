"""The per-process hub: one channel-layer channel for every subscription of a
server process.

The hub's channel joins an instance's group while at least one local
subscription watches that instance, receives each change once, and hands it to
the local subscriptions in memory. A change therefore costs one channel-layer
delivery per server process, not one per subscriber; and a subscription only
ever sees events of its own group. Its :class:`~gql_observer.fanout.watchdog.Watchdog`
keeps the channel alive through failures of the layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from gql_observer.changes.batching import Batcher
from gql_observer.changes.events import CHANGE, CHANGES, PROBE, ChangeEvent
from gql_observer.changes.layers import HUB_CHANNEL_PREFIX, ChannelLayer, hub_capacity, in_memory
from gql_observer.changes.outbox import Outbox
from gql_observer.core.conf import Settings
from gql_observer.fanout.delivery import CLOSED, Delivery, Subscription
from gql_observer.fanout.membership import Membership

if TYPE_CHECKING:
    from gql_observer.fanout.rowsets import RowsSubscription
from gql_observer.fanout.watchdog import Watchdog

__all__ = ["Hub"]

logger = logging.getLogger(__name__)
R = TypeVar("R")


class Hub:
    """Group membership and local dispatch for one event loop (one per process).

    With the in-memory layer the process's changes come to the hub straight
    from its outbox; with a layer between processes they come through its
    channel, and, with in-process delivery on, a change committed in this very
    process comes straight too (its copy from the layer is then skipped).
    """

    def __init__(self, layer: ChannelLayer, settings: Settings, outbox: Outbox) -> None:
        self.layer = layer
        self.loop = asyncio.get_running_loop()
        self.outbox = outbox
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._timeout = settings.publish_timeout
        self._window = settings.publish_batch_window
        self.membership = Membership(layer, self._timeout, self.spawn, settings.group_prefix)
        #: Names this hub in the changes handed to it in-process.
        self.token = uuid.uuid4().hex
        self._pid = os.getpid()
        #: Changes handed over in-process by a writer of this process.
        self.delivered_here = 0
        #: Their copies that came back through the channel layer, skipped.
        self.echoes_skipped = 0
        hub_capacity(layer, settings.hub_capacity)  # for its own probes
        self.watchdog = Watchdog(self, settings)
        #: Hands this process's changes to the hub from any thread, batched as a
        #: publisher batches (a burst wakes the loop once per window): all of
        #: them with the in-memory layer, those committed here with in-process
        #: delivery on a layer between processes.
        self.in_process: Batcher | None = None
        if in_memory(layer):
            # Nothing outside this loop can break it: no probes.
            self.watchdog.interval = None
            self.in_process = self._batcher(self._dispatch_local)
            outbox.attach_local(self.in_process)
        elif settings.deliver_in_process:
            self.in_process = self._batcher(self._dispatch_in_process)
            outbox.attach_hub(self.deliver_in_process)
        self._ready = self.spawn(self._start(), "gql_observer.hub.start")

    def _batcher(self, handle: Callable[[list[ChangeEvent]], Awaitable[int]]) -> Batcher:
        batcher = Batcher(self.loop, self._window, handle)
        batcher.start("gql_observer.hub.in_process")
        return batcher

    # ---- lifecycle ----------------------------------------------------------------------

    def spawn(self, coro: Awaitable[R], name: str) -> asyncio.Task[R]:
        """A task of the hub's (cancelled when it closes)."""
        task: asyncio.Task[R] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _start(self) -> None:
        # A name of its own, so that writers can give it room (HUB_CAPACITY);
        # the hub's layer instance is its own, so the prefix shares nothing.
        if in_memory(self.layer):
            self.membership.channel = await self.layer.new_channel()
        else:
            self.membership.channel = await self.layer.new_channel(prefix=HUB_CHANNEL_PREFIX)
        self.watchdog.start()

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Complete every local subscription, leave every group, stop."""
        if self._closed:
            return
        self._closed = self.membership.closed = True
        self.outbox.detach_hub(self.deliver_in_process)
        for subscriptions in self.groups.values():
            for subscription in subscriptions:
                subscription.push(CLOSED)
        await self._cancel_tasks()
        if self.channel is not None:
            for group in self.watchdog.groups():
                try:
                    await asyncio.wait_for(
                        self.layer.group_discard(group, self.channel), self._timeout
                    )
                except Exception:
                    logger.exception("Could not leave group %s", group)
            self.joined.clear()
        if self.in_process is not None:
            self.outbox.detach_local(self.in_process)
            await self.in_process.stop(self._timeout)
        close_pools = getattr(self.layer, "close_pools", None)  # the hub's own instance
        if close_pools is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close_pools(), self._timeout)

    async def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        # Bounded: a channel layer's receive that does not end when cancelled
        # (channels_redis waits on Redis for its clean-up, up to the
        # connection's socket timeout) must not hold the shutdown.
        _, stuck = await asyncio.wait(tasks, timeout=self._timeout)
        if stuck:
            logger.warning(
                "%d hub task(s) did not stop within %.1fs of being cancelled: %s",
                len(stuck),
                self._timeout,
                ", ".join(sorted(t.get_name() for t in stuck)),
            )

    @property
    def tasks(self) -> set[asyncio.Task[Any]]:
        """The hub's own tasks (nothing is left after ``close``)."""
        return set(self._tasks)

    def stats(self) -> dict[str, int]:
        """Counters for metrics and tests.

        ``dropped``: deliveries merged into a later one because a subscriber
        was busy (a slow client), including subscriptions that have ended;
        ``pending``: deliveries waiting for their subscriber (at most one per
        subscription); ``layer_failures``, ``resyncs`` and ``overflows``: see
        the :class:`~gql_observer.fanout.watchdog.Watchdog`; ``delivered_here``
        and ``echoes_skipped``: in-process delivery.
        """
        live = [s for subscriptions in self.groups.values() for s in subscriptions]
        return {
            "subscriptions": len(live),
            "groups": len(self.groups),
            "pending": sum(s.pending for s in live),
            "dropped": self.membership.dropped_by_gone + sum(s.dropped for s in live),
            "layer_failures": self.watchdog.layer_failures,
            "resyncs": self.watchdog.resyncs,
            "overflows": self.watchdog.overflows,
            "delivered_here": self.delivered_here,
            "echoes_skipped": self.echoes_skipped,
        }

    # ---- membership -------------------------------------------------------------------

    @property
    def channel(self) -> str | None:
        """The hub's channel (once started)."""
        return self.membership.channel

    @property
    def groups(self) -> dict[str, set[Subscription]]:
        """Instance groups -> the local subscriptions of that instance."""
        return self.membership.groups

    @property
    def model_groups(self) -> dict[str, set[Subscription]]:
        """Model groups -> the local subscriptions of that model."""
        return self.membership.model_groups

    @property
    def joined(self) -> set[str]:
        """Groups the hub's channel is a member of in the layer."""
        return self.membership.joined

    async def join(self, group: str, model_group: str | None = None) -> Subscription:
        """Subscribe locally to ``group`` (an instance's), and to ``model_group``
        (its model's, where batches of changes arrive)."""
        if self._closed:
            raise RuntimeError("The hub is closed.")
        await self._ready
        return await self.membership.join(group, model_group)

    async def join_rows(self, model_label: str) -> RowsSubscription:
        """Subscribe locally to every change of the model ``model_label`` (a
        list subscriber), through its model's group."""
        if self._closed:
            raise RuntimeError("The hub is closed.")
        await self._ready
        return await self.membership.join_rows(model_label)

    def leave(self, subscription: Subscription) -> None:
        """Forget ``subscription`` (synchronous: safe in a ``finally``)."""
        self.membership.leave(subscription)

    def resync_all(self) -> int:
        """Let every subscription re-read its instance; returns how many."""
        count = 0
        for subscriptions in self.groups.values():
            delivery = Delivery("update", None, resync=True)
            for subscription in list(subscriptions):
                subscription.push(delivery)
                count += 1
        return count

    # ---- dispatch -----------------------------------------------------------------------

    def dispatch(self, message: dict[str, Any]) -> None:
        """Hand one channel-layer message to the local subscriptions of its group."""
        kind = message.get("type")
        if kind == PROBE:
            self.watchdog.probe_came(message)
            return
        if kind == CHANGES:
            events: list[ChangeEvent] = list(message.get("events") or ())
        elif kind == CHANGE:
            events = [message]  # type: ignore[list-item]
        else:
            logger.warning("Ignored a message of type %r", kind)
            return
        for event in events:
            if event.get("delivered") == self.token:
                self.echoes_skipped += 1  # handed over in this process already
            else:
                self._dispatch_change(event)

    def deliver_in_process(self, event: ChangeEvent) -> str | None:
        """Hand a change committed in this process to the local subscriptions,
        from any thread (see :meth:`Outbox.attach_hub`); the token the channel
        layer's copy will carry, or ``None`` if the hub cannot take it."""
        batcher = self.in_process
        if batcher is None or self._closed or os.getpid() != self._pid:
            # A forked child must not mark changes as delivered by its parent's hub.
            return None
        try:
            batcher.submit(event)
        except RuntimeError:  # the loop is closed
            return None
        return self.token

    async def _dispatch_local(self, events: list[ChangeEvent]) -> int:
        """One batch of this process's changes (the in-memory layer)."""
        for event in events:
            self._dispatch_change(event)
        return 0

    async def _dispatch_in_process(self, events: list[ChangeEvent]) -> int:
        """One batch of changes committed in this process (a layer between processes)."""
        self.delivered_here += len(events)
        return await self._dispatch_local(events)

    def _dispatch_change(self, event: ChangeEvent) -> None:
        self.membership.deliver(event)
