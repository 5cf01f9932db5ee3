"""Raw graphql-transport-ws clients (the ``websockets`` library) for real servers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets


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
