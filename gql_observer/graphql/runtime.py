"""Everything one event loop serves observed subscriptions with: a :class:`Runtime`
owns the loop's hub (started on first use), its watches, its coalesced reads
and the tasks that finish subscriptions, all built from one frozen
:class:`~gql_observer.core.conf.Settings`.

A server process has one per event loop (:func:`current`); a test makes its
own, or gets a fresh one for every test (every test has its loop).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from gql_observer.changes.layers import own_channel_layer
from gql_observer.changes.outbox import Outbox, outbox
from gql_observer.core.conf import Settings, get_settings
from gql_observer.fanout.hub import Hub
from gql_observer.graphql.conditions import Conditions
from gql_observer.graphql.reads import Reads

if TYPE_CHECKING:
    from gql_observer.graphql.list_group import ListGroup
    from gql_observer.graphql.list_watch import ListMember, ListWatch
    from gql_observer.graphql.watch import Watch

__all__ = ["Runtime", "close_running", "current", "hub_stats", "running"]

logger = logging.getLogger(__name__)


class Runtime:
    """The hub, watches and reads of one event loop (see the module)."""

    def __init__(self, settings: Settings, *, outbox: Outbox = outbox) -> None:
        self.settings = settings
        self.outbox = outbox
        self.loop = asyncio.get_running_loop()
        #: The live watches, by (field, pk).
        self.watches: dict[Hashable, Watch] = {}
        #: The live list watches, by (list field, viewer or None, filter).
        self.list_watches: dict[Hashable, ListWatch] = {}
        #: Their groups, by (list field, viewer or None).
        self.list_groups: dict[Hashable, ListGroup] = {}
        self.reads = Reads(settings)
        #: List members running through strawberry that were handed changes (or
        #: their end) whose frames may not be written yet; the watch may be gone.
        self.list_writing: set[ListMember] = set()
        #: The compiled filters of live lists (and their matching queries).
        self.conditions = Conditions()
        #: Tasks that send a subscription's last frames (kept referenced).
        self.finishing: set[asyncio.Task[Any]] = set()
        self._hub: Hub | None = None
        self.closed = False

    @property
    def hub(self) -> Hub:
        """The loop's hub, started on first use."""
        if self.closed:
            raise RuntimeError("The runtime is closed.")
        if self._hub is None:
            self._hub = Hub(own_channel_layer(self.settings), self.settings, self.outbox)
        return self._hub

    @property
    def started_hub(self) -> Hub | None:
        """The hub, if it was started."""
        return self._hub

    @property
    def idle(self) -> bool:
        """Nothing is watched and no hub group is joined."""
        return (
            not self.watches
            and not self.list_watches
            and not self.list_groups
            and (self._hub is None or not self._hub.groups)
        )

    @property
    def settled(self) -> bool:
        """Every change handed to this loop is handled and its frames are written:
        the hub's in-process batch is empty, no subscription has a delivery
        waiting, no watch (nor list group, nor list watch catching up) is handling
        one, no member has a frame (or a list change) to write, no list
        subscription running through strawberry has frames to write of the
        changes (or the end) it took, and no subscription is finishing. (A
        change on its way through a cross-process channel layer is not seen.)"""
        hub = self._hub
        if hub is not None:
            if hub.in_process is not None and hub.in_process.pending:
                return False
            if any(s.pending for group in hub.groups.values() for s in group):
                return False
        members = (m for watch in self.watches.values() for m in watch.members.values())
        lists = self.list_watches.values()
        return (
            not any(watch.delivering for watch in self.watches.values())
            and not any(m.busy or m.waiting for m in members)
            and not any(group.delivering for group in self.list_groups.values())
            and not any(watch.catching_up or watch.backlog for watch in lists)
            and all(m.idle for watch in lists for m in watch.members)
            and not self.list_writing
            and not self.finishing
        )

    def finish_soon(self, task: asyncio.Task[Any]) -> None:
        """Keep ``task`` (one that ends a subscription) until it is done."""
        self.finishing.add(task)
        task.add_done_callback(self.finishing.discard)

    async def close(self) -> None:
        """Complete every subscription, leave every group, stop the hub."""
        self.closed = True
        if _runtimes.get(self.loop) is self:
            del _runtimes[self.loop]
        if self._hub is not None:
            await self._hub.close()


_runtimes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Runtime] = (
    weakref.WeakKeyDictionary()
)


def running() -> Runtime | None:
    """The running loop's runtime, if it has one."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return _runtimes.get(loop)


def current() -> Runtime:
    """The running loop's runtime, made on first use with the current settings.

    When the settings changed since it was made (tests change them) and it is
    idle, it is replaced by one with the new settings; a busy one stays, so
    that live subscriptions keep their hub.
    """
    loop = asyncio.get_running_loop()
    runtime = _runtimes.get(loop)
    settings = get_settings()
    if runtime is not None and runtime.settings is not settings and runtime.idle:
        task = loop.create_task(runtime.close(), name="gql_observer.runtime.close")
        task.add_done_callback(_logged)
        runtime = None
    if runtime is None:
        runtime = _runtimes[loop] = Runtime(settings)
    return runtime


def _logged(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("A runtime did not close cleanly", exc_info=task.exception())


def hub_stats() -> dict[str, int] | None:
    """The counters of the running loop's hub (``Hub.stats()``), or ``None``
    while it has none: call it on the server's loop (an async view, say)."""
    current = running()
    hub = current.started_hub if current is not None else None
    return hub.stats() if hub is not None else None


async def close_running() -> None:
    """Close the running loop's runtime, if it has one: every subscription ends,
    every group is left (a test's teardown; the ASGI lifespan does it on shutdown)."""
    current = running()
    if current is not None and not current.loop.is_closed():
        await current.close()
