"""List groups: the list watches of one loop that share a type and (for a
type that depends on the viewer) a viewer
(:mod:`gql_observer.graphql.list_watch`) follow the model's changes together.

A :class:`ListGroup` has one hub subscription and one task for all its
watches: per batch of changes it checks the viewer once, reads the changed
rows once for every filter (:func:`~gql_observer.graphql.matching.matching`)
and decides every watch's set at once
(:func:`~gql_observer.graphql.listing.decide`), so a change costs one wake-up
and one read per group, not per filter; then it hands every watch's decisions
to the transport's subscribers at once, so that a row several sets took in is
built once per shape for all of them. A watch that is still reading its set
gets the batches taken meanwhile in its backlog, and decides them itself once
its set is read (:meth:`ListGroup.handle` for it alone).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from django.db.models import Model

from gql_observer.fanout.rowsets import Rows, RowsSubscription
from gql_observer.graphql.listing import Change, decide, resynced, run
from gql_observer.graphql.matching import matching
from gql_observer.graphql.visibility import allowed

if TYPE_CHECKING:
    from gql_observer.graphql.list_watch import ListWatch, Subscriber
    from gql_observer.graphql.runtime import Runtime

__all__ = ["CLOSED", "REFUSED", "ListGroup"]

logger = logging.getLogger(__name__)

#: The watch ended (the hub shut down, or it failed): the subscription completes.
CLOSED: Final = "closed"
#: The viewer is no longer who they were: 401, then the subscription completes.
REFUSED: Final = "refused"


class ListGroup:
    """The list watches of one loop that share a type and (for a type that
    depends on the viewer) a viewer: one hub subscription, one task, and per
    batch of changes one check of the viewer, one read for every filter and
    one decision for every set."""

    def __init__(self, runtime: Runtime, key: Hashable, first: ListWatch) -> None:
        self.runtime, self.key, self.definition = runtime, key, first.definition
        # The first watch's: a group's watches share the viewer where it matters
        # (a scoped type), and the rows' queryset is everybody's where it does not.
        self.info, self.viewer = first.info, first.viewer
        #: Its filters may read who asks: its reads are never shared with another viewer's.
        self.personal = first.personal
        self.watches: dict[Hashable, ListWatch] = {}
        self.subscription: RowsSubscription | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None
        #: Whether a batch of changes is being handled (read, decided, handed on).
        self.delivering = False
        self.closed = False

    @classmethod
    async def enter(cls, watch: ListWatch) -> ListGroup:
        """The open group ``watch`` belongs to, opened if there is none; from
        now on the group takes every change for it."""
        runtime = watch.runtime
        while True:
            group = runtime.list_groups.get(watch.group_key)
            if group is None:
                group = runtime.list_groups[watch.group_key] = cls(runtime, watch.group_key, watch)
                group._add(watch)
                await group._open()
                return group
            group._add(watch)
            try:
                await asyncio.shield(group.opened)
            except BaseException:
                group.remove(watch)
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise
                continue  # whoever opened it went away first: again
            return group

    async def _open(self) -> None:
        hub = self.runtime.hub
        try:
            self.subscription = await hub.join_rows(self.definition.model_label)
        except BaseException as error:
            self._close()
            if isinstance(error, asyncio.CancelledError):
                error = RuntimeError("the list group's first watch went away")
            self.opened.set_exception(error)
            self.opened.exception()  # retrieved: the joiners try again
            raise
        self.opened.set_result(None)
        self.task = hub.spawn(self._follow(), "gql_observer.list_group")

    async def _follow(self) -> None:
        assert self.subscription is not None
        ending = CLOSED
        try:
            while self.watches:
                rows = await self.subscription.next_rows()
                if rows.closed:
                    break
                self.delivering = True
                following: list[ListWatch] = []
                for watch in list(self.watches.values()):
                    if watch.following:
                        following.append(watch)
                    else:
                        watch.backlog.append(rows)
                if following and not await self.handle(following, rows):
                    ending = REFUSED
                    break
                self.delivering = False
        except Exception:
            logger.exception(
                "A live list of %s failed; its subscriptions end", self.definition.model_label
            )
        finally:
            self.delivering = False
            for watch in list(self.watches.values()):
                watch.end(ending)
            self._close()

    async def handle(self, watches: list[ListWatch], rows: Rows) -> bool:
        """Decide what ``rows`` does to each of ``watches``' sets and hand the
        decisions on; ``False`` when the viewer may no longer see the list."""
        definition, reads = self.definition, self.runtime.reads
        user: Any = self.viewer.user
        if definition.scoped:
            user = await reads.check(self.viewer)
            if not allowed(definition, user):
                return False
        if rows.resync:
            for watch in watches:
                work = partial(
                    resynced, definition, watch.info, user, watch.filters, watch.held, rows
                )
                found, watch.held = await run(reads, definition, work)
                await self._hand([(watch, found)])
            return True
        reread = [pk for pk, d in rows.changed.items() if d.action != "delete"]
        read: dict[str, Model] = {}
        matched: dict[Hashable, set[str]] = {}
        if reread:
            filters = {watch.filter_key: watch.filters for watch in watches}
            read, matched = await matching(
                self.runtime.conditions,
                reads,
                definition,
                self.info,
                self.viewer,
                filters,
                reread,
                personal=self.personal,
            )
        sets = [(watch.held, matched.get(watch.filter_key, _NONE)) for watch in watches]
        verdicts = partial(decide, definition, user, rows, read, sets)
        if definition.permission is None:
            decided = verdicts()
        else:  # the hook may query (user.has_perm): on Django's thread, one hop
            # for every group this change reached (one group per viewer)
            decided = await reads.call(
                ("decide", definition.field_name), definition.model._meta.label, verdicts
            )
        await self._hand(list(zip(watches, decided, strict=True)))
        return True

    async def _hand(self, decided: list[tuple[ListWatch, list[Change]]]) -> None:
        """Hand each watch's decisions to its members; the transport's
        subscribers of every watch at once."""
        sets: list[tuple[list[Subscriber], list[Change]]] = []
        for watch, found in decided:
            if found and not watch.closed:
                served = watch.hand(found)
                if served:
                    sets.append((served, found))
        if sets:
            await sets[0][0][0].fan_out(self.runtime, sets)

    def _add(self, watch: ListWatch) -> None:
        """From now on the group takes every change for ``watch`` (in its
        backlog until its set is read), even while the group is still opening."""
        self.watches[watch.key] = watch
        watch.group = self

    def remove(self, watch: ListWatch) -> None:
        """``watch`` ended (or goes on without this group); the group closes
        with its last watch once it is open."""
        if self.watches.get(watch.key) is watch:
            del self.watches[watch.key]
            watch.group = None
            if not self.watches and self.opened.done():
                self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.runtime.list_groups.get(self.key) is self:
            del self.runtime.list_groups[self.key]
        hub = self.runtime.started_hub  # (not started again once the runtime closed)
        if self.subscription is not None and hub is not None:
            hub.leave(self.subscription)
        self.subscription = None
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()


#: No key matched.
_NONE: Final[frozenset[str]] = frozenset()
