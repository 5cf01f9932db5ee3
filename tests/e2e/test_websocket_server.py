"""End to end: the websocket endpoint on its own server (``manage.py gql_observer_serve``,
``gql_observer.server``) beside the ASGI application for HTTP, with real clients and a real
Redis between the processes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
import redis
import websockets
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport

from .conftest import REDIS_URL, DemoServer, run_shell, start
from .test_server import RENAME_IN_SHELL, SUBSCRIPTION, next_result, raw_next, raw_subscribe

pytestmark = [pytest.mark.timeout(120), pytest.mark.redis]

NOTE = "subscription ($pk: ID!) { note(pk: $pk) { action responseStatus data { title } } }"


def pair(
    servers: list[DemoServer], env: dict[str, str], tmp_path: Path
) -> tuple[DemoServer, DemoServer]:
    """The ASGI application (HTTP; it migrates and seeds the database) and the websocket
    server, behind one Redis."""
    http = start(servers, env, tmp_path)
    return http, start(servers, env, tmp_path, websockets=True)


async def test_subscriptions_on_the_websocket_server_see_http_mutations_and_shell_saves(
    redis_env: dict[str, str], servers: list[DemoServer], tmp_path: Path
) -> None:
    http, ws_server = pair(servers, redis_env, tmp_path)
    transport = WebsocketsTransport(
        url=ws_server.ws, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL]
    )
    async with Client(transport=transport) as session:
        request = GraphQLRequest(SUBSCRIPTION, variable_values={"pk": "1", "rid": "ws"})
        stream = session.subscribe(request).__aiter__()
        first = await next_result(stream)
        assert (first["action"], first["responseStatus"], first["data"]) == (
            "subscribe_instance",
            201,
            None,
        )
        await asyncio.to_thread(
            http.post, 'mutation { updateUser(pk: 1, username: "over http") { id } }'
        )
        assert await next_result(stream) == {
            "action": "update",
            "errors": [],
            "responseStatus": 200,
            "requestId": "ws",
            "data": {"id": "1", "username": "over http", "email": "1@example.com"},
        }
        await asyncio.to_thread(run_shell, redis_env, RENAME_IN_SHELL.format(pk=1, name="shell"))
        assert (await next_result(stream))["data"]["username"] == "shell"
        # A mutation over the websocket server's own socket reaches the same subscriber.
        result = await session.execute(
            GraphQLRequest('mutation { updateUser(pk: 1, username: "over ws") { username } }')
        )
        assert result == {"updateUser": {"username": "over ws"}}
        assert (await next_result(stream))["data"]["username"] == "over ws"

    # Legacy graphql-ws clients are served too.
    legacy = await websockets.connect(ws_server.ws, subprotocols=["graphql-ws"])
    await legacy.send(json.dumps({"type": "connection_init"}))
    assert json.loads(await legacy.recv())["type"] == "connection_ack"
    await legacy.send(
        json.dumps(
            {"type": "start", "id": "L", "payload": {"query": SUBSCRIPTION, "variables": {"pk": 2}}}
        )
    )
    assert json.loads(await legacy.recv())["payload"]["data"]["user"]["responseStatus"] == 201
    await asyncio.to_thread(run_shell, redis_env, RENAME_IN_SHELL.format(pk=2, name="legacy"))
    message = json.loads(await asyncio.wait_for(legacy.recv(), 10))
    assert (message["type"], message["payload"]["data"]["user"]["data"]["username"]) == (
        "data",
        "legacy",
    )
    await legacy.close()
    assert ws_server.stop() == 0 and http.stop() == 0
    log = (tmp_path / "server-1.log").read_text()
    assert "Traceback" not in log, log


async def test_the_websocket_server_refuses_what_the_asgi_application_refuses(
    redis_env: dict[str, str], servers: list[DemoServer], tmp_path: Path
) -> None:
    env = {**redis_env, "CSRF_TRUSTED_ORIGINS": "http://localhost:3000"}
    http, ws_server = pair(servers, env, tmp_path)
    base = f"ws://127.0.0.1:{ws_server.port}"
    with pytest.raises(websockets.InvalidStatus) as other_path:
        await websockets.connect(f"{base}/elsewhere/", subprotocols=["graphql-transport-ws"])
    assert other_path.value.response.status_code == 404
    # A Host that ALLOWED_HOSTS does not list (a DNS-rebinding page's own name).
    with pytest.raises(websockets.InvalidStatus) as rebound:
        await websockets.connect(
            f"ws://rebound.example:{ws_server.port}/graphql/",
            subprotocols=["graphql-transport-ws"],
            host="127.0.0.1",
        )
    assert rebound.value.response.status_code == 400
    for origin in (
        "https://evil.example",
        "http://localhost:3001",
        f"https://127.0.0.1:{ws_server.port}",
    ):
        with pytest.raises(websockets.InvalidStatus) as foreign:
            await websockets.connect(
                ws_server.ws, subprotocols=["graphql-transport-ws"], origin=origin
            )
        assert foreign.value.response.status_code == 403, origin
    # A browser on the server's own origin, or on a trusted one, is let in.
    for origin in (f"http://127.0.0.1:{ws_server.port}", "http://localhost:3000"):
        allowed = await websockets.connect(
            ws_server.ws, subprotocols=["graphql-transport-ws"], origin=origin
        )
        await allowed.close()

    async def closed_with(ws: Any) -> tuple[int, str]:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None
        return closed.value.rcvd.code, closed.value.rcvd.reason

    no_subprotocol = await websockets.connect(ws_server.ws)
    assert await closed_with(no_subprotocol) == (4406, "Subprotocol not acceptable")
    bad_token = await websockets.connect(ws_server.ws, subprotocols=["graphql-transport-ws"])
    await bad_token.send(json.dumps({"type": "connection_init", "payload": {"token": "forged"}}))
    assert (await closed_with(bad_token))[0] == 4403
    too_big = await websockets.connect(ws_server.ws, subprotocols=["graphql-transport-ws"])
    await too_big.send("x" * (65 * 1024))
    assert (await closed_with(too_big))[0] == 1009
    not_json = await websockets.connect(ws_server.ws, subprotocols=["graphql-transport-ws"])
    await not_json.send("{")
    assert (await closed_with(not_json))[0] == 4400

    # A note is its owner's only: anonymous gets a 401 envelope, a token of the owner gets it.
    token = (
        await asyncio.to_thread(
            http.post, 'mutation { login(username: "test 1", password: "demo") }'
        )
    )["data"]["login"]
    created = await asyncio.to_thread(
        _post_as, http, token, 'mutation { createNote(title: "mine", body: "") { id } }'
    )
    note = created["data"]["createNote"]["id"]
    anonymous = await websockets.connect(ws_server.ws, subprotocols=["graphql-transport-ws"])
    await anonymous.send(json.dumps({"type": "connection_init"}))
    await anonymous.recv()
    await anonymous.send(_subscribe_note(note))
    refused = json.loads(await asyncio.wait_for(anonymous.recv(), 10))
    assert refused["payload"]["data"]["note"] == {
        "action": "subscribe_instance",
        "responseStatus": 401,
        "data": None,
    }
    owner = await websockets.connect(ws_server.ws, subprotocols=["graphql-transport-ws"])
    await owner.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
    assert json.loads(await owner.recv())["type"] == "connection_ack"
    await owner.send(_subscribe_note(note))
    assert (
        json.loads(await asyncio.wait_for(owner.recv(), 10))["payload"]["data"]["note"][
            "responseStatus"
        ]
        == 201
    )
    await asyncio.to_thread(
        _post_as, http, token, f'mutation {{ updateNote(pk: {note}, title: "renamed") {{ id }} }}'
    )
    update = json.loads(await asyncio.wait_for(owner.recv(), 10))
    assert update["payload"]["data"]["note"]["data"] == {"title": "renamed"}
    assert await _quiet(anonymous)  # the refused subscription ended; nothing leaks to it
    await owner.close()
    await anonymous.close()
    # After all of that the server still serves everyone else.
    ws = await raw_subscribe(ws_server.ws, 3, "still")
    await asyncio.to_thread(run_shell, redis_env, RENAME_IN_SHELL.format(pk=3, name="still"))
    assert (await raw_next(ws))["data"]["username"] == "still"
    await ws.close()


async def test_sigterm_on_the_websocket_server_closes_clients_and_leaves_its_groups(
    redis_env: dict[str, str], servers: list[DemoServer], tmp_path: Path
) -> None:
    _, ws_server = pair(servers, redis_env, tmp_path)
    ws = await raw_subscribe(ws_server.ws, 1, "bye")
    connection = redis.Redis.from_url(REDIS_URL)
    group_key = f"{redis_env['CHANNELS_PREFIX']}:group:gqlobs.auth.user.1"
    assert connection.zcard(group_key) == 1
    assert await asyncio.to_thread(ws_server.stop) == 0
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012  # as uvicorn
    assert connection.zcard(group_key) == 0
    log = (tmp_path / "server-1.log").read_text()
    assert "Task was destroyed" not in log and "Traceback" not in log, log
    connection.close()


async def test_peers_that_stop_answering_pings_are_closed_and_live_ones_are_not(
    demo_env: dict[str, str], servers: list[DemoServer], tmp_path: Path
) -> None:
    start(servers, demo_env, tmp_path)  # migrates the database
    ws_server = start(servers, demo_env, tmp_path, websockets=True, args=("--ping-interval", "0.5"))
    # A client whose library answers pings, subscribed and otherwise idle.
    live = await raw_subscribe(ws_server.ws, 1, "live")
    # A peer that completes the handshake, then never answers anything.
    reader, writer = await asyncio.open_connection("127.0.0.1", ws_server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /graphql/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        ).encode()
    )
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).startswith(b"HTTP/1.1 101")
    # Reading bytes is not answering: the pings pile up unanswered until the server closes
    # the connection with 1011 (a close frame: 0x88, length, code 1011 = 0x03F3).
    received = b""
    async with asyncio.timeout(15):
        while b"\x03\xf3keepalive ping timeout" not in received:
            chunk = await reader.read(4096)
            assert chunk, f"closed without a 1011 close frame: {received!r}"
            received += chunk
    writer.close()
    # The live client was pinged as often and is still served: a mutation over its own
    # socket (this server's in-memory layer) reaches its subscription.
    assert live.close_code is None
    rename = 'mutation { updateUser(pk: 1, username: "still live") { id } }'
    await live.send(json.dumps({"type": "subscribe", "id": "m", "payload": {"query": rename}}))
    seen = set()
    while seen != {"m", "s"}:
        message = json.loads(await asyncio.wait_for(live.recv(), 10))
        if message["type"] == "next":
            seen.add(message["id"])
            if message["id"] == "s":
                assert message["payload"]["data"]["user"]["data"]["username"] == "still live"
    await live.close()
    log = (tmp_path / "server-1.log").read_text()
    assert "Traceback" not in log, log


def _subscribe_note(pk: Any) -> str:
    return json.dumps(
        {"type": "subscribe", "id": "n", "payload": {"query": NOTE, "variables": {"pk": pk}}}
    )


def _post_as(server: DemoServer, token: str, query: str) -> Any:
    import urllib.request

    request = urllib.request.Request(
        server.http,
        data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def _quiet(ws: Any, seconds: float = 0.5) -> bool:
    """Nothing but a completion of the refused operation arrives within ``seconds``."""
    try:
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), seconds))
            if message.get("type") != "complete":
                return False
    except TimeoutError:
        return True
