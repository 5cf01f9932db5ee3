"""F, the floor: a bare ``websockets`` server that fans one pre-encoded frame out to clients.

Clients connect to ws://HOST:PORT/?pk=P and get an ``ack`` frame; ``GET /bench/save/?pk=P,Q&
marker=M`` encodes, for each pk, one DCRF-style envelope carrying username ``M-<pk>`` once and
``broadcast()``s it to that pk's clients, then answers ``{"t_call", "t_return"}``
(``time.monotonic()`` around the loop). No Django, no channel layer, no GraphQL, no
backpressure (``broadcast`` never waits): what is left is the websocket writes themselves.
W4's writer instead sends ``"<pk> <value>"`` messages on ws://HOST:PORT/feed/; each becomes one
such envelope with username ``<value>``, broadcast to that pk's clients (no buffer bound: what a
client does not read piles up in the server).

    python -m tests.benchmarks.floor_server --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import defaultdict
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

CLIENTS: defaultdict[str, set[ServerConnection]] = defaultdict(set)


def _json_response(body: dict[str, object]) -> Response:
    data = json.dumps(body).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return Response(HTTPStatus.OK.value, "OK", headers, data)


def envelope(pk: str, username: str) -> str:
    return json.dumps(
        {
            "errors": [],
            "data": {"id": int(pk), "username": username, "email": f"user{pk}@example.com"},
            "action": "update",
            "response_status": 200,
            "request_id": 1,
        }
    )


def process_request(connection: ServerConnection, request: Request) -> Response | None:
    url = urlsplit(request.path)
    if url.path == "/bench/ping/":
        return _json_response({"ok": True, "clients": sum(map(len, CLIENTS.values()))})
    if url.path == "/bench/save/":
        query = parse_qs(url.query)
        marker = query["marker"][0]
        pks = query.get("pk", ["1"])[0].split(",")
        t_call = time.monotonic()
        for pk in pks:
            broadcast(CLIENTS.get(pk, ()), envelope(pk, f"{marker}-{pk}"))
        t_return = time.monotonic()
        return _json_response({"t_call": t_call, "t_return": t_return})
    return None


async def feed(connection: ServerConnection) -> None:
    """W4: every ``"<pk> <value>"`` message is broadcast to pk's clients as username value."""
    async for message in connection:
        pk, _, value = str(message).partition(" ")
        broadcast(CLIENTS.get(pk, ()), envelope(pk, value))


async def handler(connection: ServerConnection) -> None:
    assert connection.request is not None
    url = urlsplit(connection.request.path)
    if url.path == "/feed/":
        await feed(connection)
        return
    pk = parse_qs(url.query).get("pk", ["1"])[0]
    CLIENTS[pk].add(connection)
    try:
        await connection.send('{"type": "ack"}')
        async for _ in connection:
            pass
    finally:
        CLIENTS[pk].discard(connection)


async def main(host: str, port: int) -> None:
    async with serve(
        handler,
        host,
        port,
        process_request=process_request,
        ping_interval=None,
        compression=None,
        max_queue=None,
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(args.host, args.port))
    except ImportError:
        asyncio.run(main(args.host, args.port))
