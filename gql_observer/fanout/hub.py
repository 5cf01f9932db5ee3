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
import contextlib
import itertools
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Final, TypeVar

from channels.layers import InMemoryChannelLayer

from gql_observer.changes.events import (
    CHANGE,
    CHANGES,
    PROBE,
    Action,
    ChangeEvent,
    LastValues,
    ProbeMessage,
)
from gql_observer.changes.groups import HUB_CHANNEL_PREFIX, hub_capacity
from gql_observer.changes.publish import (
    Publisher,
    release_in_process_hub,
    set_in_process_hub,
    set_local_publisher,
)
from gql_observer.core.conf import get_settings, own_channel_layer

__all__ = ["CLOSED", "Delivery", "Hub", "Subscription", "current_hub", "get_hub", "tick"]

logger = logging.getLogger(__name__)
R = TypeVar("R")


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

    def __init__(self, action: Action, last: LastValues | None, *, resync: bool = False) -> None:
        self.action: Action = action
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


#: Handed to subscriptions when the hub shuts down.
CLOSED: Final = Delivery("delete", None)


class Subscription:
    """One local subscription to one group: a buffer of one, latest wins.

    Events carry identity, not data, so a newer change supersedes an older
    one that was not handled yet; a delete is never superseded. A client that
    reads slowly therefore costs one pending delivery, never a queue.
    """

    __slots__ = (
        "_pending",
        "_waiter",
        "delivered",
        "dropped",
        "family",
        "group",
        "read_from",
        "skipped",
    )

    def __init__(self, group: str, family: str | None = None) -> None:
        self.group = group
        #: The group of the instance's model (batches of changes arrive there).
        self.family = family
        self._pending: Delivery | None = None
        self._waiter: asyncio.Future[None] | None = None
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
            if pending.action == "delete":
                return
        self._pending = delivery
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self) -> Delivery:
        """The next delivery; waits without a task of its own."""
        tick = next(_ticks)
        while True:
            while self._pending is None:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            delivery, self._pending = self._pending, None
            if delivery is CLOSED:
                return delivery
            if delivery.action == "update" and delivery.arrived < self.read_from:
                self.skipped += 1
                continue
            self.delivered += 1
            return delivery._handed(tick, self)


