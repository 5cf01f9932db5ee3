"""graphql-transport-ws on a bare ASGI websocket: the lean connection.

One connection is one coroutine (the ASGI server's own task, reading frames)
and one small object; an observed subscription is a watch member, with no
task and no queue of its own. Queries, mutations and subscriptions of fields
that are not observed run in a task each, as any GraphQL server runs them.

Authentication happens once, at the handshake (the session cookie) and at
``connection_init`` (a token in its payload); nothing wraps ``send`` or
``receive``. Everything the protocol says is here: ``connection_init`` within
``CONNECTION_INIT_TIMEOUT`` (4408; legacy graphql-ws too), one only (4429),
nothing before the ack (4401), unique operation ids (4409), invalid messages
(4400), ``ping``/``pong`` both ways; plus our limits: frame size (1009),
operations per connection, a subscribe rate, and a send timeout (1013). Every
document is parsed once, within the token limit, a long one off the event loop
(:mod:`gql_observer.documents`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Final, TypeGuard

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.db import InterfaceError, OperationalError
from django.http.cookie import parse_cookie
from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.aio import aclosing

from gql_observer.core.auth import AuthenticationFailed, authenticate, credential_from_params
from gql_observer.core.conf import get_settings
from gql_observer.core.db import unit_of_work
from gql_observer.graphql import analysis, documents, watch
from gql_observer.graphql.frames import encode, result_payload
from gql_observer.graphql.visibility import set_credential, viewer_from_scope

if TYPE_CHECKING:
    from strawberry.schema import BaseSchema

__all__ = [
    "ADMIT_TASK",
    "LEGACY_SUBPROTOCOL",
    "NOT_ACCEPTABLE",
    "SUBPROTOCOL",
    "Connection",
    "Operation",
    "TransportWSApp",
    "choose_subprotocol",
    "open_connection",
]

logger = logging.getLogger(__name__)

SUBPROTOCOL: Final = "graphql-transport-ws"
LEGACY_SUBPROTOCOL: Final = "graphql-ws"

#: The name of the task that starts an observed subscription (it ends with its 201).
ADMIT_TASK: Final = "gql_observer.admit"
#: The close reason of a handshake offering neither subprotocol (code 4406).
NOT_ACCEPTABLE: Final = "Subprotocol not acceptable"
#: "Try Again Later": a credential or session could not be checked because the
#: database could not be reached. graphql-ws (and Apollo and urql on it) reconnects.
TRY_AGAIN_LATER: Final = 1013


class _TryLater(Exception):
    """The connection cannot be served now; the client may retry."""


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _reason(text: str) -> str:
    # A close reason is at most 123 bytes of UTF-8.
    data = text.encode()
    if len(data) <= 123:
        return text
    return data[:120].decode(errors="ignore") + "..."


class Operation:
    """One operation of a connection: a task (queries, mutations, subscriptions
    that are not observed) or a watch member (observed subscriptions; a task only
    while it starts)."""

    __slots__ = ("completed", "id", "member", "operation_name", "query", "task", "variables")

    def __init__(
        self, id: str, query: str, variables: dict[str, Any] | None, operation_name: str | None
    ) -> None:
        self.id = id
        self.query = query
        self.variables = variables
        self.operation_name = operation_name
        self.completed = False
        self.task: asyncio.Task[None] | None = None
        self.member: watch.Member | None = None


class Connection:
    """One graphql-transport-ws connection (what watches call a socket).

    ``context`` is what resolvers get as ``info.context``: a dict with
    ``request`` and ``ws`` (this connection: ``.scope``, ``.user``), ``user``
    and ``connection_params``, like strawberry's websocket context.
    """

    __slots__ = (
        "_burst",
        "_closed",
        "_context",
        "_gave_up",
        "_init_timer",
        "_ping_timer",
        "_rate",
        "_refilled",
        "_send",
        "_tasks",
        "_tokens",
        "acknowledged",
        "connection_params",
        "init_received",
        "legacy",
        "next_type",
        "operations",
        "root_value",
        "schema",
        "scope",
        "send_timeout",
    )

    def __init__(
        self, schema: BaseSchema, scope: Scope, send: Send, *, legacy: bool = False
    ) -> None:
        options = get_settings()
        #: Legacy graphql-ws (subscriptions-transport-ws) instead of graphql-transport-ws.
        self.legacy = legacy
        #: The type of a result message: ``next``, or ``data`` in legacy graphql-ws.
        self.next_type = "data" if legacy else "next"
        self.schema = schema
        self.scope = scope
        self._send = send
        self.root_value: Any = None
        self._context: dict[str, Any] | None = None
        self.connection_params: dict[str, Any] | None = None
        self.operations: dict[str, Operation] = {}
        self._tasks: set[asyncio.Future[Any]] | None = None
        self.init_received = False
        self.acknowledged = False
        self.send_timeout: float = options["SEND_TIMEOUT"]
        self._closed = False
        self._gave_up = False
        self._init_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._rate = options["SUBSCRIBE_RATE"]
        self._tokens = self._burst = 2 * self._rate
        self._refilled = time.monotonic()

    @property
    def context(self) -> dict[str, Any]:
        """``info.context`` of this connection's operations (made when the first
        one needs it: observed subscriptions whose fields are all read off the
        instance never do)."""
        if self._context is None:
            self._context = {
                "request": self,
                "ws": self,
                "response": None,
                "user": self.scope.get("user"),
                "connection_params": self.connection_params,
            }
        return self._context

    @property
    def user(self) -> Any:
        """The connection's user (strawberry-django's ``get_current_user`` reads it)."""
        return self.scope.get("user")

    # ---- the connection's life ------------------------------------------------------
    async def serve(self, receive: Receive) -> None:
        """Accept, then read frames until the client goes."""
        subprotocol = LEGACY_SUBPROTOCOL if self.legacy else SUBPROTOCOL
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
        # Legacy graphql-ws has no such deadline of its own: it gets the same one.
        self._init_timer = asyncio.get_running_loop().call_later(
            get_settings()["CONNECTION_INIT_TIMEOUT"], self._init_late
        )
        try:
            # Nothing of a frame stays referenced between frames: an idle
            # connection holds no message.
            while await self._on_event(await receive()):
                pass
        finally:
            await self.shutdown()

    async def _on_event(self, event: dict[str, Any]) -> bool:
        """Handle one ASGI event; False once the client has gone."""
        kind = event["type"]
        if kind == "websocket.disconnect":
            return False
        if kind != "websocket.receive" or self._closed:
            return True
        max_size = get_settings()["MAX_MESSAGE_SIZE"]
        text = event.get("text")
        if text is None:
            if len(event.get("bytes") or b"") > max_size:
                await self.close(1009, "Message too big")
            else:
                await self.close(
                    1002 if self.legacy else 4400, "WebSocket message type must be text"
                )
            return True
        if len(text) * 4 > max_size and len(text.encode()) > max_size:
            await self.close(1009, "Message too big")
            return True
        try:
            message = json.loads(text)
        except ValueError:
            if not self.legacy:  # legacy graphql-ws ignores what it cannot parse
                await self.close(4400, "WebSocket message must be valid JSON")
            return True
        if self.legacy:
            await self.handle_legacy_message(message)
        else:
            await self.handle_message(message)
        return True

    async def shutdown(self) -> None:
        """The client went (or the server gave up on it): end every operation."""
        self._closed = True
        for timer in (self._init_timer, self._ping_timer):
            if timer is not None:
                timer.cancel()
        self._end_all()
        tasks = [t for t in self._tasks or () if not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task

    def _end_all(self) -> None:
        operations = list(self.operations.values())
        self.operations.clear()
        for operation in operations:
            self._end(operation)

    def _end(self, operation: Operation) -> None:
        operation.completed = True
        if operation.member is not None:
            operation.member.leave()
        if operation.task is not None and not operation.task.done():
            operation.task.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
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

    def _init_late(self) -> None:
        self._init_timer = None
        if not self.init_received and not self._closed:
            self._spawn(self.close(4408, "Connection initialisation timeout"))

    # ---- writing ----------------------------------------------------------------------
    async def close(self, code: int, reason: str) -> None:
        """Close the socket with ``code``; later frames from the client are ignored."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": code, "reason": _reason(reason)})

    async def write_frame(self, frame: str) -> None:
        """Write one ready-encoded frame (no timeout: callers keep their own)."""
        if self._gave_up or self._closed:
            return
        await self._send({"type": "websocket.send", "text": frame})

    async def send_message(self, message: Mapping[str, Any]) -> None:
        """Write one protocol message; one the client does not take within
        ``SEND_TIMEOUT`` gives the connection up (1013)."""
        frame = encode(message)
        if not self.send_timeout:
            await self.write_frame(frame)
            return
        try:
            async with asyncio.timeout(self.send_timeout):  # a timer, not a task
                await self.write_frame(frame)
        except TimeoutError:
            self.give_up()

    def give_up(self) -> None:
        """Close a connection whose client takes nothing: its operations end
        at once (subscriptions leave their watches), then it closes 1013."""
        if self._gave_up or self._closed:
            return
        self._gave_up = True
        logger.warning(
            "A websocket client took more than %.1fs to take a message; closing it",
            self.send_timeout,
        )
        self._end_all()
        # The close frame waits behind what the client did not read (ASGI
        # servers wait for a writable socket): it gets a task of its own.
        self._spawn(self.close(1013, "Client too slow"))

    def _schedule_ping(self) -> None:
        interval = get_settings()["KEEP_ALIVE_INTERVAL"]
        if interval:
            self._ping_timer = asyncio.get_running_loop().call_later(interval, self._ping)

    def _ping(self) -> None:
        # A timer, not a task, between pings: an idle connection costs no task.
        self._ping_timer = None
        if not self._closed and not self._gave_up:
            self._spawn(self._send_ping())

    async def _send_ping(self) -> None:
        with contextlib.suppress(Exception):
            await self.send_message({"type": "ping"})
        if not self._closed:
            self._schedule_ping()

    # ---- reading ----------------------------------------------------------------------
    async def handle_message(self, message: Any) -> None:
        """One client message, validated at the boundary (an invalid one closes 4400)."""
        if not isinstance(message, dict) or "type" not in message:
            await self.close(4400, "Failed to parse message")
            return
        kind = message["type"]
        if kind == "connection_init":
            await self.handle_connection_init(message)
        elif kind == "ping":
            await self.send_message({"type": "pong"})
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            await self.handle_subscribe(message)
        elif kind == "complete":
            if not isinstance(message.get("id"), str):
                await self.close(4400, "Failed to parse message")
                return
            operation = self.operations.pop(message["id"], None)
            if operation is not None:
                self._end(operation)
        else:
            await self.close(4400, f"Unknown message type: {kind}")

    async def handle_connection_init(self, message: dict[str, Any]) -> None:
        """``connection_init``: a token in its payload authenticates the
        connection (otherwise the session's user stays); a bad one closes 4403.
        Once acknowledged, the server pings every ``KEEP_ALIVE_INTERVAL``."""
        if self._init_timer is not None:
            self._init_timer.cancel()
            self._init_timer = None
        payload = message.get("payload")
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            await self.close(4400, "Invalid connection init payload")
            return
        if self.init_received:
            await self.close(4429, "Too many initialisation requests")
            return
        self.init_received = True
        self.connection_params = payload
        try:
            authenticated = await self._authenticate(payload)
        except _TryLater:
            await self.close(TRY_AGAIN_LATER, "Try again later")
            return
        if not authenticated:
            await self.close(4403, "Forbidden")
            return
        if self._closed:
            return
        await self.send_message({"type": "connection_ack"})
        self.acknowledged = True
        self._schedule_ping()

    async def _authenticate(self, payload: dict[str, Any] | None) -> bool:
        """A token in the ``connection_init`` payload authenticates the
        connection (otherwise the session's user stays); False if it is bad."""
        credential = credential_from_params(payload)
        if credential is None:
            return True
        try:
            result = await authenticate(credential, self.scope)
        except AuthenticationFailed as error:
            logger.info("Refused a connection_init credential: %s", error)
            return False
        except (OperationalError, InterfaceError) as error:
            # Not the client's fault: it may retry (graphql-ws does, after 1013).
            logger.warning("Could not check a connection_init credential: %s", error)
            raise _TryLater from error
        set_credential(self.scope, result)
        return True

    def _take_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def handle_subscribe(self, message: dict[str, Any]) -> None:
        operation_id = message.get("id")
        payload = message.get("payload")
        if not isinstance(operation_id, str) or not _valid_payload(payload):
            await self.close(4400, "Failed to parse message")
            return
        if not self.acknowledged:
            await self.close(4401, "Unauthorized")
            return
        if operation_id in self.operations:
            await self.close(4409, f"Subscriber for {operation_id} already exists")
            return
        await self._start(operation_id, payload)

    async def _start(self, operation_id: str, payload: dict[str, Any]) -> None:
        if not self._take_token():
            await self._refuse(operation_id, "Too many subscribe messages; slow down.")
            return
        if len(self.operations) >= get_settings()["MAX_OPERATIONS_PER_CONNECTION"]:
            await self._refuse(operation_id, "Subscription limit reached")
            return
        # Parsed once, within the token limit; a long document in the worker
        # thread, while this connection reads nothing more (one at a time).
        # (No document at all is strawberry's to answer.)
        if payload["query"]:
            prepared = await documents.prepare(self.schema, payload["query"])
            if self._closed:
                return
            if prepared.error is not None:
                await self._syntax_error(operation_id, prepared.error)
                return
        operation = Operation(
            operation_id,
            payload["query"],
            payload.get("variables"),
            payload.get("operationName"),
        )
        self.operations[operation_id] = operation
        if not self._join_watch(operation):
            operation.task = self._spawn(self._run(operation))

    async def _syntax_error(self, operation_id: str, error: GraphQLError) -> None:
        # As strawberry answers a document that does not parse: a protocol fault
        # (4400) in graphql-transport-ws, the operation's error in legacy graphql-ws.
        self.schema.process_errors([error])
        if self.legacy:
            await self.send_message(self._error_message(operation_id, [error]))
        else:
            await self.close(4400, error.message)

    async def _refuse(self, operation_id: str, why: str) -> None:
        await self.send_message(self._error_message(operation_id, [GraphQLError(why)]))

    def _error_message(self, operation_id: str, errors: list[GraphQLError]) -> dict[str, Any]:
        # graphql-transport-ws sends a list of errors; legacy graphql-ws one.
        payload: Any = errors[0].formatted if self.legacy else [e.formatted for e in errors]
        return {"id": operation_id, "type": "error", "payload": payload}

    # ---- legacy graphql-ws ----------------------------------------------------------------
    async def handle_legacy_message(self, message: Any) -> None:
        """One legacy graphql-ws (subscriptions-transport-ws) message. As that
        protocol has it, what is not a known message is ignored."""
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        operation_id = message.get("id")
        if kind == "connection_init":
            await self._legacy_init(message.get("payload"))
        elif kind == "connection_terminate":
            await self.close(1000, "")
        elif kind == "start" and isinstance(operation_id, str):
            if not self.acknowledged:
                await self.close(4401, "Unauthorized")
                return
            payload = message.get("payload")
            if not _valid_payload(payload):
                await self._refuse(operation_id, "Invalid start message.")
                return
            previous = self.operations.get(operation_id)
            if previous is not None:  # a start with a live id replaces it
                await self._legacy_stop(previous)
            await self._start(operation_id, payload)
        elif kind == "stop" and isinstance(operation_id, str):
            operation = self.operations.get(operation_id)
            if operation is not None:
                await self._legacy_stop(operation)

    async def _legacy_stop(self, operation: Operation) -> None:
        # The client stopped it: legacy graphql-ws still answers ``complete``.
        del self.operations[operation.id]
        self._end(operation)
        await self.send_message({"id": operation.id, "type": "complete"})

    async def _legacy_init(self, payload: Any) -> None:
        if self._init_timer is not None:
            self._init_timer.cancel()
            self._init_timer = None
        if payload is not None and not isinstance(payload, dict):
            await self.send_message({"type": "connection_error"})
            await self.close(1000, "")
            return
        if self.init_received:  # again: acknowledged as before, nothing else changes
            await self.send_message({"type": "connection_ack"})
            return
        self.init_received = True
        self.connection_params = payload or {}
        try:
            authenticated = await self._authenticate(payload)
        except _TryLater:
            await self.send_message(
                {"type": "connection_error", "payload": {"message": "Try again later"}}
            )
            await self.close(TRY_AGAIN_LATER, "Try again later")
            return
        if not authenticated:
            await self.send_message(
                {"type": "connection_error", "payload": {"message": "Forbidden"}}
            )
            await self.close(1011, "")
            return
        await self.send_message({"type": "connection_ack"})
        self.acknowledged = True

    def _join_watch(self, operation: Operation) -> bool:
        """A subscription of one observed field that the library can serve with the
        others of its instance (:mod:`gql_observer.watch`) joins their watch: no
        task of its own once it has started. Anything else runs on its own."""
        if not get_settings()["COHORTS"]:
            return False
        found = analysis.analyze(self.schema, operation.query, operation.operation_name)
        if found is None:
            return False
        binding = found.bind(operation.variables)
        if binding is None:
            return False
        member = watch.Member(self, operation, found, binding, viewer_from_scope(self.scope))
        operation.member = member
        operation.query = ""  # the analysis holds the document
        operation.task = task = self._spawn(watch.admit(member, binding))
        task.set_name(ADMIT_TASK)
        # Once started, the subscription holds no task (nor a finished one).
        task.add_done_callback(lambda _: setattr(operation, "task", None))
        return True

    # ---- operations that run on their own -----------------------------------------------
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
            message = self._error_message(operation.id, errors)
        else:
            message = {"id": operation.id, "type": "complete"}
        await self.send_message(message)

    async def stream(self, operation: Operation) -> Any:
        """Start executing ``operation`` in this connection's context: its
        results, as strawberry's ``Schema.stream`` gives them."""
        return await self.schema.stream(
            operation.query,
            variable_values=operation.variables,
            context_value=self.context,
            root_value=self.root_value,
            operation_name=operation.operation_name,
        )

    async def _run(self, operation: Operation) -> None:
        try:
            stream = await self.stream(operation)
            first = True
            async with aclosing(stream):
                async for result in stream:
                    if first and isinstance(result, PreExecutionError):
                        assert result.errors
                        reason = None if self.legacy else _close_reason(result.errors[0])
                        if reason is not None:
                            self.operations.pop(operation.id, None)
                            await self.close(4400, reason)
                            return
                        await self.finish(operation, list(result.errors))
                        return
                    if not isinstance(result, ExecutionResult):
                        await self.finish(
                            operation,
                            [
                                GraphQLError(
                                    "Incremental delivery is not supported over this protocol"
                                )
                            ],
                        )
                        return
                    first = False
                    if not self.is_open(operation):
                        return
                    await self.send_message(
                        {
                            "id": operation.id,
                            "type": self.next_type,
                            "payload": result_payload(result),
                        }
                    )
            await self.finish(operation, None)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("An operation failed")
            with contextlib.suppress(Exception):
                await self.finish(operation, None)


