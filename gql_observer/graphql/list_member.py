"""Live list subscriptions the transport serves with the others of their set.

A subscription to a live list field that the library can vouch for (the same
rules as for an instance's: :mod:`gql_observer.graphql.analysis`) does not run
strawberry's generator: it is a :class:`ListSubscriber`, a member of its list
watch (:mod:`gql_observer.graphql.list_watch`) with its own viewer, filters,
``requestId`` and socket. The watch decides once per batch of changes which
rows entered, changed in or left its set; :meth:`ListSubscriber.fan_out`
then builds each change's frame once per distinct selection (shape) for all
the subscribers of the watch, each one's ``requestId`` and operation id
spliced in, fields that may read the context resolved per subscriber, and the
whole operation executed per subscriber where no shape can vouch for it
(:func:`gql_observer.graphql.results.payloads`, as for instances).

Frames are written as a watch member writes them (inline; a task only while the
socket pushes back). What comes meanwhile waits as changes, the latest per row,
merged as the strawberry path merges them (:func:`~gql_observer.graphql.list_watch.merge`),
and is built when the socket takes frames again; a final frame (401, a
failure) is never dropped and comes after them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

from gql_observer.graphql import list_watch
from gql_observer.graphql.analysis import Analysis, Binding
from gql_observer.graphql.envelope import BAD_REQUEST, CREATED, ERRORS, UNAUTHORIZED, Action
from gql_observer.graphql.listing import STATUS, BadFilter, Change, checked
from gql_observer.graphql.member import Member, Socket, Spec
from gql_observer.graphql.results import failure, payloads
from gql_observer.graphql.viewers import Viewer

if TYPE_CHECKING:
    from gql_observer.graphql.list_watch import ListWatch
    from gql_observer.graphql.runtime import Runtime

__all__ = ["ListSubscriber", "admit"]

logger = logging.getLogger(__name__)

_ACCEPTED: Final = Spec(Action.SUBSCRIBE_LIST, CREATED, None, (), False, False)
_ANONYMOUS: Final = Spec(
    Action.SUBSCRIBE_LIST, UNAUTHORIZED, None, ERRORS[UNAUTHORIZED], False, True
)
_REVOKED: Final = Spec(Action.UPDATE, UNAUTHORIZED, None, ERRORS[UNAUTHORIZED], False, True)


def _spec(change: Change) -> Spec:
    status = STATUS[change.action]
    return Spec(Action(change.action), status, change.row, (), False, False, change.pk)


class ListSubscriber(Member):
    """One live list subscription served by the transport: a member of its list
    watch, its frames written as a watch member writes them."""

    __slots__ = ("_changes", "filters", "list_watch", "runtime")

    def __init__(
        self, socket: Socket, operation: Any, analysis: Analysis, binding: Binding, viewer: Viewer
    ) -> None:
        super().__init__(socket, operation, analysis, binding, viewer)
        self.filters = binding.filters
        self.list_watch: ListWatch | None = None
        self.runtime: Runtime | None = None
        #: Changes that came while the socket pushed back (or before the 201).
        self._changes: dict[str, Change] = {}

    def _joined(self, watch: ListWatch) -> ListSubscriber:
        self.list_watch, self.runtime = watch, watch.runtime
        return self

    @property
    def idle(self) -> bool:
        return not self.busy and not self.waiting and not self._changes

    # ---- what the watch hands on ----------------------------------------------------------

    async def fan_out(self, runtime: Runtime, sets: list[tuple[list[Any], list[Change]]]) -> None:
        """Every subscriber of each of ``sets`` (subscribers, and the changes of
        their watch's set) gets its changes: each change's frame built once per
        shape for all of them, in order for each subscriber (a row's change that
        several watches of one group decided alike is built once); one whose
        socket pushes back (or that has not sent its 201 yet) keeps the changes."""
        plan: list[tuple[list[ListSubscriber], list[Change], list[Spec]]] = []
        targets: list[tuple[Member, Spec]] = []
        for group, changes in sets:
            now: list[ListSubscriber] = []
            for subscriber in group:
                if subscriber.closing:
                    continue
                if subscriber.pending or subscriber.busy:
                    list_watch.merge(subscriber._changes, changes)
                else:
                    now.append(subscriber)
            if not now:
                continue
            items = [_spec(change) for change in changes]
            plan.append((now, changes, items))
            targets += [(s, item) for s in now for item in items]
        if not targets:
            return
        built = payloads(targets)
        waiting = [p for _, _, p in built if not isinstance(p, str)]
        done: list[Any] = []
        if waiting:
            done = await asyncio.gather(*waiting, return_exceptions=True)
        outcomes = iter(done)
        frames: dict[tuple[int, int], str | BaseException] = {}
        for subscriber, item, payload in built:
            frames[id(subscriber), id(item)] = (
                payload if isinstance(payload, str) else next(outcomes)
            )
        for now, changes, items in plan:
            for subscriber in now:
                for change, item in zip(changes, items, strict=True):
                    outcome = frames[id(subscriber), id(item)]
                    if isinstance(outcome, BaseException):
                        if not isinstance(outcome, Exception):
                            raise outcome
                        logger.error("An execution failed", exc_info=outcome)
                        subscriber.push(failure(subscriber, outcome), final=True)
                        break
                    subscriber._deliver(change, outcome)
                if subscriber.closing and subscriber.list_watch is not None:
                    subscriber.leave()
                    runtime.finish_soon(asyncio.ensure_future(subscriber.finish()))

    def _deliver(self, change: Change, payload: str) -> None:
        """Write one change's frame now; or keep the change while the socket pushes back."""
        if self.closing:
            return
        if self.pending or self.busy:
            list_watch.merge(self._changes, [change])
            return
        self._push(f"{self._prefix}{payload}}}", False)

    def end(self, how: str) -> None:
        """The watch ended: 401 and ``complete`` for a viewer who is no longer who
        they were, ``complete`` otherwise, after what is waiting."""
        self.list_watch = None
        assert self.runtime is not None
        self.runtime.finish_soon(asyncio.ensure_future(self._end(how)))

    async def _end(self, how: str) -> None:
        if how == list_watch.REFUSED:
            self.push(await _payload(self, _REVOKED), final=True)
        else:
            self.closing = True
        if not self.pending:  # else its admission finishes it, after the 201
            await self.finish()

    # ---- writing ------------------------------------------------------------------------

    def activate(self, first: str) -> bool:
        """Send the 201 (``first``), then what came meanwhile; whether the
        subscription goes on."""
        held, self._held, self.pending = self._held, None, False
        self._push(f"{self._prefix}{first}}}", False)
        if held is not None:
            self._next = held[0]
            self.closing = self.closing or held[1]
        if (self._changes or self._next is not None) and self._writer is None:
            # What came before the 201 is written in a task, as a write the
            # socket pushed back on is (with the same send timeout).
            self._writer = asyncio.ensure_future(self._flush())
            timeout = self.socket.send_timeout
            if timeout:
                self._timer = asyncio.get_running_loop().call_later(timeout, self._timed_out)
        return not self.closing

    async def _flush(self) -> None:
        try:
            await self._drain()
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.debug("Could not write to a member's socket", exc_info=True)
        finally:
            self._writer = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    async def _drain(self) -> None:
        """The changes that waited, each built for this subscriber alone, then
        the final frame, if any."""
        while self.alive:
            if self._changes:
                changes, self._changes = list(self._changes.values()), {}
                for change in changes:
                    payload = await _payload(self, _spec(change))
                    await self.socket.write_frame(f"{self._prefix}{payload}}}")
            elif self._next is not None:
                frame, self._next = self._next, None
                await self.socket.write_frame(frame)
            else:
                return

    def leave(self) -> None:
        """The client is done with this subscription (or gone)."""
        watch, self.list_watch = self.list_watch, None
        if watch is not None:
            watch.leave(self)
        if self._writer is not None:
            self._writer.cancel()


async def _payload(subscriber: ListSubscriber, item: Spec) -> str:
    ((_, _, payload),) = payloads([(subscriber, item)])
    return payload if isinstance(payload, str) else await payload


async def admit(runtime: Runtime, subscriber: ListSubscriber) -> None:
    """Start one live list subscription as the subscription resolver would: 401
    for a viewer who may not use the list, 400 for a filter the database
    refuses, else 201, then every change of its set."""
    try:
        await _admit(runtime, subscriber)
    except asyncio.CancelledError:
        subscriber.leave()
        raise
    except Exception as error:
        logger.exception("A live list subscription failed to start")
        subscriber.leave()
        subscriber.refused()
        subscriber.push(failure(subscriber, error), final=True)
        await subscriber.finish()


async def _admit(runtime: Runtime, subscriber: ListSubscriber) -> None:
    definition = subscriber.analysis.definition
    subscriber.info = info = subscriber.make_info()
    ok, user = await checked(runtime.reads, definition, subscriber.viewer)
    if not ok:
        await _refuse(subscriber, _ANONYMOUS)
        return
    try:
        await list_watch.join(
            runtime,
            definition,
            info,
            subscriber.viewer,
            user,
            subscriber.filters,
            subscriber._joined,
        )
    except BadFilter as error:
        subscriber.list_watch = None
        errors = (f"Invalid filters: {error}",)
        bad = Spec(Action.SUBSCRIBE_LIST, BAD_REQUEST, None, errors, False, True)
        await _refuse(subscriber, bad)
        return
    if not subscriber.alive:
        subscriber.leave()
        return  # the client completed it meanwhile
    first = await _payload(subscriber, _ACCEPTED)
    if not subscriber.activate(first):
        subscriber.leave()
        await subscriber.finish()


async def _refuse(subscriber: ListSubscriber, item: Spec) -> None:
    subscriber.refused()
    subscriber.push(await _payload(subscriber, item), final=True)
    await subscriber.finish()
