"""List watches: the list subscribers of one loop that share a type, a filter
and (for a type that depends on the viewer) a viewer share one set.

A :class:`ListWatch` follows the model's changes (one hub subscription), keeps
the keys of the rows in its set and decides once per batch of changes which
rows entered, changed in or left it. A subscriber that runs through strawberry
is a :class:`ListMember`: it gets those decisions through a buffer of one per
row and is executed by strawberry with its own context. One the transport
serves with the others (:mod:`gql_observer.graphql.list_member`) is a
:class:`Subscriber`: the watch hands each batch's decisions to all of them at
once, so that each frame is built once per shape. A member that joins a running watch takes
its set as its own: the set is never sent, and every change after the join
reaches the member, so what it receives converges like a set it read itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

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

__all__ = ["CLOSED", "REFUSED", "ListMember", "ListWatch", "Subscriber", "join", "merge"]

logger = logging.getLogger(__name__)

#: The watch ended (the hub shut down, or it failed): the subscription completes.
CLOSED: Final = "closed"
#: The viewer is no longer who they were: 401, then the subscription completes.
REFUSED: Final = "refused"


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

    def fan_out(self, runtime: Runtime, group: list[Any], changes: list[Change]) -> Awaitable[None]:
        """Hand ``changes`` to every subscriber of ``group`` (this one among them)."""
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
        definition: ObservedDefinition,
        info: Info,
        viewer: Viewer,
        filters: Any,
    ) -> None:
        self.runtime, self.key, self.definition = runtime, key, definition
        self.info, self.viewer, self.filters = info, viewer, filters
        #: ``filter_key(filters)``, kept: every batch of changes asks with it.
        self.filter_key = filter_key(filters)
        self.members: set[ListMember | Subscriber] = set()
        #: Whether a batch of changes is being handled (read, decided, handed on).
        self.delivering = False
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
                self.delivering = True
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
                            self.runtime.conditions,
                            reads,
                            definition,
                            self.info,
                            self.viewer,
                            self.filters,
                            self.filter_key,
                            reread,
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
                    await self._hand(found)
                self.delivering = False
        except Exception:
            logger.exception(
                "A live list of %s failed; its subscriptions end", definition.model_label
            )
        finally:
            self.delivering = False
            for member in list(self.members):
                member.end(ending)
            self._close()

    async def _hand(self, found: list[Change]) -> None:
        """Hand a batch's decisions to every member; the transport's subscribers
        all at once (their frames built once per shape)."""
        group: list[Subscriber] = []
        for member in list(self.members):
            if isinstance(member, ListMember):
                member.push(found)
            else:
                group.append(member)
        if group:
            await group[0].fan_out(self.runtime, group, found)

    def leave(self, member: ListMember | Subscriber) -> None:
        self.members.discard(member)
        if not self.members:
            self._close()
            if self.task is not None and self.task is not asyncio.current_task():
                self.task.cancel()

    def _close(self) -> None:
        if self.runtime.list_watches.get(self.key) is self:
            del self.runtime.list_watches[self.key]
        hub = self.runtime.started_hub  # (not started again once the runtime closed)
        if self.subscription is not None and hub is not None:
            hub.leave(self.subscription)
        self.subscription = None


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
    With ``COHORTS`` off every subscriber has a watch of its own."""
    key: Hashable = (
        definition.list_name,
        viewer if definition.scoped else None,
        filter_key(filters),
    )
    if not runtime.settings.cohorts:
        key = (key, object())  # alone: nobody else's key
    while True:
        watch = runtime.list_watches.get(key)
        if watch is None:
            watch = runtime.list_watches[key] = ListWatch(
                runtime, key, definition, info, viewer, filters
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
