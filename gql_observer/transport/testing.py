"""A graphql-transport-ws client on Channels' ``WebsocketCommunicator``, for
testing your own application without a server::

    async with GraphQLTransportWSCommunicator(application) as client:
        op = await client.subscribe("subscription { user(pk: 1) { action } }")
        assert (await client.next(op))["user"]["action"] == "subscribe_instance"
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from channels.testing import WebsocketCommunicator

from gql_observer.graphql.runtime import close_running, running

__all__ = ["GraphQLTransportWSCommunicator", "ProtocolError", "close_runtime", "settle"]

SUBPROTOCOL = "graphql-transport-ws"
#: The host the communicator names unless told otherwise (as Django's test client).
TEST_HOST = b"testserver"


class ProtocolError(AssertionError):
    """The server sent something else than the test expected (``code`` and
    ``reason`` are set when it closed the socket)."""

    def __init__(self, message: str, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class GraphQLTransportWSCommunicator:
    """Speaks graphql-transport-ws to an ASGI application, in-process.

    Like Django's test client, it names the host ``testserver`` unless
    ``headers`` give a ``Host`` (Django's test runner and pytest-django add
    ``testserver`` to ``ALLOWED_HOSTS``).
    """

    def __init__(
        self,
        application: Any,
        path: str = "/graphql/",
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
        subprotocols: list[str] | None = None,
        timeout: float = 5.0,
    ) -> None:
        headers = list(headers or ())
        if not any(name.lower() == b"host" for name, _ in headers):
            headers.insert(0, (b"host", TEST_HOST))
        self.communicator = WebsocketCommunicator(
            application,
            path,
            headers=headers,
            subprotocols=[SUBPROTOCOL] if subprotocols is None else subprotocols,
        )
        self.timeout = timeout
        self._ids = itertools.count(1)
        self.subprotocol: str | None = None

    async def __aenter__(self) -> GraphQLTransportWSCommunicator:
        await self.connect()
        await self.init()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    async def connect(self) -> None:
        connected, subprotocol = await self.communicator.connect(timeout=self.timeout)
        if not connected:
            raise ProtocolError(f"The handshake was refused ({subprotocol}).")
        self.subprotocol = subprotocol

    async def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send ``connection_init`` and return the ``connection_ack``."""
        message: dict[str, Any] = {"type": "connection_init"}
        if payload is not None:
            message["payload"] = payload
        await self.send(message)
        ack = await self.receive()
        if ack.get("type") != "connection_ack":
            raise ProtocolError(f"Expected connection_ack, got {ack!r}")
        return ack

    async def send(self, message: Any) -> None:
        await self.communicator.send_to(text_data=json.dumps(message))

    async def send_raw(self, frame: str | bytes) -> None:
        """Send one frame as it is: any text (empty too) or bytes."""
        key = "text" if isinstance(frame, str) else "bytes"
        await self.communicator.send_input({"type": "websocket.receive", key: frame})

    async def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message (raises if the socket closes or nothing comes in time)."""
        output = await self.communicator.receive_output(timeout or self.timeout)
        if output["type"] == "websocket.close":
            code, reason = output.get("code", 1000), output.get("reason", "")
            raise ProtocolError(f"Closed {code}: {reason}", code, reason)
        message: dict[str, Any] = json.loads(output["text"])
        return message

    async def receive_close(self, timeout: float | None = None) -> tuple[int, str]:
        """Wait for the server to close; return (code, reason)."""
        output = await self.communicator.receive_output(timeout or self.timeout)
        if output["type"] != "websocket.close":
            raise ProtocolError(f"Expected a close, got {output!r}")
        return output.get("code", 1000), output.get("reason", "")

    async def subscribe(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        operation_name: str | None = None,
    ) -> str:
        """Start an operation; returns its id."""
        op = id or str(next(self._ids))
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        if operation_name is not None:
            payload["operationName"] = operation_name
        await self.send({"type": "subscribe", "id": op, "payload": payload})
        return op

    async def next(self, op: str, timeout: float | None = None) -> dict[str, Any]:
        """The ``data`` of the next ``next`` message, which must belong to ``op``."""
        message = await self.receive(timeout)
        if message.get("type") != "next" or message.get("id") != op:
            raise ProtocolError(f"Expected next for {op}, got {message!r}")
        payload: dict[str, Any] = message["payload"]
        if payload.get("errors"):
            raise ProtocolError(f"Operation {op} failed: {payload['errors']!r}")
        data: dict[str, Any] = payload["data"]
        return data

    async def expect_complete(self, op: str, timeout: float | None = None) -> None:
        message = await self.receive(timeout)
        if message != {"type": "complete", "id": op}:
            raise ProtocolError(f"Expected complete for {op}, got {message!r}")

    async def complete(self, op: str) -> None:
        """Tell the server the client is done with ``op``."""
        await self.send({"type": "complete", "id": op})

    async def nothing(self, timeout: float = 0.1) -> bool:
        """Whether nothing arrives within ``timeout``."""
        quiet: bool = await self.communicator.receive_nothing(timeout)
        return quiet

    async def disconnect(self) -> None:
        """Close from the client side (a no-op once the application has ended)."""
        if self.communicator.future.done():
            return
        await self.communicator.disconnect()


async def close_runtime() -> None:
    """Close this event loop's gql_observer runtime (its hub, subscriptions and
    group memberships). Each test has its own event loop, and so its own
    runtime: call it at the end of each test (an autouse fixture)."""
    await close_running()


async def settle(timeout: float = 5.0) -> None:
    """Wait until this event loop's gql_observer runtime has handled every change
    it was handed and written every frame of them (``Runtime.settled``); raise
    ``TimeoutError`` after ``timeout`` seconds.

    With it, a test proves that an action sent nothing: after the action,
    ``settle()``, then save a later change that must arrive and assert that it
    is the next frame. A frame the action caused would have been written first.
    (Changes from the test's own process reach the runtime before the save that
    caused them returns, with the in-memory channel layer or ``DELIVER_IN_PROCESS``.)
    """
    current = running()
    if current is None:
        return
    async with asyncio.timeout(timeout):
        # Polled: the state spans the hub, watches and members, with no event to wait on.
        while not current.settled:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
