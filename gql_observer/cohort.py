"""Cohorts: one execution and one encoded payload per distinct operation.

Subscribers whose operations are the same (document, variables, operation
name) and who see the same rows (the same viewer) form a cohort. The cohort
runs the subscription once; every result is encoded to JSON once and written
to each member's socket with only the operation id differing. This is how the
cost of a change becomes O(distinct operations) in GraphQL execution and JSON
encoding, and O(subscribers) only in socket writes.

Each member keeps at most one frame waiting behind the one being written: a
slow socket never holds up the cohort or the other members, and when it falls
behind, it skips to the latest state (a final frame is never skipped).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine, Hashable
from functools import lru_cache
from typing import Any, Protocol

from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.aio import aclosing

from . import registry

__all__ = [
    "Cohort",
    "Member",
    "Socket",
    "cohort_key",
    "cohorts",
    "encode",
    "join",
    "observed_subscription",
    "result_payload",
]

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1024)
def observed_subscription(query: str, operation_name: str | None) -> str | None:
    """The observed field ``query`` subscribes to, if it is a subscription of one
    observed field (anything else runs per subscriber, as strawberry runs it)."""
    try:
        document = parse(query)
    except GraphQLError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1 or operations[0].operation != OperationType.SUBSCRIPTION:
        return None
    selections = operations[0].selection_set.selections
    if len(selections) != 1:
        return None
    name = getattr(getattr(selections[0], "name", None), "value", None)
    return name if isinstance(name, str) and registry.by_field(name) is not None else None


# A type observed later makes a cached "not observed" answer wrong.
registry.on_register(lambda definition: observed_subscription.cache_clear())


def encode(payload: Any) -> str:
    """JSON as it goes on the wire (compact)."""
    return json.dumps(payload, separators=(",", ":"))


def result_payload(result: ExecutionResult) -> dict[str, Any]:
    """The payload of a result message (``next``, or legacy ``data``)."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    return payload


def cohort_key(
    query: str, variables: Any, operation_name: str | None, viewer: Hashable
) -> Hashable:
    """Operations with equal keys share one execution."""
    return (query, json.dumps(variables, sort_keys=True, default=str), operation_name, viewer)


class Socket(Protocol):
    """What a cohort needs of a member's connection
    (:class:`gql_observer.transport.Connection` is one)."""

    send_timeout: float
    #: The type of a result message on this socket's protocol (``next``, ``data``).
    next_type: str

    async def stream(self, operation: Any) -> Any: ...

    def is_open(self, operation: Any) -> bool: ...

    def write_frame(self, frame: str) -> Coroutine[Any, Any, None]:
        """Write one frame. Its first step runs inline, in the cohort's task: up to its
        first suspension it must not use :func:`asyncio.current_task` (no
        :func:`asyncio.timeout`, no ``TaskGroup``), which would act on the cohort's task."""
        ...

    def give_up(self) -> None: ...

    async def finish(self, operation: Any, errors: list[GraphQLError] | None) -> None: ...