def _valid_payload(payload: Any) -> TypeGuard[dict[str, Any]]:
    """Whether a subscribe/start payload has a query (and well-typed options)."""
    return (
        isinstance(payload, dict)
        and isinstance(payload.get("query"), str)
        and isinstance(payload.get("variables") or {}, dict)
        and isinstance(payload.get("operationName") or "", str)
    )


def _close_reason(error: GraphQLError) -> str | None:
    # A document that does not parse, or names no operation to run, is a
    # protocol fault (4400), as in strawberry's handler; other errors are the
    # operation's own.
    if isinstance(error, GraphQLSyntaxError):
        return error.message
    if isinstance(error.original_error, CannotGetOperationTypeError):
        return error.original_error.as_http_error_reason()
    return None


def choose_subprotocol(offered: Iterable[str]) -> str | None:
    """The client's first choice among graphql-transport-ws and legacy graphql-ws."""
    return next((p for p in offered if p in (SUBPROTOCOL, LEGACY_SUBPROTOCOL)), None)


async def open_connection(
    schema: BaseSchema, scope: Scope, send: Send, subprotocol: str
) -> Connection | None:
    """The :class:`Connection` of one websocket (``subprotocol`` chosen by
    :func:`choose_subprotocol`), its user read from the session; the caller then
    awaits its :meth:`~Connection.serve`. None if the session could not be read:
    the websocket is then accepted and closed with 1013 (Try Again Later)."""
    try:
        await _session_user(scope)
    except (OperationalError, InterfaceError) as error:
        # The session could not be read: not the client's fault, it may retry.
        logger.warning("Could not read the session of a websocket: %s", error)
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        await send(
            {"type": "websocket.close", "code": TRY_AGAIN_LATER, "reason": "Try again later"}
        )
        return None
    return Connection(schema, scope, send, legacy=subprotocol == LEGACY_SUBPROTOCOL)


