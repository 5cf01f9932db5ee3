"""Legacy graphql-ws (subscriptions-transport-ws): ``start``/``stop``, ``data``,
one error object per ``error``, ``complete`` after a ``stop``, unknown
messages ignored; the same ``connection_init`` deadline and limits as
graphql-transport-ws. The messages are strawberry's TypedDicts."""

from __future__ import annotations

from typing import Any, ClassVar, Final

from graphql import GraphQLError
from strawberry.subscriptions.protocols.graphql_ws.types import (
    CompleteMessage,
    ConnectionAckMessage,
    ConnectionErrorMessage,
    ErrorMessage,
)

from gql_observer.transport.codes import CloseCode
from gql_observer.transport.connection import Connection
from gql_observer.transport.operation import Operation, refuse, start, valid_payload
from gql_observer.transport.session import TryLater, authenticate_init

__all__ = ["LEGACY_SUBPROTOCOL", "LegacyWSConnection"]

LEGACY_SUBPROTOCOL: Final = "graphql-ws"


class LegacyWSConnection(Connection):
    """A legacy graphql-ws connection."""

    subprotocol: ClassVar[str] = LEGACY_SUBPROTOCOL
    next_type: ClassVar[str] = "data"
    __slots__ = ()

    async def handle(self, message: Any) -> None:
        """One legacy graphql-ws message. As that protocol has it, what is not a
        known message is ignored."""
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        operation_id = message.get("id")
        if kind == "connection_init":
            await self._connection_init(message.get("payload"))
        elif kind == "connection_terminate":
            await self.close(CloseCode.NORMAL, "")
        elif kind == "start" and isinstance(operation_id, str):
            await self._start(operation_id, message.get("payload"))
        elif kind == "stop" and isinstance(operation_id, str):
            operation = self.operations.get(operation_id)
            if operation is not None:
                await self._stop(operation)

    async def not_text(self) -> None:
        await self.close(CloseCode.PROTOCOL_ERROR, "WebSocket message type must be text")

    async def not_json(self) -> None:
        pass  # legacy graphql-ws ignores what it cannot parse

    def close_reason(self, error: GraphQLError) -> str | None:
        return None  # every pre-execution error is the operation's own

    def error_message(self, operation_id: str, errors: list[GraphQLError]) -> dict[str, Any]:
        message: ErrorMessage = {
            "id": operation_id,
            "type": "error",
            "payload": errors[0].formatted,
        }
        return dict(message)

    async def syntax_error(self, operation_id: str, error: GraphQLError) -> None:
        # As strawberry answers a document that does not parse: the operation's error.
        self.schema.process_errors([error])
        await self.send_message(self.error_message(operation_id, [error]))

    async def _start(self, operation_id: str, payload: Any) -> None:
        if not self.acknowledged:
            await self.close(CloseCode.UNAUTHORIZED, "Unauthorized")
            return
        if not valid_payload(payload):
            await refuse(self, operation_id, "Invalid start message.")
            return
        previous = self.operations.get(operation_id)
        if previous is not None:  # a start with a live id replaces it
            await self._stop(previous)
        await start(self, operation_id, payload)

    async def _stop(self, operation: Operation) -> None:
        # The client stopped it: legacy graphql-ws still answers ``complete``.
        del self.operations[operation.id]
        operation.end()
        complete: CompleteMessage = {"id": operation.id, "type": "complete"}
        await self.send_message(complete)

    async def _connection_init(self, payload: Any) -> None:
        self.init_received_now()
        if payload is not None and not isinstance(payload, dict):
            await self.send_message({"type": "connection_error"})
            await self.close(CloseCode.NORMAL, "")
            return
        ack: ConnectionAckMessage = {"type": "connection_ack"}
        if self.init_received:  # again: acknowledged as before, nothing else changes
            await self.send_message(ack)
            return
        self.init_received = True
        self.connection_params = payload or {}
        try:
            authenticated = await authenticate_init(self.scope, payload)
        except TryLater:
            await self._connection_error("Try again later")
            await self.close(CloseCode.TRY_AGAIN_LATER, "Try again later")
            return
        if not authenticated:
            await self._connection_error("Forbidden")
            await self.close(CloseCode.INTERNAL_ERROR, "")
            return
        await self.send_message(ack)
        self.acknowledged = True

    async def _connection_error(self, why: str) -> None:
        error: ConnectionErrorMessage = {"type": "connection_error", "payload": {"message": why}}
        await self.send_message(error)
