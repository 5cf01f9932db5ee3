"""Reads of one kind, coalesced (:class:`Batch`), and the reads of one event
loop (:class:`Reads`): the rows of an observed type and the checks of viewers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterable
from functools import partial
from typing import Any, Final, Generic, TypeVar

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError
from django.db.models import Model
from strawberry import Info

from gql_observer.core.calls import Calls
from gql_observer.core.conf import Settings
from gql_observer.core.db import retrying, unit_of_work
from gql_observer.core.statements import read_both
from gql_observer.graphql.relations import ReadPlan, merge
from gql_observer.graphql.rows import by_lookup, has_get_queryset, rows, rows_queryset
from gql_observer.graphql.viewers import (
    UserRows,
    Viewer,
    check_many,
    checks_with_users,
    checks_without_users,
)
from gql_observer.observe.definition import ObservedDefinition

__all__ = ["READ_TASK", "Batch", "Reads"]

V = TypeVar("V")

#: The name of a coalesced read's task (one per kind of read while reads go on).
READ_TASK: Final = "gql_observer.read"


class Batch(Generic[V]):
    """Asks of one kind, coalesced.

    The first ask after a quiet spell is fetched at once. After that, fetches of
    this kind start at most once per ``READ_BATCH_WINDOW`` (counted from the
    start of the previous one): what is asked meanwhile waits and is fetched
    together by one query. A burst of changes to many instances costs a query
    per window, not one per change. Every query starts after each ask it
    answers, so an answer is never older than its ask.

    An ask names one value (:meth:`ask`) or many (:meth:`ask_all`, one future
    for all of them: a thousand viewers of one event cost one future, not a
    thousand). A fetch of rows reads the relations every ask of it planned
    (:mod:`gql_observer.graphql.relations`)."""

    __slots__ = (
        "_task",
        "fetch",
        "key",
        "label",
        "owner",
        "pending",
        "plans",
        "running",
        "waiting",
    )

    def __init__(
        self,
        owner: Reads,
        key: Hashable,
        fetch: Callable[[list[Any], ReadPlan | None], dict[Any, V]],
        label: str,
    ) -> None:
        self.owner = owner
        self.key = key
        self.fetch = sync_to_async(unit_of_work(fetch), thread_sensitive=True)
        self.label = label
        #: The values the next fetch reads (an ordered set).
        self.pending: dict[Any, None] = {}
        #: The relations the next fetch reads, by plan (an ordered set).
        self.plans: dict[ReadPlan, None] = {}
        #: Who waits for the next fetch: (the values, whether it asked for many, future).
        self.waiting: list[tuple[Any, bool, asyncio.Future[Any]]] = []
        self.running = False
        self._task: asyncio.Task[None] | None = None

    def ask(self, value: Any, plan: ReadPlan | None = None) -> asyncio.Future[V]:
        """The answer for ``value`` (with the relations ``plan`` reads)."""
        self.pending[value] = None
        if plan is not None:
            self.plans[plan] = None
        return self._wait(value, False)

    def ask_all(self, values: Iterable[Any]) -> asyncio.Future[dict[Any, V]]:
        """The answers for every one of ``values``, by value."""
        values = list(values)
        self.pending.update(dict.fromkeys(values))
        return self._wait(values, True)

    def _wait(self, values: Any, many: bool) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.waiting.append((values, many, future))
        if not self.running:
            self.running = True
            loop.call_soon(self._start)
        return future

    def _start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        self._task.set_name(READ_TASK)

    async def _run(self) -> None:
        window, retry_window = self.owner.window, self.owner.retry_window
        loop = asyncio.get_running_loop()
        try:
            while self.waiting:
                started = loop.time()
                values, waiting = list(self.pending), self.waiting
                plan = merge(self.plans)
                self.pending, self.waiting, self.plans = {}, [], {}
                try:
                    # While the database cannot be reached the batch waits; what is
                    # asked meanwhile is read by the next query.
                    answers = await retrying(
                        partial(self.fetch, values, plan), retry_window, "read", self.label
                    )
                except BaseException as error:
                    if (
                        isinstance(error, Exception)
                        and not isinstance(error, (OperationalError, InterfaceError))
                        and len(waiting) > 1
                    ):
                        # One ask may have failed the query of all (a value, a
                        # filter the database refuses): each is read alone, so
                        # that only its own fails. Not a database still out of
                        # reach after the retry window: that is everybody's.
                        await self._alone(waiting, plan, retry_window)
                        continue
                    for _, _, future in waiting:
                        if not future.done():
                            future.set_exception(error)
                    if isinstance(error, asyncio.CancelledError):
                        raise
                    continue
                for asked, many, future in waiting:
                    _answer(future, asked, many, answers)
                # Linger: in a burst, what is asked during the window is read together.
                wait = started + window - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
        finally:
            self.running = False
            if not self.waiting:
                self.owner.done(self)

    async def _alone(
        self,
        waiting: list[tuple[Any, bool, asyncio.Future[Any]]],
        plan: ReadPlan | None,
        retry_window: float,
    ) -> None:
        """Answer each of ``waiting`` by a read of its own values (after a read
        of them all failed): a failure is only its own."""
        for index, (asked, many, future) in enumerate(waiting):
            if future.done():
                continue
            try:
                answers = await retrying(
                    partial(self.fetch, list(asked) if many else [asked], plan),
                    retry_window,
                    "read",
                    self.label,
                )
            except Exception as error:
                future.set_exception(error)
                continue
            except BaseException as error:  # cancelled: nobody left is answered
                for _, _, left in waiting[index:]:
                    if not left.done():
                        left.set_exception(error)
                raise
            _answer(future, asked, many, answers)


def _answer(future: asyncio.Future[Any], asked: Any, many: bool, answers: dict[Any, Any]) -> None:
    """Give ``future`` (an ask of ``asked``: many values or one) its answer."""
    if not future.done():
        future.set_result({v: answers[v] for v in asked} if many else answers[asked])


class Reads:
    """The coalesced reads of one event loop, by kind."""

    def __init__(self, settings: Settings) -> None:
        self.window = settings.read_batch_window
        self.retry_window = settings.read_retry_window
        self._batches: dict[Hashable, Batch[Any]] = {}
        self._calls: dict[Hashable, Calls] = {}
        self._users = UserRows()
        #: The users of each kind of joint read (each remembers its own viewers).
        self._joint_users: dict[Hashable, UserRows] = {}

    def __len__(self) -> int:
        """Kinds of reads (and of calls) going on."""
        return len(self._batches) + len(self._calls)

    def batch(
        self,
        key: Hashable,
        fetch: Callable[[], Callable[[list[Any], ReadPlan | None], dict[Any, V]]],
        label: str,
    ) -> Batch[V]:
        found: Batch[V] | None = self._batches.get(key)
        if found is None:
            found = self._batches[key] = Batch(self, key, fetch(), label)
        return found

    def call(self, key: Hashable, label: str, work: Callable[[], V]) -> asyncio.Future[V]:
        """``work()`` on Django's sync thread, in one hop with the other calls of
        kind ``key`` asked meanwhile (:class:`Calls`); ``label`` names what it
        reads in the logs."""
        found = self._calls.get(key)
        if found is None:
            found = self._calls[key] = Calls(key, label, self.retry_window, self._called, READ_TASK)
        return found.call(work)

    def done(self, batch: Batch[Any]) -> None:
        """``batch`` has nothing left to read."""
        if self._batches.get(batch.key) is batch:
            del self._batches[batch.key]

    def _called(self, calls: Calls) -> None:
        """``calls`` has nothing left to make."""
        if self._calls.get(calls.key) is calls:
            del self._calls[calls.key]

    def rows(
        self,
        definition: ObservedDefinition,
        info: Info | None,
        viewer: Viewer,
        lookup: str,
        value: object,
        plan: ReadPlan | None = None,
    ) -> asyncio.Future[Model | None]:
        """The row whose ``lookup`` field is ``value``, as ``viewer`` sees the type's
        rows, with the relations ``plan`` reads."""
        # Rows depend on the viewer only through get_queryset: without one, every
        # viewer's event is answered by the same query and the same instance.
        scope = viewer.identity if has_get_queryset(definition) else None
        batch: Batch[Model | None] = self.batch(
            ("rows", definition.field_name, lookup, scope),
            lambda: partial(rows, definition, info, lookup),
            definition.model._meta.label,
        )
        return batch.ask(value, plan)

    def _checks(self) -> Batch[Any]:
        batch: Batch[Any] = self.batch(
            ("viewers",),
            lambda: lambda viewers, _: check_many(viewers, self._users),
            "viewers of",
        )
        return batch

    def check(self, viewer: Viewer) -> asyncio.Future[Any]:
        """``viewer``'s user as the database has it now (``None``: not who they were)."""
        return self._checks().ask(viewer)

    def checks(self, viewers: Iterable[Viewer]) -> asyncio.Future[dict[Viewer, Any]]:
        """Each of ``viewers``' users as the database has them now (one future)."""
        return self._checks().ask_all(viewers)

    async def row_and_checks(
        self,
        definition: ObservedDefinition,
        info: Info | None,
        lookup: str,
        value: object,
        plan: ReadPlan | None,
        viewers: Iterable[Viewer],
    ) -> tuple[Model | None, dict[Viewer, Any]]:
        """The row whose ``lookup`` field is ``value`` and each of ``viewers``' users
        as the database has them now, read by one statement (a type without
        ``get_queryset``: the rows are everybody's). Asks of one type and lookup
        in one window share the statement, as :meth:`rows` and :meth:`checks` do."""
        key = ("rows and viewers", definition.field_name, lookup)
        users = self._joint_users.get(key)
        if users is None:
            users = self._joint_users[key] = UserRows()
        batch: Batch[Any] = self.batch(
            key,
            lambda: partial(_rows_and_users, definition, info, lookup, users),
            definition.model._meta.label,
        )
        row = batch.ask(value, plan)
        checked = batch.ask_all(viewers)
        await asyncio.gather(row, checked)
        return row.result(), checked.result()


