"""graphql-transport-ws (graphql-ws's protocol, PROTOCOL.md): ``connection_init``
within ``CONNECTION_INIT_TIMEOUT`` (4408), one only (4429), nothing before the
ack (4401), unique operation ids (4409), invalid messages (4400),
``ping``/``pong`` both ways; plus our limits: frame size (1009), operations per
connection, a subscribe rate, and a send timeout (1013). The messages are
strawberry's TypedDicts."""

from __future__ import annotations

from typing import Any, ClassVar, Final

from graphql import GraphQLError
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionAckMessage,
    ErrorMessage,
    PongMessage,
)

from gql_observer.transport.codes import CloseCode
from gql_observer.transport.connection import Connection
from gql_observer.transport.operation import protocol_fault, start, valid_payload
from gql_observer.transport.session import TryLater, authenticate_init

__all__ = ["SUBPROTOCOL", "TransportWSConnection"]

SUBPROTOCOL: Final = "graphql-transport-ws"


class TransportWSConnection(Connection):
    """A graphql-transport-ws connection."""

    subprotocol: ClassVar[str] = SUBPROTOCOL
    next_type: ClassVar[str] = "next"
    __slots__ = ()

    async def handle(self, message: Any) -> None:
        """One client message, validated at the boundary (an invalid one closes 4400)."""
        if not isinstance(message, dict) or "type" not in message:
            await self.close(CloseCode.BAD_REQUEST, "Failed to parse message")
            return
        kind = message["type"]
        if kind == "connection_init":
            await self._connection_init(message)
        elif kind == "ping":
            pong: PongMessage = {"type": "pong"}
            await self.send_message(pong)
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            await self._subscribe(message)
        elif kind == "complete":
            await self._complete(message)
        else:
            await self.close(CloseCode.BAD_REQUEST, f"Unknown message type: {kind}")

    async def _connection_init(self, message: dict[str, Any]) -> None:
        """A token in its payload authenticates the connection (otherwise the
        session's user stays); a bad one closes 4403. Once acknowledged, the
        server pings every ``KEEP_ALIVE_INTERVAL``."""
        self.init_received_now()
        payload = message.get("payload")
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            await self.close(CloseCode.BAD_REQUEST, "Invalid connection init payload")
            return
        if self.init_received:
            await self.close(
                CloseCode.TOO_MANY_INITIALISATION_REQUESTS, "Too many initialisation requests"
            )
            return
        self.init_received = True
        self.connection_params = payload
        try:
            authenticated = await authenticate_init(self.scope, payload)
        except TryLater:
            await self.close(CloseCode.TRY_AGAIN_LATER, "Try again later")
            return
        if not authenticated:
            await self.close(CloseCode.FORBIDDEN, "Forbidden")
            return
        if self.closed:
            return
        ack: ConnectionAckMessage = {"type": "connection_ack"}
        await self.send_message(ack)
        self.acknowledged = True
        self.schedule_ping()

    async def _subscribe(self, message: dict[str, Any]) -> None:
        operation_id = message.get("id")
        payload = message.get("payload")
        if not isinstance(operation_id, str) or not valid_payload(payload):
            await self.close(CloseCode.BAD_REQUEST, "Failed to parse message")
            return
        if not self.acknowledged:
            await self.close(CloseCode.UNAUTHORIZED, "Unauthorized")
            return
        if operation_id in self.operations:
            await self.close(
                CloseCode.SUBSCRIBER_ALREADY_EXISTS, f"Subscriber for {operation_id} already exists"
            )
            return
        await start(self, operation_id, payload)

    async def _complete(self, message: dict[str, Any]) -> None:
        if not isinstance(message.get("id"), str):
            await self.close(CloseCode.BAD_REQUEST, "Failed to parse message")
            return
        operation = self.operations.pop(message["id"], None)
        if operation is not None:
            operation.end()

    def error_message(self, operation_id: str, errors: list[GraphQLError]) -> dict[str, Any]:
        message: ErrorMessage = {
            "id": operation_id,
            "type": "error",
            "payload": [error.formatted for error in errors],
        }
        return dict(message)

    def close_reason(self, error: GraphQLError) -> str | None:
        return protocol_fault(error)

    async def syntax_error(self, operation_id: str, error: GraphQLError) -> None:
        # As strawberry answers a document that does not parse: a protocol fault.
        self.schema.process_errors([error])
        await self.close(CloseCode.BAD_REQUEST, error.message)
