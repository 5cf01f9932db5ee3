"""Raw graphql-transport-ws clients for real servers: one on the ``websockets``
library, and one on a plain socket that reads only when told to (a stalled client)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from typing import Any

import websockets

__all__ = [
    "SHORT_SUBSCRIPTION",
    "STALLED_OPERATIONS",
    "RawClient",
    "open_subscription",
    "read_to_final",
]

#: A subscription to a user's username and email, short (the stalled client's).
SHORT_SUBSCRIPTION = "subscription($pk:ID!){user(pk:$pk){action data{username email}}}"
#: Operations of a stalled connection (each save sends it one message per operation).
STALLED_OPERATIONS = 16


async def open_subscription(
    url: str, query: str, variables: dict[str, Any], op_id: str = "s"
) -> Any:
    """Connect, init, subscribe; check the ``subscribe_instance`` answer; the socket."""
    ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"])
    await ws.send(json.dumps({"type": "connection_init"}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "connection_ack"}
    await ws.send(
        json.dumps(
            {"type": "subscribe", "id": op_id, "payload": {"query": query, "variables": variables}}
        )
    )
    first = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert first["payload"]["data"]["user"]["action"] == "subscribe_instance", first
    return ws


class RawClient:
    """A graphql-transport-ws client on a plain socket with a small receive
    buffer: between calls to :meth:`recv` it reads nothing, so the server's
    writes pile up against it exactly as against a stalled browser tab."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /graphql/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode()
        mask = os.urandom(4)
        assert len(data) < 65536
        if len(data) < 126:
            frame = bytes([0x81, 0x80 | len(data)]) + mask
        else:
            frame = bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(data)) + mask
        self.sock.sendall(frame + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed by the server")
            data += chunk
        return data

    def recv(self) -> tuple[int, bytes]:
        """The next frame: (opcode, payload)."""
        first, second = self._exactly(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._exactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._exactly(8))[0]
        return first & 0x0F, self._exactly(size)

    def recv_json(self) -> dict[str, Any]:
        opcode, payload = self.recv()
        assert opcode == 1, (opcode, payload)
        message: dict[str, Any] = json.loads(payload)
        return message

    def subscribe(self, ids: list[str], pk: int) -> None:
        """Init, then subscribe to user ``pk`` once per id; check every 201."""
        self.send({"type": "connection_init"})
        assert self.recv_json() == {"type": "connection_ack"}
        for operation in ids:
            self.send(
                {
                    "type": "subscribe",
                    "id": operation,
                    "payload": {"query": SHORT_SUBSCRIPTION, "variables": {"pk": pk}},
                }
            )
        for _ in ids:
            first = self.recv_json()
            assert first["payload"]["data"]["user"]["action"] == "subscribe_instance", first

    def close(self) -> None:
        self.sock.close()


async def read_to_final(client: RawClient, ids: list[str], final: str) -> int:
    """Read ``client``'s messages until each of ``ids`` holds ``final`` (20 s at
    most); how many messages that took."""
    latest: dict[str, str] = {}
    received = 0
    deadline = time.monotonic() + 20
    while any(latest.get(i) != final for i in ids):
        assert time.monotonic() < deadline, latest
        message = await asyncio.to_thread(client.recv_json)
        received += 1
        if message["type"] == "next":
            latest[message["id"]] = message["payload"]["data"]["user"]["data"]["username"]
    return received