class Member:
    """One subscriber of a cohort: its operation and its connection.

    A frame is written inline, without a task: an ASGI server's ``send``
    returns at once while the socket takes data. Only when the socket pushes
    back does the rest of the write move to a task of its own (with the send
    timeout on a timer), and newer frames wait behind it — one at most.
    The inline step runs in the cohort's task, hence :meth:`Socket.write_frame`'s
    rule: a timeout entered there would cancel the cohort, not the write.
    """

    __slots__ = (
        "_next",
        "_prefix",
        "_timer",
        "_writer",
        "cohort",
        "dropped",
        "operation",
        "socket",
    )

    def __init__(self, cohort: Cohort, socket: Socket, operation: Any) -> None:
        self.cohort = cohort
        self.socket = socket
        self.operation = operation
        kind = socket.next_type
        self._prefix = f'{{"id":{json.dumps(operation.id)},"type":"{kind}","payload":'
        self._next: str | None = None
        self._writer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: Frames skipped because a newer one came before the socket took them.
        self.dropped = 0

    @property
    def alive(self) -> bool:
        """Whether the operation is still open on its connection (the client may
        have completed it, the server may have ended it)."""
        return self.socket.is_open(self.operation)

    @property
    def busy(self) -> bool:
        """Whether a write is waiting for the socket."""
        return self._writer is not None

    def leave(self) -> None:
        """The client is done with this subscription (or gone)."""
        self.cohort.leave(self)
        if self._writer is not None:
            self._writer.cancel()

    def push(self, payload: str) -> None:
        """Write ``payload`` (an encoded ``next`` payload) now, or after the
        write in progress; latest wins."""
        frame = f"{self._prefix}{payload}}}"
        if self._writer is not None:
            if self._next is not None:
                self.dropped += 1
            self._next = frame
            return
        if self.alive:
            self._write_inline(frame)

    def _write_inline(self, frame: str) -> None:
        coro = self.socket.write_frame(frame)
        try:
            awaited = coro.send(None)
        except StopIteration:
            return  # written: the usual case, no task, no timer
        except Exception:
            logger.debug("Could not write to a member's socket", exc_info=True)
            return
        # The socket pushes back: finish this write (and newer frames) in a task.
        self._writer = asyncio.ensure_future(self._resume(coro, awaited))
        timeout = self.socket.send_timeout
        if timeout:
            self._timer = asyncio.get_running_loop().call_later(timeout, self._timed_out)

    async def _resume(self, coro: Coroutine[Any, Any, None], awaited: Any) -> None:
        try:
            # Drive the suspended write as a task would: wait for what it waits
            # for, then let it go on (it reads the outcome itself).
            while True:
                if isinstance(awaited, asyncio.Future):
                    await asyncio.wait([awaited])
                else:
                    await asyncio.sleep(0)
                try:
                    awaited = coro.send(None)
                except StopIteration:
                    break
            while self._next is not None and self.alive:
                frame, self._next = self._next, None
                await self.socket.write_frame(frame)
        except asyncio.CancelledError:
            coro.close()  # the connection was given up (send timeout) or is closing
        except Exception:
            logger.debug("Could not write to a member's socket", exc_info=True)
        finally:
            self._writer = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        self.socket.give_up()
        if self._writer is not None:
            self._writer.cancel()

    async def finish(self, errors: list[GraphQLError] | None = None) -> None:
        """Send what is left, then ``complete`` (or the initial ``errors``)."""
        while self._writer is not None:
            await asyncio.wait([self._writer])
        await self.socket.finish(self.operation, errors)


class Cohort:
    """Subscribers of one operation for one viewer, served by one execution."""

    def __init__(self, key: Hashable, socket: Socket, operation: Any) -> None:
        self.key = key
        self.members: dict[int, Member] = {}
        self.first: str | None = None
        self._socket = socket
        self._operation = operation
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.ensure_future(self._run())
        self.task.set_name("gql_observer.cohort")

    def join(self, socket: Socket, operation: Any) -> Member:
        member = Member(self, socket, operation)
        self.members[id(member)] = member
        if self.first is not None:
            # What the running execution answered first (subscribe_instance):
            # a late member gets it too, then every change after it joined.
            member.push(self.first)
        return member

    def leave(self, member: Member) -> None:
        self.members.pop(id(member), None)
        if not self.members:
            if cohorts.get(self.key) is self:
                del cohorts[self.key]
            self.task.cancel()

    async def _run(self) -> None:
        socket, operation = self._socket, self._operation
        try:
            stream = await socket.stream(operation)
            async with aclosing(stream):
                async for result in stream:
                    if isinstance(result, PreExecutionError):
                        await self._finish(list(result.errors or []))
                        return
                    if isinstance(result, ExecutionResult):
                        self._publish(result)
            await self._finish(None)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("A cohort's execution failed")
            await self._finish([GraphQLError("Unexpected error.")])
        finally:
            if cohorts.get(self.key) is self:
                del cohorts[self.key]

    def _publish(self, result: ExecutionResult) -> None:
        encoded = encode(result_payload(result))
        if self.first is None:
            self.first = encoded
        for member in list(self.members.values()):
            member.push(encoded)

    async def _finish(self, errors: list[GraphQLError] | None) -> None:
        # Later subscribers start a new cohort: this one is done.
        if cohorts.get(self.key) is self:
            del cohorts[self.key]
        members = list(self.members.values())
        await asyncio.gather(*(m.finish(errors) for m in members), return_exceptions=True)


#: The live cohorts of this process, by key.
cohorts: dict[Hashable, Cohort] = {}


def join(key: Hashable, socket: Socket, operation: Any) -> Member:
    """Join the cohort of ``key``, starting it with this operation if there is none."""
    cohort = cohorts.get(key)
    if cohort is None or cohort.task.done() or cohort.loop is not asyncio.get_running_loop():
        cohort = cohorts[key] = Cohort(key, socket, operation)
    return cohort.join(socket, operation)
