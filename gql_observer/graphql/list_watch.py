"""List watches: the list subscribers of one loop that share a type, a filter
and (for a type that depends on the viewer) a viewer share one set.

A :class:`ListWatch` follows the model's changes (one hub subscription), keeps
the keys of the rows in its set and decides once per batch of changes which
rows entered, changed in or left it; each :class:`ListMember` (a subscriber)
gets those decisions through a buffer of one per row and is executed by
strawberry with its own context. A member that joins a running watch takes
its set as its own: the set is never sent, and every change after the join
reaches the member, so what it receives converges like a set it read itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from strawberry import Info

from gql_observer.fanout.delivery import Waiting
from gql_observer.fanout.rowsets import RowsSubscription
from gql_observer.graphql.listing import BadFilter, Change, decide, members, resynced, run
from gql_observer.graphql.matching import filter_key, matching
from gql_observer.graphql.viewers import Viewer
from gql_observer.graphql.visibility import allowed
from gql_observer.observe.definition import ObservedDefinition

if TYPE_CHECKING:
    from gql_observer.graphql.runtime import Runtime

__all__ = ["CLOSED", "REFUSED", "ListMember", "ListWatch", "join"]

logger = logging.getLogger(__name__)

#: The watch ended (the hub shut down, or it failed): the subscription completes.
CLOSED: Final = "closed"
#: The viewer is no longer who they were: 401, then the subscription completes.
REFUSED: Final = "refused"


class ListMember(Waiting):
    """One subscriber of a watch: the changes it has not taken yet, the latest
    per row (a row it never saw that entered and left is nothing to it)."""

    __slots__ = ("_end", "_pending", "watch")

    def __init__(self, watch: ListWatch) -> None:
        super().__init__()
        self.watch = watch
        self._pending: dict[str, Change] = {}
        self._end: str | None = None

    def push(self, changes: list[Change]) -> None:
        for change in changes:
            earlier = self._pending.pop(change.pk, None)
            merged: Change | None = change
            if earlier is not None:
                if earlier.action == "create":
                    # Never seen: it entered, and is still in (create) or left (nothing).
                    merged = (
                        None
                        if change.action == "delete"
                        else Change("create", change.pk, change.row)
                    )
                elif earlier.action == "delete" and change.action == "create":
                    merged = Change("update", change.pk, change.row)  # seen, left, back
            if merged is not None:
                self._pending[change.pk] = merged
        self._wake()

    def end(self, how: str) -> None:
        if self._end is None:
            self._end = how
        self._wake()

    async def next(self) -> list[Change] | str:
        """The changes pending now, or how the subscription ends."""
        while not self._pending and self._end is None:
            await self._sleep()
        if self._pending:
            changes, self._pending = list(self._pending.values()), {}
            return changes
        assert self._end is not None
        return self._end

    def leave(self) -> None:
        self.watch.leave(self)


class ListWatch:
    """The set of one (type, filter, viewer) in one loop, and its members."""

    def __init__(
        self,
        runtime: Runtime,
        key: Hashable,
        definition: ObservedDefinition,
        info: Info,
        viewer: Viewer,
        filters: Any,
    ) -> None:
        self.runtime, self.key, self.definition = runtime, key, definition
        self.info, self.viewer, self.filters = info, viewer, filters
        self.members: set[ListMember] = set()
        self.held: set[str] = set()
        self.subscription: RowsSubscription | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None

    async def start(self, user: Any) -> None:
        """Join the model's group, then read the set (a commit in between is seen)."""
        hub = self.runtime.hub
        try:
            self.subscription = await hub.join_rows(self.definition.model_label)
            work = partial(members, self.definition, self.info, user, self.filters)
            self.held = set(await run(self.runtime.reads, self.definition, work))
        except BaseException as error:
            self._close()
            if not self.ready.done():
                if isinstance(error, asyncio.CancelledError):
                    error = RuntimeError("the list watch's first subscriber went away")
                self.ready.set_exception(error)
                self.ready.exception()  # retrieved: the joiners re-raise it
            raise
        self.ready.set_result(None)
        self.task = hub.spawn(self._follow(), "gql_observer.list_watch")

    async def _follow(self) -> None:
        assert self.subscription is not None
        definition, reads = self.definition, self.runtime.reads
        ending = CLOSED
        try:
            while self.members:
                rows = await self.subscription.next_rows()
                if rows.closed:
                    break
                user: Any = self.viewer.user
                if definition.scoped:
                    user = await reads.check(self.viewer)
                    if not allowed(definition, user):
                        ending = REFUSED
                        break
                found: list[Change]
                if rows.resync:
                    work = partial(
                        resynced, definition, self.info, user, self.filters, self.held, rows
                    )
                    found, self.held = await run(reads, definition, work)
                else:
                    reread = [pk for pk, d in rows.changed.items() if d.action != "delete"]
                    current = (
                        await matching(
                            reads, definition, self.info, self.viewer, self.filters, reread
                        )
                        if reread
                        else {}
                    )
                    verdict = partial(decide, definition, user, self.held, rows, current)
                    if definition.permission is None:
                        found, self.held = verdict()
                    else:  # the hook may query (user.has_perm)
                        found, self.held = await run(reads, definition, verdict)
                if found:
                    for member in list(self.members):
                        member.push(found)
        except Exception:
            logger.exception(
                "A live list of %s failed; its subscriptions end", definition.model_label
            )
        finally:
            for member in list(self.members):
                member.end(ending)
            self._close()

    def leave(self, member: ListMember) -> None:
        self.members.discard(member)
        if not self.members:
            self._close()
            if self.task is not None and self.task is not asyncio.current_task():
                self.task.cancel()

    def _close(self) -> None:
        if self.runtime.list_watches.get(self.key) is self:
            del self.runtime.list_watches[self.key]
        if self.subscription is not None:
            self.runtime.hub.leave(self.subscription)
            self.subscription = None


async def join(
    runtime: Runtime,
    definition: ObservedDefinition,
    info: Info,
    viewer: Viewer,
    user: Any,
    filters: Any,
) -> ListMember:
    """A member of the watch of ``definition``'s list with ``filters`` as
    ``viewer`` sees it, started if there is none; raises what its first read
    raised (:class:`~gql_observer.graphql.listing.BadFilter`)."""
    key = (definition.list_name, viewer if definition.scoped else None, filter_key(filters))
    while True:
        watch = runtime.list_watches.get(key)
        if watch is None:
            watch = runtime.list_watches[key] = ListWatch(
                runtime, key, definition, info, viewer, filters
            )
            member = ListMember(watch)
            watch.members.add(member)
            await watch.start(user)
            return member
        member = ListMember(watch)
        watch.members.add(member)
        try:
            await asyncio.shield(watch.ready)
        except BadFilter:
            watch.members.discard(member)
            raise
        except BaseException:
            watch.members.discard(member)
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise
            continue  # its first subscriber went away before the set was read: again
        return member
