"""A GraphQL websocket on a bare ASGI websocket: what both subprotocols share.

One connection is one coroutine (the ASGI server's own task, reading frames)
and one small object; an observed subscription is a watch member, with no task
and no queue of its own (:mod:`gql_observer.transport.operation`). Timers, not
tasks, wait for ``connection_init`` and for the next ping. The subprotocols
are subclasses: :class:`~gql_observer.transport.transport_ws.TransportWSConnection`
(graphql-transport-ws) and :class:`~gql_observer.transport.legacy_ws.LegacyWSConnection`
(legacy graphql-ws). Authentication happens once, at the handshake (the
session cookie) and at ``connection_init`` (a token in its payload); nothing
wraps ``send`` or ``receive``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from graphql import GraphQLError

from gql_observer.core.conf import Settings
from gql_observer.graphql.context import ContextGetter
from gql_observer.graphql.frames import encode
from gql_observer.transport.codes import CloseCode
from gql_observer.transport.listening import Listening

if TYPE_CHECKING:
    from strawberry.schema import BaseSchema

    from gql_observer.transport.operation import Operation, SubscribeRate

__all__ = ["Connection"]

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _reason(text: str) -> str:
    # A close reason is at most 123 bytes of UTF-8.
    data = text.encode()
    if len(data) <= 123:
        return text
    return data[:120].decode(errors="ignore") + "..."


class Connection(Listening):
    """One GraphQL websocket (what watches call a socket).

    Resolvers get a :class:`~gql_observer.graphql.context.Context` as
    ``info.context``: ``request`` and ``ws`` (this connection: ``.scope``,
    ``.user``, and strawberry's ``channel_layer``, ``channel_name``,
    ``listen_to_channel``), ``user`` and ``connection_params``; one per
    connection, or one per operation made by ``context_getter``."""

    #: The subprotocol the class speaks.
    subprotocol: ClassVar[str]
    #: The type of a result message: ``next``, or ``data`` in legacy graphql-ws.
    next_type: ClassVar[str]

    __slots__ = (
        "_closed",
        "_direct",
        "_init_timer",
        "_ping_timer",
        "_send",
        "_slow",
        "_tasks",
        "acknowledged",
        "connection_params",
        "init_received",
        "operations",
        "rate",
        "root_value",
        "schema",
        "scope",
        "send_timeout",
        "settings",
    )

    def __init__(
        self,
        schema: BaseSchema,
        scope: Scope,
        send: Send,
        settings: Settings,
        context_getter: ContextGetter | None = None,
    ) -> None:
        self.schema = schema
        self.context_getter = context_getter
        self._context = None
        self._listening = None
        self.scope = scope
        self.settings = settings
        self._send = send
        # gql_observer.uvicorn's synchronous text write, on its own send alone.
        self._direct = getattr(getattr(send, "__self__", None), "gql_observer_write_text", None)
        self.root_value: Any = None
        self.connection_params: dict[str, Any] | None = None
        self.operations: dict[str, Operation] = {}
        self._tasks: set[asyncio.Future[Any]] | None = None
        self.init_received = False
        self.acknowledged = False
        self.send_timeout: float = settings.send_timeout
        self._closed = False
        self._slow = False
        self._init_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        #: The subscribe rate's token bucket (made at the first subscribe).
        self.rate: SubscribeRate | None = None

    @property
    def user(self) -> Any:
        """The connection's user (strawberry-django's ``get_current_user`` reads it)."""
        return self.scope.get("user")

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def holds_task_set(self) -> bool:
        """Whether it holds a set of tasks (dropped with its last task: idle, it keeps none)."""
        return self._tasks is not None

    # ---- what a subprotocol says --------------------------------------------------------

    async def handle(self, message: Any) -> None:
        """Called with each message the client sent (parsed JSON, not yet checked)."""
        raise NotImplementedError

    async def not_text(self) -> None:
        """Called when the client sent a binary frame."""
        await self.close(CloseCode.BAD_REQUEST, "WebSocket message type must be text")

    async def not_json(self) -> None:
        """Called when the client sent text that is not JSON."""
        await self.close(CloseCode.BAD_REQUEST, "WebSocket message must be valid JSON")

    def error_message(self, operation_id: str, errors: list[GraphQLError]) -> dict[str, Any]:
        """The ``error`` message of an operation that failed before its first result."""
        raise NotImplementedError

    async def syntax_error(self, operation_id: str, error: GraphQLError) -> None:
        """Called when an operation's document does not parse."""
        raise NotImplementedError

    def close_reason(self, error: GraphQLError) -> str | None:
        """The 4400 reason for a pre-execution error that is a protocol fault;
        ``None``: the operation's own error."""
        raise NotImplementedError

    # ---- the connection's life ----------------------------------------------------------

    async def serve(self, receive: Receive) -> None:
        """Accept, then read frames until the client goes."""
        await self._send({"type": "websocket.accept", "subprotocol": self.subprotocol})
        self._init_timer = asyncio.get_running_loop().call_later(
            self.settings.connection_init_timeout, self._init_late
        )
        try:
            # Nothing of a frame stays referenced between frames: an idle
            # connection holds no message.
            while await _on_event(self, await receive()):
                pass
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        """The client went (or the server gave up on it): end every operation."""
        self._closed = True
        for timer in (self._init_timer, self._ping_timer):
            if timer is not None:
                timer.cancel()
        self.end_all()
        await self.close_channel()
        tasks = [t for t in self._tasks or () if not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task

    def end_all(self) -> None:
        """End every operation (their subscriptions leave their watches)."""
        operations = list(self.operations.values())
        self.operations.clear()
        for operation in operations:
            operation.end()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A task of this connection's (cancelled when it goes)."""
        task = asyncio.ensure_future(coro)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        # An idle connection keeps no empty set (every ping runs in a task).
        tasks = self._tasks
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                self._tasks = None

    def init_received_now(self) -> None:
        """``connection_init`` came: no deadline any more."""
        if self._init_timer is not None:
            self._init_timer.cancel()
            self._init_timer = None

    def _init_late(self) -> None:
        self._init_timer = None
        if not self.init_received and not self._closed:
            self.spawn(
                self.close(CloseCode.CONNECTION_INIT_TIMEOUT, "Connection initialisation timeout")
            )

    # ---- writing ------------------------------------------------------------------------

    async def close(self, code: int, reason: str) -> None:
        """Close the socket with ``code``; later frames from the client are ignored."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": code, "reason": _reason(reason)})

    async def write_frame(self, frame: str) -> None:
        """Write one ready-encoded frame (no timeout: callers keep their own)."""
        if self._slow or self._closed:
            return
        if self._direct is not None and self._direct(frame):
            return
        await self._send({"type": "websocket.send", "text": frame})

    async def send_message(self, message: Mapping[str, Any]) -> None:
        """Write one protocol message; one the client does not take within
        ``SEND_TIMEOUT`` closes the connection (1013)."""
        frame = encode(message)
        if not self.send_timeout:
            await self.write_frame(frame)
            return
        try:
            async with asyncio.timeout(self.send_timeout):  # a timer, not a task
                await self.write_frame(frame)
        except TimeoutError:
            self.close_slow_client()

    def close_slow_client(self) -> None:
        """Close a connection whose client takes nothing: its operations end
        at once (subscriptions leave their watches), then it closes 1013."""
        if self._slow or self._closed:
            return
        self._slow = True
        logger.warning(
            "A websocket client took more than %.1fs to take a message; closing it",
            self.send_timeout,
        )
        self.end_all()
        # The close frame waits behind what the client did not read (ASGI
        # servers wait for a writable socket): it gets a task of its own.
        self.spawn(self.close(CloseCode.TRY_AGAIN_LATER, "Client too slow"))

    def schedule_ping(self) -> None:
        """Ping the client every ``KEEP_ALIVE_INTERVAL`` from now on (a timer, not
        a task, between pings: an idle connection costs no task)."""
        interval = self.settings.keep_alive_interval
        if interval:
            self._ping_timer = asyncio.get_running_loop().call_later(interval, self._ping)

    def _ping(self) -> None:
        self._ping_timer = None
        if not self._closed and not self._slow:
            self.spawn(_send_ping(self))

    # ---- operations (the socket of their watch members) ---------------------------------

    def is_open(self, operation: Operation) -> bool:
        """Whether ``operation`` is still open on this connection."""
        return not operation.completed and self.operations.get(operation.id) is operation

    async def finish(self, operation: Operation, errors: list[GraphQLError] | None) -> None:
        """End ``operation`` from the server's side: ``complete``, or ``error``
        with ``errors`` when it failed before its first result."""
        if not self.is_open(operation):
            return
        operation.completed = True
        del self.operations[operation.id]
        if errors:
            message = self.error_message(operation.id, errors)
        else:
            message = {"id": operation.id, "type": "complete"}
        await self.send_message(message)


async def _on_event(connection: Connection, event: dict[str, Any]) -> bool:
    """Handle one ASGI event; False once the client has gone."""
    kind = event["type"]
    if kind == "websocket.disconnect":
        return False
    if kind != "websocket.receive" or connection.closed:
        return True
    max_size = connection.settings.max_message_size
    text = event.get("text")
    if text is None:
        if len(event.get("bytes") or b"") > max_size:
            await connection.close(CloseCode.MESSAGE_TOO_BIG, "Message too big")
        else:
            await connection.not_text()
        return True
    if len(text) * 4 > max_size and len(text.encode()) > max_size:
        await connection.close(CloseCode.MESSAGE_TOO_BIG, "Message too big")
        return True
    try:
        message = json.loads(text)
    except ValueError:
        await connection.not_json()
        return True
    await connection.handle(message)
    return True


async def _send_ping(connection: Connection) -> None:
    with contextlib.suppress(Exception):
        await connection.send_message({"type": "ping"})
    if not connection.closed:
        connection.schedule_ping()