async def _session_user(scope: Scope) -> None:
    """Set ``scope["user"]`` (and ``scope["session"]``) from the session cookie,
    as Channels' ``AuthMiddlewareStack`` does, once, at the handshake."""
    from django.contrib.auth.models import AnonymousUser

    cookie = b""
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            cookie = value
            break
    cookies = parse_cookie(cookie.decode("latin1")) if cookie else {}
    key = cookies.get(settings.SESSION_COOKIE_NAME)
    if not key:
        scope.setdefault("user", AnonymousUser())
        return
    from importlib import import_module

    scope["session"] = session = import_module(settings.SESSION_ENGINE).SessionStore(
        session_key=key
    )
    scope["user"] = await _user_of_session(session)


def _user_of_session_sync(session: Any) -> Any:
    # Django's own lookup (backend, session hash; a stale session is flushed), as
    # Channels' get_user does, but as a unit of work: a dead connection is replaced.
    return get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]


_user_of_session = sync_to_async(unit_of_work(_user_of_session_sync), thread_sensitive=True)


class TransportWSApp:
    """The ASGI application of the GraphQL websocket at ``path`` (a regular
    expression matched against the path without its leading ``/``): the
    client's first choice of graphql-transport-ws and legacy graphql-ws is
    served; a handshake offering neither is accepted and closed with 4406,
    one for another path refused (403).

    A browser's handshake must come from an Origin that ``origin_allowed``
    accepts for it (see :func:`gql_observer.guard.origin_allowed`: the server's
    own origin or one of ``CSRF_TRUSTED_ORIGINS``); clients that send no Origin
    (not browsers, which no other site can drive) are let through.
    """

    def __init__(
        self,
        schema: BaseSchema,
        *,
        path: str,
        origin_allowed: Callable[[str, Scope], bool],
    ) -> None:
        self.schema = schema
        self.path = re.compile(path)
        self.origin_allowed = origin_allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        if not self.path.match(scope.get("path", "").lstrip("/")):
            await send({"type": "websocket.close"})  # refused handshake: 403
            return
        origin = next((v for k, v in scope.get("headers", ()) if k == b"origin"), None)
        if origin is not None and not self.origin_allowed(origin.decode("latin1"), scope):
            await send({"type": "websocket.close"})
            return
        chosen = choose_subprotocol(scope.get("subprotocols", ()))
        if chosen is None:
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 4406, "reason": NOT_ACCEPTABLE})
            return
        # Served from this frame, not from one more: an idle connection's coroutine
        # frames are what it holds besides its objects.
        connection = await open_connection(self.schema, scope, send, chosen)
        if connection is not None:
            await connection.serve(receive)
