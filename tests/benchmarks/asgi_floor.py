"""U, the ASGI floor: F's fan-out as a bare ASGI application, served by uvicorn like P0.

What F is to a websocket server, U is to an ASGI one: the same uvicorn, flags and websocket
implementation as P0, and nothing else (no Django, no Channels, no GraphQL, no channel layer).
Clients speak just enough graphql-transport-ws: ``connection_init`` gets ``connection_ack``
(its payload, a token or not, is ignored: U is a floor), a ``subscribe`` whose variables (or
else query) name the pk (``{"pk": "P"}`` or ``user(pk: "P" ...)``) gets one ``next`` and joins
P's clients. ``GET /bench/save/?pk=P,Q&marker=M`` encodes, for each pk, one envelope carrying
username ``M-<pk>`` once, then writes it to every client of that pk with the client's own
operation id and ``requestId`` (from its variables, else 1) spliced in front, and answers
``{"t_call", "t_return"}``. It ignores the selection and the field's name.

Its memory per idle subscription is what an ASGI server costs before any application code;
the gap between U and F is the server's, the gap between P0 and U is gql_observer's.

    uvicorn tests.benchmarks.asgi_floor:application
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

#: pk -> {send: the frame prefix of that client's operation, up to its requestId}
CLIENTS: defaultdict[str, dict[Send, str]] = defaultdict(dict)
PK = re.compile(r'user\w*\(pk:\s*"([^"]+)"')


def envelope(pk: str, username: str | None, action: str, status: int) -> str:
    """The envelope after its ``requestId``, closing the ``next`` frame: a client's frame is
    its prefix (``{"id":..,"type":"next","payload":{"data":{"user":{"requestId":<rid>,``)
    followed by this."""
    data = None if username is None else {"id": pk, "username": username, "email": ""}
    user = {"action": action, "responseStatus": status, "data": data}
    return json.dumps(user, separators=(",", ":"))[1:] + "}}}"


def prefix(op_id: Any, field: str, rid: Any) -> str:
    """A client's ``next`` frame of ``field`` up to and including its ``requestId``."""
    return (
        f'{{"id":{json.dumps(op_id)},"type":"next","payload":'
        f'{{"data":{{"{field}":{{"requestId":{json.dumps(rid)},'
    )


async def messages(receive: Receive, send: Send) -> AsyncIterator[dict[str, Any]]:
    """Accept a graphql-transport-ws connection and yield its client's messages,
    answering ``connection_init`` (``connection_ack``) and ``ping`` (``pong``)
    itself, until the client goes."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept", "subprotocol": "graphql-transport-ws"})
    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            return
        message = json.loads(event.get("text") or "{}")
        kind = message.get("type")
        if kind == "connection_init":
            await send({"type": "websocket.send", "text": '{"type":"connection_ack"}'})
        elif kind == "ping":
            await send({"type": "websocket.send", "text": '{"type":"pong"}'})
        else:
            yield message


async def _respond(send: Send, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def http(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    path = scope["path"]
    if path == "/bench/ping/":
        await _respond(send, {"ok": True, "clients": sum(map(len, CLIENTS.values()))})
        return
    if path != "/bench/save/":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    query = parse_qs(scope["query_string"].decode())
    marker = query["marker"][0]
    t_call = time.monotonic()
    for pk in query.get("pk", ["1"])[0].split(","):
        payload = envelope(pk, f"{marker}-{pk}", "update", 200)
        for client_send, prefix in list(CLIENTS.get(pk, {}).items()):
            await client_send({"type": "websocket.send", "text": f"{prefix}{payload}"})
    await _respond(send, {"t_call": t_call, "t_return": time.monotonic()})


async def websocket(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    pk: str | None = None
    try:
        async for message in messages(receive, send):
            if message.get("type") == "subscribe":
                variables = message["payload"].get("variables") or {}
                found = PK.search(message["payload"]["query"])
                pk = str(variables.get("pk") or (found.group(1) if found else "1"))
                head = prefix(message["id"], "user", variables.get("requestId", 1))
                first = envelope(pk, None, "subscribe_instance", 201)
                await send({"type": "websocket.send", "text": f"{head}{first}"})
                CLIENTS[pk][send] = head
    finally:
        if pk is not None:
            CLIENTS[pk].pop(send, None)


async def application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)