def _rows_and_users(
    definition: ObservedDefinition,
    info: Info | None,
    lookup: str,
    users: UserRows,
    values: list[Any],
    plan: ReadPlan | None,
) -> dict[Any, Any]:
    """The answers of a joint read: for each lookup value of ``values`` its row,
    for each :class:`Viewer` its check, in one statement when both need reading
    and :func:`~gql_observer.core.statements.read_both` can combine them, else
    as :func:`rows` and :func:`check_many` read them."""
    viewers = [value for value in values if isinstance(value, Viewer)]
    looked_up = [value for value in values if not isinstance(value, Viewer)]
    checked, waiting = checks_without_users(viewers)
    found: list[Model] | None = None
    fresh: dict[Any, Any] | None = None
    if looked_up and waiting:
        try:
            asked_rows = rows_queryset(definition, info, lookup, looked_up, plan)
            asked_users = users.queryset(waiting)
            both = read_both(asked_rows, asked_users)
        except (ValidationError, ValueError, TypeError):
            both = None  # a value the lookup field cannot hold: read apart
        if both is not None:
            found, user_rows = both
            fresh = users.build(asked_users.db, user_rows)
    answers: dict[Any, Any] = {}
    if looked_up:
        answers.update(
            rows(definition, info, lookup, looked_up, plan)
            if found is None
            else by_lookup(lookup, looked_up, found)
        )
    if waiting:
        checked = checks_with_users(checked, waiting, users(waiting) if fresh is None else fresh)
    answers.update(checked)
    return answers