class Hub:
    """Group membership and local dispatch for one event loop (one per process).

    When the channel layer fails (Redis stops, restarts, or stops answering)
    the hub keeps its subscriptions: it retries with backoff until the layer
    answers, re-joins every group, and hands every subscription a resync
    delivery, so each re-reads the committed state. What was published while
    the layer was away is lost; the state is not.
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.loop = asyncio.get_running_loop()
        self.channel: str | None = None
        self.groups: dict[str, set[Subscription]] = {}
        #: Model groups (batches of changes) -> the local subscriptions of that model.
        self.families: dict[str, set[Subscription]] = {}
        #: Groups the hub's channel is a member of in the layer.
        self.joined: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._receiver: asyncio.Task[None] | None = None
        self._recovering = asyncio.Lock()
        options = get_settings()
        #: Names this hub in the changes it was handed directly (``deliver_here``).
        self.token = uuid.uuid4().hex
        self._pid = os.getpid()
        self._probe_group = f"{options['GROUP_PREFIX']}.hub.{self.token}"
        self._probe_interval = options["HUB_PROBE_INTERVAL"]
        self._probe_timeout = options["PUBLISH_TIMEOUT"]
        self._probe_seen = 0
        self._probe_sent = 0
        self._received = 0
        # The layer failed and no probe has come back since: what was published
        # meanwhile may be lost, even after a re-join (a pub/sub layer
        # re-subscribes in the background), so the first probe back resyncs.
        self._unconfirmed = False
        #: Probes that never came while later ones did: the hub's channel was
        #: full and the layer dropped messages (each one resynchronises).
        self.overflows = 0
        self._dropped_by_gone = 0
        #: Times the layer failed (a receive raised, or a probe did not come back).
        self.layer_failures = 0
        #: Recoveries completed (groups re-joined, subscriptions resynchronised).
        self.resyncs = 0
        #: Changes handed over directly by a writer of this process (``deliver_here``).
        self.delivered_here = 0
        #: Their copies that came back through the channel layer, skipped.
        self.echoes_skipped = 0
        self.publisher: Publisher | None = None
        #: Hands changes committed in this process to this hub (``deliver_here``),
        #: batched as a publisher batches: a burst wakes the loop once per window.
        self._here: Publisher | None = None
        hub_capacity(layer, options["HUB_CAPACITY"])  # for its own probes
        if isinstance(layer, InMemoryChannelLayer):
            # Nothing outside this loop can break it: no probes.
            self._probe_interval = None
            self.publisher = self._local_publisher(self.dispatch)
            set_local_publisher(self.publisher)
        elif options["DELIVER_IN_PROCESS"]:
            self._here = self._local_publisher(self._dispatch_here)
            set_in_process_hub(self.deliver_here)
        self._ready = self._spawn(self._start(), "gql_observer.hub.start")

    def _local_publisher(self, local: Callable[[dict[str, Any]], None]) -> Publisher:
        """A started publisher on this loop that hands its messages to ``local``."""
        options = get_settings()
        publisher = Publisher(
            self.layer,
            self.loop,
            options["PUBLISH_TIMEOUT"],
            options["PUBLISH_RETRY_WINDOW"],
            local=local,
            batch_window=options["PUBLISH_BATCH_WINDOW"],
        )
        publisher.start()
        return publisher

    # -- lifecycle ---------------------------------------------------------

    def _spawn(self, coro: Awaitable[R], name: str) -> asyncio.Task[R]:
        task: asyncio.Task[R] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _start(self) -> None:
        # A name of its own, so that writers can give it room (HUB_CAPACITY);
        # the hub's layer instance is its own, so the prefix shares nothing.
        if isinstance(self.layer, InMemoryChannelLayer):
            self.channel = await self.layer.new_channel()
        else:
            self.channel = await self.layer.new_channel(prefix=HUB_CHANNEL_PREFIX)
        self._receiver = self._spawn(self._receive_loop(), "gql_observer.hub.receive")
        self._spawn(self._refresh_loop(), "gql_observer.hub.refresh")
        if self._probe_interval is not None:
            self._spawn(self._probe_loop(self._probe_interval), "gql_observer.hub.probe")

    async def close(self) -> None:
        """Complete every local subscription, leave every group, stop."""
        if self._closed:
            return
        self._closed = True
        release_in_process_hub(self.deliver_here)
        for subscriptions in self.groups.values():
            for subscription in subscriptions:
                subscription.push(CLOSED)
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a channel layer's receive that does not end when cancelled
            # (channels_redis waits on Redis for its clean-up, up to the
            # connection's socket timeout) must not hold the shutdown.
            _, stuck = await asyncio.wait(tasks, timeout=self._probe_timeout)
            if stuck:
                logger.warning(
                    "%d hub task(s) did not stop within %.1fs of being cancelled: %s",
                    len(stuck),
                    self._probe_timeout,
                    ", ".join(sorted(t.get_name() for t in stuck)),
                )
        if self.channel is not None:
            groups = list(self.joined)
            if self._probe_interval is not None:
                groups.append(self._probe_group)
            for group in groups:
                try:
                    await asyncio.wait_for(
                        self.layer.group_discard(group, self.channel), self._probe_timeout
                    )
                except Exception:
                    logger.exception("Could not leave group %s", group)
            self.joined.clear()
        if self.publisher is not None:
            await self.publisher.stop()
            set_local_publisher(None)
        if self._here is not None:
            await self._here.stop()
        close_pools = getattr(self.layer, "close_pools", None)  # the hub's own instance
        if close_pools is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close_pools(), self._probe_timeout)
        global _hub
        if _hub is self:
            _hub = None

    @property
    def tasks(self) -> set[asyncio.Task[Any]]:
        """The hub's own tasks (for tests: nothing is left after ``close``)."""
        return set(self._tasks)

    def stats(self) -> dict[str, int]:
        """Counters for metrics and tests.

        ``dropped``: deliveries merged into a later one because a subscriber
        was busy (a slow client), including subscriptions that have ended;
        ``pending``: deliveries waiting for their subscriber (at most one per
        subscription); ``layer_failures``, ``resyncs``, ``overflows``,
        ``delivered_here`` and ``echoes_skipped``: see the attributes.
        """
        live = [s for subscriptions in self.groups.values() for s in subscriptions]
        stats = {
            "subscriptions": len(live),
            "groups": len(self.groups),
            "pending": sum(s.pending for s in live),
            "dropped": self._dropped_by_gone + sum(s.dropped for s in live),
            "layer_failures": self.layer_failures,
            "resyncs": self.resyncs,
            "overflows": self.overflows,
            "delivered_here": self.delivered_here,
            "echoes_skipped": self.echoes_skipped,
        }
        if self.publisher is not None:
            stats["published"] = self.publisher.sent
            stats["publish_failures"] = self.publisher.failed
        return stats

    # -- membership ----------------------------------------------------------

    async def join(self, group: str, family: str | None = None) -> Subscription:
        """Subscribe locally to ``group`` (an instance's), and to ``family`` (its
        model's, where batches of changes arrive); the hub's channel is in both
        on return, the model's first, so no batch can miss a subscriber."""
        if self._closed:
            raise RuntimeError("The hub is closed.")
        await self._ready
        subscription = Subscription(group, family)
        self.groups.setdefault(group, set()).add(subscription)
        if family is not None:
            self.families.setdefault(family, set()).add(subscription)
        try:
            for name in (group,) if family is None else (family, group):
                async with self._lock(name):
                    if name not in self.joined:
                        await self._twice(self.layer.group_add, name)
                        self.joined.add(name)
        except BaseException:
            self.leave(subscription)
            raise
        return subscription

    def leave(self, subscription: Subscription) -> None:
        """Forget ``subscription``; the group is left when its last one goes.

        Synchronous, so it is safe in a ``finally`` of a cancelled task.
        """
        subscriptions = self.groups.get(subscription.group)
        if subscriptions is None or subscription not in subscriptions:
            return
        self._dropped_by_gone += subscription.dropped
        self._forget(self.groups, subscription.group, subscription)
        if subscription.family is not None:
            self._forget(self.families, subscription.family, subscription)

    def _forget(
        self, members: dict[str, set[Subscription]], group: str, subscription: Subscription
    ) -> None:
        """Take ``subscription`` out of ``members[group]``; the group is left
        (in the background) with its last local member."""
        local = members.get(group)
        if local is None:
            return
        local.discard(subscription)
        if not local:
            del members[group]
            if not self._closed:
                self._spawn(self._discard(group), "gql_observer.hub.discard")

    async def _twice(self, call: Callable[[str, str | None], Awaitable[Any]], group: str) -> None:
        # After Redis restarts, each pooled connection fails once before the
        # pool replaces it: one failure is no reason to fail a subscriber.
        try:
            await asyncio.wait_for(call(group, self.channel), self._probe_timeout)
        except Exception:
            logger.debug("Retrying a group operation on %s", group, exc_info=True)
            await asyncio.wait_for(call(group, self.channel), self._probe_timeout)

    def _lock(self, group: str) -> asyncio.Lock:
        lock = self._locks.get(group)
        if lock is None:
            lock = self._locks[group] = asyncio.Lock()
        return lock

    async def _discard(self, group: str) -> None:
        lock = self._lock(group)
        async with lock:
            if group in self.joined and not self.groups.get(group) and not self.families.get(group):
                try:
                    await self._twice(self.layer.group_discard, group)
                except Exception:
                    logger.exception("Could not leave group %s", group)
                self.joined.discard(group)
        if (
            group not in self.groups
            and group not in self.families
            and not lock.locked()
            and self._locks.get(group) is lock
        ):
            del self._locks[group]

    async def _refresh_loop(self) -> None:
        # channels_redis forgets memberships after group_expiry; renew them well before.
        interval = get_settings()["GROUP_REFRESH_INTERVAL"]
        if interval is None:
            interval = max(1.0, float(getattr(self.layer, "group_expiry", 86400)) / 2)
        while True:
            await asyncio.sleep(interval)
            if self._recovering.locked():
                continue  # the recovery re-joins everything
            try:
                await self._add_all()
            except Exception:
                logger.warning("Could not refresh group memberships", exc_info=True)

    async def _add_all(self) -> None:
        groups = list(self.joined)
        if self._probe_interval is not None:
            groups.append(self._probe_group)
        for group in groups:
            await asyncio.wait_for(self.layer.group_add(group, self.channel), self._probe_timeout)

    # -- receiving -----------------------------------------------------------

    async def _receive_loop(self) -> None:
        failures = 0
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                self.layer_failures += 1
                # A layer that fails at once, again and again, must not spin.
                delay = min(_MIN_DELAY * 2 ** (failures - 1), _MAX_DELAY)
                logger.warning(
                    "Channel layer receive failed; reconnecting in %.1fs",
                    delay,
                    exc_info=failures == 1,
                )
                await asyncio.sleep(delay)
                await self._recover()
                continue
            failures = 0
            self._received += 1
            self.dispatch(message)

    async def _probe_loop(self, interval: float) -> None:
        # A receive can wait forever on a layer that lost the hub's memberships
        # (Redis restarted and the client reconnected) or on a connection that
        # hangs; a message to itself that does not come back shows both.
        await self._join_probe_group()
        while True:
            # Nonces count probes the layer took: a gap among those that come
            # back means the layer dropped one (see dispatch).
            nonce = self._probe_sent + 1
            received = self._received
            probe: ProbeMessage = {"type": PROBE, "nonce": nonce}
            sent = False
            try:
                await asyncio.wait_for(
                    self.layer.group_send(self._probe_group, probe), self._probe_timeout
                )
                self._probe_sent = nonce
                sent = True
            except Exception:
                logger.debug("Probe %d could not be sent", nonce, exc_info=True)
                if not self._unconfirmed:
                    self.layer_failures += 1
                    self._unconfirmed = True
            await asyncio.sleep(interval)
            if self._recovering.locked():
                continue
            if self._probe_seen >= nonce:
                if self._unconfirmed:
                    self._unconfirmed = False
                    count = self._resync_all()
                    logger.warning(
                        "Channel layer back (a probe came through after a failure): "
                        "resynchronising %d subscription(s)",
                        count,
                    )
                continue
            if not sent or self._received > received:
                # Not sent: the layer is down, a later probe tells when it is back.
                # Messages still arrive: the layer works, and the probe waits
                # behind a backlog in the hub's channel (a burst of writes).
                continue
            self.layer_failures += 1
            logger.warning(
                "The channel layer did not deliver this process's probe within %.1fs; "
                "re-joining groups",
                interval,
            )
            if self._receiver is not None:
                self._receiver.cancel()
                await asyncio.gather(self._receiver, return_exceptions=True)
            await self._recover()
            self._receiver = self._spawn(self._receive_loop(), "gql_observer.hub.receive")

    async def _join_probe_group(self) -> None:
        delay = _MIN_DELAY
        while True:
            try:
                await asyncio.wait_for(
                    self.layer.group_add(self._probe_group, self.channel), self._probe_timeout
                )
                return
            except Exception:
                logger.warning("Could not join the probe group; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)

    async def _recover(self) -> None:
        """Re-join every group, then let every subscriber re-read: what was
        published while the layer was unreachable is lost, the state is not."""
        async with self._recovering:
            delay = _MIN_DELAY
            attempts = 0
            while True:
                try:
                    await self._add_all()
                    break
                except Exception as error:
                    attempts += 1
                    logger.warning(
                        "Channel layer still unreachable (%s); retrying in %.1fs", error, delay
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _MAX_DELAY)
            count = self._resync_all()
            # Probes lost with the outage are no news any more.
            self._probe_seen = max(self._probe_seen, self._probe_sent)
            # Until a probe comes back, changes may still be lost.
            self._unconfirmed = self._probe_interval is not None
            logger.warning(
                "Channel layer back after %d failed attempt(s): re-joined %d group(s), "
                "resynchronising %d subscription(s)",
                attempts,
                len(self.joined),
                count,
            )

    def _resync_all(self) -> int:
        """Let every subscription re-read its instance; returns how many."""
        self.resyncs += 1
        count = 0
        for subscriptions in self.groups.values():
            delivery = Delivery("update", None, resync=True)
            for subscription in list(subscriptions):
                subscription.push(delivery)
                count += 1
        return count

    def dispatch(self, message: dict[str, Any]) -> None:
        """Hand one channel-layer message to the local subscriptions of its group."""
        kind = message.get("type")
        if kind == PROBE:
            nonce = int(message.get("nonce", 0))
            if nonce > self._probe_seen + 1 and not self._recovering.locked():
                # A probe the layer took never came, and a later one did: the
                # hub's channel was full, and changes may have been dropped too.
                self.overflows += 1
                count = self._resync_all()
                logger.warning(
                    "The channel layer dropped messages to this process's hub (its channel "
                    "was full: raise HUB_CAPACITY); resynchronising %d subscription(s)",
                    count,
                )
            self._probe_seen = max(self._probe_seen, nonce)
            return
        events = _changes(message)
        if events is None:
            logger.warning("Ignored a message of type %r", kind)
            return
        for event in events:
            if event.get("delivered") == self.token:
                self.echoes_skipped += 1  # handed over in this process already
            else:
                self._dispatch_change(event)

    def deliver_here(self, event: ChangeEvent) -> str | None:
        """Hand a change committed in this process to the local subscriptions,
        from any thread (see ``publish.set_in_process_hub``); the token the
        channel layer's copy will carry, or ``None`` if the hub cannot take it."""
        here = self._here
        if here is None or self._closed or os.getpid() != self._pid:
            # A forked child must not mark changes as delivered by its parent's hub.
            return None
        try:
            here.submit(event)
        except RuntimeError:  # the loop is closed
            return None
        return self.token

    def _dispatch_here(self, message: dict[str, Any]) -> None:
        """One message of ``_here``: a change, or a batch of one model's."""
        for event in _changes(message) or ():
            self.delivered_here += 1
            self._dispatch_change(event)

    def _dispatch_change(self, event: ChangeEvent) -> None:
        subscriptions = self.groups.get(event["group"])
        if not subscriptions:
            return
        # The event's version is not needed here: the order of states comes from
        # the reads (see Delivery); versions stay on the wire for diagnostics.
        delivery = Delivery(event["action"], event["last"])
        for subscription in list(subscriptions):
            subscription.push(delivery)


def _changes(message: dict[str, Any]) -> list[ChangeEvent] | None:
    """The change events a message carries (one, or a batch of one model's);
    ``None`` for a message that carries none."""
    kind = message.get("type")
    if kind == CHANGES:
        return list(message.get("events") or ())
    if kind == CHANGE:
        return [message]  # type: ignore[list-item]
    return None


#: Backoff between attempts to reach a failed channel layer (seconds).
_MIN_DELAY: Final = 0.1
_MAX_DELAY: Final = 2.0


_hub: Hub | None = None


def current_hub() -> Hub | None:
    """This loop's hub, if one was started."""
    return _hub


def get_hub() -> Hub:
    """The hub of the running event loop, started on first use."""
    global _hub
    loop = asyncio.get_running_loop()
    if _hub is None or _hub.loop is not loop or _hub._closed:
        _hub = Hub(own_channel_layer())
    return _hub
