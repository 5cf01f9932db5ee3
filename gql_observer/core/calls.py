"""Calls of one kind on Django's sync thread, coalesced (:class:`Calls`): one
hop to the thread for every call asked meanwhile, each call failing alone.
A change that concerns a thousand viewers' lists costs one hop, not a
thousand (:meth:`gql_observer.graphql.reads.Reads.call`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError

from gql_observer.core.db import retrying, unit_of_work

__all__ = ["Calls"]

V = TypeVar("V")

#: A call waiting for its hop, and its future.
Waiting = tuple[Callable[[], Any], asyncio.Future[Any]]


class Calls:
    """Calls of one kind (``key``) on Django's sync thread, coalesced: what is
    asked before a hop starts, or while one runs, is made in the next hop, one
    hop for all of them, and each call fails alone.

    A call that fails because the database cannot be reached is made again,
    as reads are, for ``retry_window`` seconds (so a call must change nothing
    when it raises); ``label`` names what it reads in the logs. No window
    lingers between hops. ``done(self)`` is called once nothing is left."""

    __slots__ = ("_task", "done", "hop", "key", "label", "retry_window", "task_name", "waiting")

    def __init__(
        self,
        key: Hashable,
        label: str,
        retry_window: float,
        done: Callable[[Calls], None],
        task_name: str,
    ) -> None:
        self.key, self.label, self.retry_window = key, label, retry_window
        self.done, self.task_name = done, task_name
        self.hop = sync_to_async(unit_of_work(_each), thread_sensitive=True)
        #: Who waits for the next hop.
        self.waiting: list[Waiting] = []
        self._task: asyncio.Task[None] | None = None

    def call(self, work: Callable[[], V]) -> asyncio.Future[V]:
        """``work()``'s result, made on Django's sync thread."""
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self.waiting.append((work, future))
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
            self._task.set_name(self.task_name)
        return future

    async def _run(self) -> None:
        try:
            while self.waiting:
                left, self.waiting = self.waiting, []
                try:
                    await retrying(
                        partial(self._attempt, left), self.retry_window, "read", self.label
                    )
                except BaseException as error:
                    for _, future in left:
                        if not future.done():
                            future.set_exception(error)
                    if isinstance(error, asyncio.CancelledError):
                        raise
        finally:
            self._task = None
            if not self.waiting:
                self.done(self)

    async def _attempt(self, left: list[Waiting]) -> None:
        """One hop for every call in ``left``: each answered, or failed with its
        own error; those the database was out of reach for stay in ``left``,
        and the first such error is raised (to be retried)."""
        outcomes = await self.hop([work for work, _ in left])
        unreachable: BaseException | None = None
        still = []
        for (work, future), (value, error) in zip(left, outcomes, strict=True):
            if future.done():
                continue
            if error is None:
                future.set_result(value)
            elif isinstance(error, (OperationalError, InterfaceError)):
                still.append((work, future))
                unreachable = unreachable or error
            else:
                future.set_exception(error)
        left[:] = still
        if unreachable is not None:
            raise unreachable


def _each(works: list[Callable[[], Any]]) -> list[tuple[Any, Exception | None]]:
    """Each of ``works`` made: its result, or the error it raised."""
    outcomes: list[tuple[Any, Exception | None]] = []
    for work in works:
        try:
            outcomes.append((work(), None))
        except Exception as error:
            outcomes.append((None, error))
    return outcomes
