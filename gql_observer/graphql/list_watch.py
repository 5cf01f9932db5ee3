"""List watches: the list subscribers of one loop that share a type, a filter
and (for a type that depends on the viewer) a viewer share one set; the list
watches that share a type and that viewer share one group.

A :class:`~gql_observer.graphql.list_group.ListGroup` follows the model's
changes (one hub subscription, one task) for all its watches: per batch of
changes it checks the viewer once, reads the changed rows once for every
filter and decides every watch's set at once, so a change costs one wake-up
and one read per group, not per filter. A :class:`ListWatch` keeps the keys
of the rows in its set and hands its decisions to its members.

A subscriber that runs through strawberry is a :class:`ListMember`: it gets
those decisions through a buffer of one per row and is executed by strawberry
with its own context. One the transport serves with the others
(:mod:`gql_observer.graphql.list_member`) is a :class:`Subscriber`: the watch
hands each batch's decisions to all of them at once, so that each frame is
built once per shape. A member that joins a running watch takes its set as its
own: the set is never sent, and every change after the join reaches the
member, so what it receives converges like a set it read itself.

A watch that starts joins its group before it reads its set: the batches the
group takes meanwhile wait for it (its backlog) and are decided for it alone
once its set is read, so nothing committed after the read is missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from strawberry import Info

from gql_observer.fanout.delivery import Waiting
from gql_observer.fanout.rowsets import Rows, combined
from gql_observer.graphql.conditions import reusable
from gql_observer.graphql.list_group import CLOSED, REFUSED, ListGroup
from gql_observer.graphql.listing import BadFilter, Change, members, refused, run
from gql_observer.graphql.matching import filter_key
from gql_observer.graphql.viewers import Viewer
from gql_observer.observe.definition import ObservedDefinition

if TYPE_CHECKING:
    from gql_observer.graphql.runtime import Runtime

__all__ = [
    "CLOSED",
    "REFUSED",
    "ListMember",
    "ListWatch",
    "Subscriber",
    "join",
    "merge",
]

logger = logging.getLogger(__name__)


def merge(pending: dict[str, Change], changes: list[Change]) -> None:
    """Add ``changes`` to the changes a subscriber has not taken yet (``pending``,
    the latest per row), merged so that what it takes says what every change one
    by one would have said (a row it never saw that entered and left is nothing
    to it)."""
    for change in changes:
        earlier = pending.pop(change.pk, None)
        merged: Change | None = change
        if earlier is not None:
            if earlier.action == "create":
                # Never seen: it entered, and is still in (create) or left (nothing).
                merged = (
                    None if change.action == "delete" else Change("create", change.pk, change.row)
                )
            elif earlier.action == "delete" and change.action == "create":
                merged = Change("update", change.pk, change.row)  # seen, left, back
        if merged is not None:
            pending[change.pk] = merged


class Subscriber(Protocol):
    """A member the transport serves (:mod:`gql_observer.graphql.list_member`)."""

    @property
    def idle(self) -> bool:
        """Nothing waits to be written."""

    def fan_out(
        self, runtime: Runtime, sets: list[tuple[list[Any], list[Change]]]
    ) -> Awaitable[None]:
        """Hand each of ``sets`` (subscribers, and the changes of their watch's
        set) on; this one is among the subscribers."""
        ...

    def end(self, how: str) -> None:
        """The watch ended (:data:`CLOSED`, :data:`REFUSED`)."""


class ListMember(Waiting):
    """One subscriber of a watch that runs through strawberry: the changes it
    has not taken yet, the latest per row."""

    __slots__ = ("_end", "_pending", "watch")

    def __init__(self, watch: ListWatch) -> None:
        super().__init__()
        self.watch = watch
        self._pending: dict[str, Change] = {}
        self._end: str | None = None

    @property
    def idle(self) -> bool:
        return not self._pending

    def push(self, changes: list[Change]) -> None:
        merge(self._pending, changes)
        self.watch.runtime.list_writing.add(self)
        self._wake()

    def end(self, how: str) -> None:
        if self._end is None:
            self._end = how
        self.watch.runtime.list_writing.add(self)
        self._wake()

    async def next(self) -> list[Change] | str:
        """The changes pending now, or how the subscription ends."""
        while not self._pending and self._end is None:
            # Strawberry asks again only once it wrote the frames of what it
            # took before: until then this member is still writing (settled).
            self.watch.runtime.list_writing.discard(self)
            await self._sleep()
        if self._pending:
            changes, self._pending = list(self._pending.values()), {}
            return changes
        assert self._end is not None
        return self._end

    def leave(self) -> None:
        self.watch.runtime.list_writing.discard(self)
        self.watch.leave(self)


class ListWatch:
    """The set of one (type, filter, viewer) in one loop, and its members."""

    def __init__(
        self,
        runtime: Runtime,
        key: Hashable,
        group_key: Hashable,
        definition: ObservedDefinition,
        info: Info,
        viewer: Viewer,
        filters: Any,
        personal: bool = False,
    ) -> None:
        self.runtime, self.key, self.group_key = runtime, key, group_key
        #: Its filter uses a method of the application's own, which may read who
        #: asks (``info``): its set is the viewer's own even for a type that is not.
        self.personal = personal
        self.definition, self.info, self.viewer, self.filters = definition, info, viewer, filters
        #: ``filter_key(filters)``, kept: every batch of changes asks with it.
        self.filter_key = filter_key(filters)
        self.members: set[ListMember | Subscriber] = set()
        self.held: set[str] = set()
        self.group: ListGroup | None = None
        #: Batches its group took while it read its set (decided for it alone after).
        self.backlog: list[Rows] = []
        #: Its set is read and its backlog decided: the group decides for it.
        self.following = False
        #: Whether its backlog is being decided.
        self.catching_up = False
        self.closed = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def start(self, user: Any) -> None:
        """Join the group, read the set (a commit in between is seen), then
        decide what the group took meanwhile."""
        try:
            group = await ListGroup.enter(self)
            work = partial(members, self.definition, self.info, user, self.filters)
            self.held = set(await run(self.runtime.reads, self.definition, work))
            while self.backlog and not self.closed:
                self.catching_up = True
                rows, self.backlog = combined(self.backlog), []
                if not await group.handle([self], rows):
                    self.end(REFUSED)
            self.following = True
        except BaseException as error:
            self._close()
            if not self.ready.done():
                if isinstance(error, asyncio.CancelledError):
                    error = RuntimeError("the list watch's first subscriber went away")
                self.ready.set_exception(error)
                self.ready.exception()  # retrieved: the joiners re-raise it
            raise
        finally:
            self.catching_up = False
        self.ready.set_result(None)

    def hand(self, found: list[Change]) -> list[Subscriber]:
        """Hand a batch's decisions to the members that run through strawberry;
        the transport's subscribers, returned, get them from the group all at
        once (their frames built once per shape)."""
        served: list[Subscriber] = []
        for member in list(self.members):
            if isinstance(member, ListMember):
                member.push(found)
            else:
                served.append(member)
        return served

    def end(self, how: str) -> None:
        """The watch ends: every member is told how (:data:`CLOSED`, :data:`REFUSED`)."""
        for member in list(self.members):
            member.end(how)
        self._close()

    def leave(self, member: ListMember | Subscriber) -> None:
        self.members.discard(member)
        if not self.members:
            self._close()

    def _close(self) -> None:
        self.closed = True
        if self.runtime.list_watches.get(self.key) is self:
            del self.runtime.list_watches[self.key]
        if self.group is not None:  # (also while the group is still opening)
            self.group.remove(self)


M = TypeVar("M", ListMember, Subscriber)


async def join(
    runtime: Runtime,
    definition: ObservedDefinition,
    info: Info,
    viewer: Viewer,
    user: Any,
    filters: Any,
    make: Callable[[ListWatch], M] = ListMember,  # type: ignore[assignment]
) -> M:
    """A member (``make(watch)``) of the watch of ``definition``'s list with
    ``filters`` as ``viewer`` sees it, started if there is none; raises what
    its first read raised (:class:`~gql_observer.graphql.listing.BadFilter`).
    With ``COHORTS`` off every subscriber has a watch (and a group) of its own."""
    why = refused(runtime.settings, definition, filters)
    if why is not None:
        raise BadFilter(why)
    # A filter method of the application's own may read ``info`` (who asks), as
    # ``get_queryset`` may: its watch and group are the viewer's, as for a scoped type.
    personal = not reusable(filters)
    scope = viewer if definition.scoped or personal else None
    key: Hashable = (definition.list_name, scope, filter_key(filters))
    group_key: Hashable = (definition.list_name, scope, personal)
    if not runtime.settings.cohorts:
        alone = object()  # nobody else's keys
        key, group_key = (key, alone), (group_key, alone)
    while True:
        watch = runtime.list_watches.get(key)
        if watch is None:
            watch = runtime.list_watches[key] = ListWatch(
                runtime, key, group_key, definition, info, viewer, filters, personal
            )
            member = make(watch)
            watch.members.add(member)
            await watch.start(user)
            return member
        member = make(watch)
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
