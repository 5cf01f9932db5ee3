"""Which groups a hub's channel is in: an instance's group while at least one
local subscription watches that instance, its model's group while one watches
any instance of the model; joined before the first subscription of a group
returns, left (in the background) with its last one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from gql_observer.changes.events import ChangeEvent
from gql_observer.changes.groups import model_group
from gql_observer.changes.layers import ChannelLayer
from gql_observer.fanout.delivery import Delivery, Subscription
from gql_observer.fanout.rowsets import RowsSubscription

__all__ = ["Membership"]

logger = logging.getLogger(__name__)


class Membership:
    """The groups of one hub's channel and the local subscriptions in each."""

    def __init__(
        self,
        layer: ChannelLayer,
        timeout: float,
        spawn: Callable[[Coroutine[Any, Any, None], str], object],
        prefix: str = "gqlobs",
    ) -> None:
        self.layer = layer
        self.prefix = prefix
        self.timeout = timeout
        self._spawn = spawn
        self.channel: str | None = None
        #: Instance groups -> the local subscriptions of that instance.
        self.groups: dict[str, set[Subscription]] = {}
        #: Model groups (batches of changes) -> the local subscriptions of that model.
        self.model_groups: dict[str, set[Subscription]] = {}
        #: Groups the hub's channel is a member of in the layer.
        self.joined: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        #: Deliveries merged into later ones in subscriptions that have ended.
        self.dropped_by_gone = 0
        self.closed = False

    async def join(self, group: str, model_group: str | None) -> Subscription:
        """A local subscription to ``group`` (and ``model_group``); the channel is
        in both on return, the model's first, so no batch can miss a subscriber."""
        subscription = Subscription(group, model_group)
        self.groups.setdefault(group, set()).add(subscription)
        if model_group is not None:
            self.model_groups.setdefault(model_group, set()).add(subscription)
        await self._enter(subscription, (group,) if model_group is None else (model_group, group))
        return subscription

    async def join_rows(self, model_label: str) -> RowsSubscription:
        """A local subscription to every change of a model (a list subscriber):
        listed under the model's group in :attr:`groups`; the channel is in it
        on return."""
        group = model_group(self.prefix, model_label)
        subscription = RowsSubscription(group)
        self.groups.setdefault(group, set()).add(subscription)
        await self._enter(subscription, (group,))
        return subscription

    def deliver(self, event: ChangeEvent) -> None:
        """Hand one change to the local subscriptions of its instance and to the
        list subscriptions of its model."""
        # A create is news to list subscribers only: an instance subscriber
        # subscribed to a row that existed, and read it after its creation.
        instance = None if event["action"] == "create" else self.groups.get(event["group"])
        listing = self.groups.get(model_group(self.prefix, event["model"]))
        if not instance and not listing:
            return
        # The event's version is not needed here: the order of states comes from
        # the reads (see Delivery); versions stay on the wire for diagnostics. A
        # list subscriber re-reads the row and decides from its own set whether
        # it entered: a create is an update to it.
        delivery = Delivery("delete" if event["action"] == "delete" else "update", event["last"])
        for subscription in list(instance or ()):
            subscription.push(delivery)
        for subscription in list(listing or ()):
            if isinstance(subscription, RowsSubscription):
                subscription.push_row(event["pk"], delivery)

    async def _enter(self, subscription: Subscription, names: tuple[str, ...]) -> None:
        try:
            for name in names:
                async with self._lock(name):
                    if name not in self.joined:
                        await self._twice(self.layer.group_add, name)
                        self.joined.add(name)
        except BaseException:
            self.leave(subscription)
            raise

    def leave(self, subscription: Subscription) -> None:
        """Forget ``subscription``; a group is left when its last one goes.
        Synchronous, so it is safe in a ``finally`` of a cancelled task."""
        subscriptions = self.groups.get(subscription.group)
        if subscriptions is None or subscription not in subscriptions:
            return
        self.dropped_by_gone += subscription.dropped
        self._forget(self.groups, subscription.group, subscription)
        if subscription.model_group is not None:
            self._forget(self.model_groups, subscription.model_group, subscription)

    def _forget(
        self, members: dict[str, set[Subscription]], group: str, subscription: Subscription
    ) -> None:
        local = members.get(group)
        if local is None:
            return
        local.discard(subscription)
        if not local:
            del members[group]
            if not self.closed:
                self._spawn(self._discard(group), "gql_observer.hub.discard")

    async def _twice(self, call: Callable[[str, str], Awaitable[Any]], group: str) -> None:
        # After Redis restarts, each pooled connection fails once before the
        # pool replaces it: one failure is no reason to fail a subscriber.
        assert self.channel is not None
        try:
            await asyncio.wait_for(call(group, self.channel), self.timeout)
        except Exception:
            logger.debug("Retrying a group operation on %s", group, exc_info=True)
            await asyncio.wait_for(call(group, self.channel), self.timeout)

    def _lock(self, group: str) -> asyncio.Lock:
        lock = self._locks.get(group)
        if lock is None:
            lock = self._locks[group] = asyncio.Lock()
        return lock

    async def _discard(self, group: str) -> None:
        lock = self._lock(group)
        async with lock:
            in_use = self.groups.get(group) or self.model_groups.get(group)
            if group in self.joined and not in_use:
                try:
                    await self._twice(self.layer.group_discard, group)
                except Exception:
                    logger.exception("Could not leave group %s", group)
                self.joined.discard(group)
        if (
            group not in self.groups
            and group not in self.model_groups
            and not lock.locked()
            and self._locks.get(group) is lock
        ):
            del self._locks[group]
