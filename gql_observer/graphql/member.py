"""A member of a watch: one subscriber's operation, viewer, values and socket, and
how its frames are written (inline; a task only while the socket pushes back,
with at most one newer frame waiting behind it: latest wins, a final frame is
never dropped)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Hashable
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

from graphql import GraphQLError
from graphql.pyutils import Path

from gql_observer.graphql.analysis import Analysis, Binding
from gql_observer.graphql.envelope import (
    CREATED,
    DELETED,
    ERRORS,
    OK,
    Action,
    envelope,
    row_envelope_type,
)
from gql_observer.graphql.frames import encode
from gql_observer.graphql.viewers import Viewer
from gql_observer.graphql.visibility import Verdict

if TYPE_CHECKING:
    from gql_observer.graphql.watch import Watch

__all__ = ["Member", "Socket", "Spec", "envelope_of", "spec"]

logger = logging.getLogger(__name__)

_BACKREF: Final = "strawberry-definition"


class Socket(Protocol):
    """What a member needs of its connection
    (the transport's connection is one)."""

    send_timeout: float
    root_value: Any
    scope: dict[str, Any]

    @property
    def next_type(self) -> str:
        """The type of a result message on this socket's protocol (``next``, ``data``)."""

    def context_of(self, operation: Any) -> Any:
        """``info.context`` of ``operation`` (its own, or the connection's)."""
        ...

    def is_open(self, operation: Any) -> bool: ...

    def write_frame(self, frame: str) -> Coroutine[Any, Any, None]:
        """Write one frame. Its first step runs inline, in the watch's task: up to its
        first suspension it must not use :func:`asyncio.current_task` (no
        :func:`asyncio.timeout`, no ``TaskGroup``), which would act on the watch's task."""
        ...

    def close_slow_client(self) -> None: ...

    async def finish(self, operation: Any, errors: list[GraphQLError] | None) -> None: ...


class Spec(NamedTuple):
    """The envelope one member gets for one event (before its own ``requestId``);
    ``pk``: the row of a live list's envelope."""

    action: Action
    status: int
    instance: Any
    errors: tuple[str, ...]
    resync: bool
    final: bool
    pk: str | None = None

    @property
    def key(self) -> Hashable:
        return (self.action, self.status, id(self.instance), self.resync, self.pk, self.errors)


def envelope_of(analysis: Analysis, item: Spec, request_id: Any) -> Any:
    """The envelope value of ``item`` for a subscriber of ``analysis`` whose
    ``requestId`` is ``request_id``: an instance's, or a live list's row envelope."""
    definition = analysis.definition
    if analysis.listing:
        return row_envelope_type(definition)(
            action=item.action,
            errors=list(item.errors),
            response_status=item.status,
            request_id=request_id,
            pk=item.pk,
            data=item.instance,
        )
    return envelope(
        definition,
        item.action,
        item.status,
        request_id,
        item.instance,
        list(item.errors),
        resync=item.resync,
    )


def spec(action: Action, verdict: Verdict, *, resync: bool = False) -> Spec:
    """The envelope of ``verdict`` for ``action``: the instance (a delete's last
    values, final), or a refusal without any field of it (final)."""
    if verdict.status == OK:
        if action == Action.SUBSCRIBE_INSTANCE:
            return Spec(action, CREATED, None, (), False, False)
        status = DELETED if action == Action.DELETE else OK
        return Spec(action, status, verdict.instance, (), resync, action == Action.DELETE)
    return Spec(action, verdict.status, None, ERRORS.get(verdict.status, ()), False, True)


class Member:
    """One subscriber of a watch: its operation, viewer, values and connection."""

    __slots__ = (
        "_executor",
        "_held",
        "_next",
        "_prefix",
        "_timer",
        "_writer",
        "analysis",
        "closing",
        "dropped",
        "info",
        "operation",
        "pending",
        "request_id",
        "rid",
        "since",
        "socket",
        "viewer",
        "watch",
    )

    def __init__(
        self, socket: Socket, operation: Any, analysis: Analysis, binding: Binding, viewer: Viewer
    ) -> None:
        self.socket = socket
        self.operation = operation
        self.analysis = analysis
        self.viewer = viewer
        self.request_id = binding.request_id
        #: The member's ``requestId`` as it goes on the wire.
        self.rid = encode(binding.request_id)
        self._prefix = f'{{"id":{encode(operation.id)},"type":"{socket.next_type}","payload":'
        self.watch: Watch | None = None
        self.info: Any = None
        self._executor: Any = None
        self.since = 0
        #: Before its 201 is sent: the latest frame (and whether it is final).
        self.pending = True
        self._held: tuple[str, bool] | None = None
        self.closing = False
        self._next: str | None = None
        self._writer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: Frames skipped because a newer one came before the socket took them.
        self.dropped = 0

    # ---- executing its own operation -------------------------------------------------

    def executor(self) -> Any:
        """This member's graphql-core executor (built on first need)."""
        if self._executor is None:
            socket, operation = self.socket, self.operation
            executor = self.analysis.executor(
                socket.context_of(operation), operation.variables, socket.root_value
            )
            assert not isinstance(executor, list), "bind() coerced these variables"
            self._executor = executor
        return self._executor

    def make_info(self) -> Any:
        """The resolve info of the root field, as the subscription resolver gets it
        (``get_queryset`` is called with it)."""
        executor = self.executor()
        analysis = self.analysis
        root_type = executor.schema.subscription_type
        key = analysis.root_node.alias or analysis.root_node.name
        raw = executor.build_resolve_info(
            analysis.field_def,
            [analysis.root_node],
            root_type,
            Path(None, key.value, root_type.name),
        )
        strawberry_field = analysis.field_def.extensions[_BACKREF]
        return analysis.schema.config.info_class(_raw_info=raw, _field=strawberry_field)

    def envelope(self, item: Spec) -> Any:
        return envelope_of(self.analysis, item, self.request_id)

    # ---- writing -----------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """Whether the operation is still open on its connection."""
        return self.socket.is_open(self.operation)

    @property
    def busy(self) -> bool:
        """Whether a write is waiting for the socket."""
        return self._writer is not None

    @property
    def waiting(self) -> int:
        """Frames waiting behind the write in progress: 0 or 1 (a newer frame
        replaces the waiting one, counted in ``dropped``)."""
        return int(self._next is not None)

    def push(self, payload: str, final: bool = False) -> None:
        """Write ``payload`` (an encoded ``next`` payload) now, or after the write in
        progress; latest wins, and nothing replaces a final one."""
        if self.closing:
            return
        frame = f"{self._prefix}{payload}}}"
        if self.pending:
            if self._held is None or not self._held[1]:
                self._held = (frame, final)
            return
        self._push(frame, final)

    def _push(self, frame: str, final: bool) -> None:
        if final:
            self.closing = True
        if self._writer is not None:
            if self._next is not None:
                self.dropped += 1
            self._next = frame
            return
        if self.alive:
            self._write_inline(frame)

    def refused(self) -> None:
        """Its subscribe was refused: nothing it held goes out, the refusal is next."""
        self.pending = False
        self._held = None

    def activate(self, first: str) -> bool:
        """Send the 201 (``first``), then what came meanwhile; whether the member
        goes on (no final frame came)."""
        held, self._held, self.pending = self._held, None, False
        self._push(f"{self._prefix}{first}}}", False)
        if held is not None:
            self._push(*held)
        return not self.closing

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
            await self._drain()
        except asyncio.CancelledError:
            coro.close()  # the connection was given up (send timeout) or is closing
        except Exception:
            logger.debug("Could not write to a member's socket", exc_info=True)
        finally:
            self._writer = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    async def _drain(self) -> None:
        """Write what came while the socket pushed back (in the writer's task)."""
        while self._next is not None and self.alive:
            frame, self._next = self._next, None
            await self.socket.write_frame(frame)

    def _timed_out(self) -> None:
        self._timer = None
        self.socket.close_slow_client()
        if self._writer is not None:
            self._writer.cancel()

    def leave(self) -> None:
        """The client is done with this subscription (or gone)."""
        if self.watch is not None:
            self.watch.detach(self)
        if self._writer is not None:
            self._writer.cancel()

    async def finish(self, errors: list[GraphQLError] | None = None) -> None:
        """Send what is left, then ``complete`` (or ``errors``)."""
        while self._writer is not None:
            await asyncio.wait([self._writer])
        await self.socket.finish(self.operation, errors)
