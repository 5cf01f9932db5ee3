"""One operation of a connection, from its ``subscribe`` (or legacy ``start``) to
its end: an observed subscription the library can serve with the others of its
instance joins their watch (no task of its own once it has started); anything
else runs in a task, through strawberry's ``Schema.stream``, as strawberry's
own handler runs it. Every document is parsed once, within the token limit, a
long one off the event loop (:mod:`gql_observer.graphql.documents`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final, TypeGuard, cast

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.aio import aclosing

from gql_observer.graphql import analysis, documents, list_member, runtime, watch
from gql_observer.graphql.context import Context, make_context
from gql_observer.graphql.frames import result_payload
from gql_observer.graphql.member import Member
from gql_observer.graphql.rows import has_get_queryset
from gql_observer.graphql.viewers import viewer_from_scope
from gql_observer.transport.codes import CloseCode

if TYPE_CHECKING:
    from gql_observer.transport.connection import Connection

__all__ = [
    "ADMIT_TASK",
    "Operation",
    "SubscribeRate",
    "protocol_fault",
    "refuse",
    "start",
    "valid_payload",
]

logger = logging.getLogger(__name__)

#: The name of the task that starts an observed subscription (it ends with its 201).
ADMIT_TASK: Final = "gql_observer.admit"


class Operation:
    """One operation of a connection: a task (queries, mutations, subscriptions
    that are not observed) or a watch member (observed subscriptions; a task only
    while it starts)."""

    __slots__ = (
        "completed",
        "context",
        "id",
        "member",
        "operation_name",
        "query",
        "task",
        "variables",
    )

    def __init__(
        self, id: str, query: str, variables: dict[str, Any] | None, operation_name: str | None
    ) -> None:
        self.id = id
        self.query = query
        self.variables = variables
        self.operation_name = operation_name
        self.completed = False
        self.task: asyncio.Task[None] | None = None
        self.member: Member | None = None
        #: Its own ``info.context`` (made by the context hook), else ``None``.
        self.context: Any = None

    def end(self) -> None:
        """The client ended it (or went): nothing more is sent for it."""
        self.completed = True
        if self.member is not None:
            self.member.leave()
        if self.task is not None and not self.task.done():
            self.task.cancel()


class SubscribeRate:
    """A connection's token bucket for ``SUBSCRIBE_RATE``: a burst of twice the rate."""

    __slots__ = ("rate", "refilled", "tokens")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = 2 * rate
        self.refilled = time.monotonic()

    def take(self) -> bool:
        """Whether one more subscribe message fits now."""
        now = time.monotonic()
        self.tokens = min(2 * self.rate, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def protocol_fault(error: GraphQLError) -> str | None:
    """The 4400 reason for a pre-execution error that is a protocol fault (a
    document that does not parse, or names no operation to run, as in
    strawberry's handler); ``None``: the operation's own error."""
    if isinstance(error, GraphQLSyntaxError):
        return error.message
    if isinstance(error.original_error, CannotGetOperationTypeError):
        return error.original_error.as_http_error_reason()
    return None


async def refuse(connection: Connection, operation_id: str, why: str) -> None:
    """Answer an operation that is not started with an ``error``."""
    await connection.send_message(connection.error_message(operation_id, [GraphQLError(why)]))


def valid_payload(payload: Any) -> TypeGuard[dict[str, Any]]:
    """Whether a subscribe/start payload has a query (and well-typed options)."""
    return (
        isinstance(payload, dict)
        and isinstance(payload.get("query"), str)
        and isinstance(payload.get("variables") or {}, dict)
        and isinstance(payload.get("operationName") or "", str)
    )


async def start(connection: Connection, operation_id: str, payload: dict[str, Any]) -> None:
    """Start the operation a client asked for, within the connection's limits."""
    if connection.rate is None:
        connection.rate = SubscribeRate(connection.settings.subscribe_rate)
    if not connection.rate.take():
        await refuse(connection, operation_id, "Too many subscribe messages; slow down.")
        return
    if len(connection.operations) >= connection.settings.max_operations_per_connection:
        await refuse(connection, operation_id, "Subscription limit reached")
        return
    # Parsed once, within the token limit; a long document in the worker thread,
    # while this connection reads nothing more (one at a time). (No document at
    # all is strawberry's to answer.)
    if payload["query"]:
        prepared = await documents.prepare(connection.schema, payload["query"])
        if connection.closed:
            return
        if prepared.error is not None:
            await connection.syntax_error(operation_id, prepared.error)
            return
    operation = Operation(
        operation_id, payload["query"], payload.get("variables"), payload.get("operationName")
    )
    if connection.context_getter is not None:
        try:
            operation.context = await _made(connection)
        except Exception:
            logger.exception("The context getter failed")
            await refuse(connection, operation_id, "Unexpected error.")
            return
        if connection.closed:
            return
    connection.operations[operation_id] = operation
    if not _join_watch(connection, operation):
        operation.task = connection.spawn(_run(connection, operation))


async def _made(connection: Connection) -> Context:
    """The context of one operation, as the context hook makes it."""
    made = make_context(connection.context_defaults(), connection.context_getter)
    return made if isinstance(made, Context) else await cast(Awaitable[Context], made)


def _join_watch(connection: Connection, operation: Operation) -> bool:
    """A subscription of one observed field that the library can serve with the
    others of its instance (or of its live list's set) joins their watch.
    Anything else runs on its own."""
    if not connection.settings.cohorts:
        return False
    found = analysis.analyze(connection.schema, operation.query, operation.operation_name)
    if found is None:
        return False
    binding = found.bind(operation.variables)
    if binding is None:
        return False
    # A get_queryset may read what the context hook put in the context: then
    # this operation's rows are its own, not its viewer's.
    own = (
        operation if operation.context is not None and has_get_queryset(found.definition) else None
    )
    viewer = viewer_from_scope(connection.scope, own)
    if found.listing:
        subscriber = list_member.ListSubscriber(connection, operation, found, binding, viewer)
        operation.member = subscriber
        admitted = list_member.admit(runtime.current(), subscriber)
    else:
        member = Member(connection, operation, found, binding, viewer)
        operation.member = member
        admitted = watch.admit(runtime.current(), member, binding)
    operation.query = ""  # the analysis holds the document
    operation.task = task = connection.spawn(admitted)
    task.set_name(ADMIT_TASK)
    # Once started, the subscription holds no task (nor a finished one).
    task.add_done_callback(lambda _: setattr(operation, "task", None))
    return True


async def _run(connection: Connection, operation: Operation) -> None:
    """Run ``operation`` on its own, in this connection's context, as strawberry's
    handler runs it."""
    try:
        stream = await connection.schema.stream(
            operation.query,
            variable_values=operation.variables,
            context_value=connection.context_of(operation),
            root_value=connection.root_value,
            operation_name=operation.operation_name,
        )
        first = True
        async with aclosing(stream):
            async for result in stream:
                if first and isinstance(result, PreExecutionError):
                    assert result.errors
                    reason = connection.close_reason(result.errors[0])
                    if reason is not None:
                        connection.operations.pop(operation.id, None)
                        await connection.close(CloseCode.BAD_REQUEST, reason)
                        return
                    await connection.finish(operation, list(result.errors))
                    return
                if not isinstance(result, ExecutionResult):
                    error = GraphQLError("Incremental delivery is not supported over this protocol")
                    await connection.finish(operation, [error])
                    return
                first = False
                if not connection.is_open(operation):
                    return
                await connection.send_message(
                    {
                        "id": operation.id,
                        "type": connection.next_type,
                        "payload": result_payload(result),
                    }
                )
        await connection.finish(operation, None)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("An operation failed")
        with contextlib.suppress(Exception):
            await connection.finish(operation, None)
