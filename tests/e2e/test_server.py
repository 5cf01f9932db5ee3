"""End to end: real servers on loopback ports, real clients (Python gql, websockets),
real Redis between processes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis
import websockets
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport

from tests.support.environment import E2E_REDIS_URL
from tests.support.servers import DemoServer, Servers, run_shell
from tests.support.ws_clients import open_subscription

pytestmark = pytest.mark.timeout(120)

SUBSCRIPTION = """subscription ($pk: ID!, $rid: JSON) {
  user(pk: $pk, requestId: $rid) {
    action errors responseStatus requestId data { id username email }
  }
}"""
RENAME_IN_SHELL = (
    "from django.contrib.auth.models import User; u = User.objects.get(pk={pk}); "
    "u.username = {name!r}; u.save()"
)


async def next_result(stream: Any, timeout: float = 10) -> dict[str, Any]:
    result: dict[str, Any] = await asyncio.wait_for(stream.__anext__(), timeout)
    return result["user"]


async def raw_subscribe(url: str, pk: int, rid: Any) -> Any:
    """A websockets connection with one subscription; its first envelope checked."""
    return await open_subscription(url, SUBSCRIPTION, {"pk": pk, "rid": rid})


async def raw_next(ws: Any, timeout: float = 10) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert message["type"] == "next", message
    return dict(message["payload"]["data"]["user"])


async def test_the_seed_walk_through_with_python_gql(
    demo_env: dict[str, str], servers: Servers
) -> None:
    server = servers.demo(demo_env)
    query = await asyncio.to_thread(
        server.post,
        "{ user(pk: 1, requestId: 1550050) { action errors responseStatus "
        "requestId data { id username email } } }",
    )
    assert query == {
        "data": {
            "user": {
                "action": "retrieve",
                "errors": [],
                "responseStatus": 200,
                "requestId": 1550050,
                "data": {"id": "1", "username": "test 1", "email": "1@example.com"},
            }
        }
    }
    transport = WebsocketsTransport(
        url=server.ws, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL]
    )
    async with Client(transport=transport) as session:
        request = GraphQLRequest(SUBSCRIPTION, variable_values={"pk": "1", "rid": 1550050})
        stream = session.subscribe(request).__aiter__()
        assert await next_result(stream) == {
            "action": "subscribe_instance",
            "errors": [],
            "responseStatus": 201,
            "requestId": 1550050,
            "data": None,
        }
        updated = await asyncio.to_thread(
            server.post, 'mutation { updateUser(pk: 1, username: "edited user name") { id } }'
        )
        assert updated == {"data": {"updateUser": {"id": "1"}}}
        assert await next_result(stream) == {
            "action": "update",
            "errors": [],
            "responseStatus": 200,
            "requestId": 1550050,
            "data": {"id": "1", "username": "edited user name", "email": "1@example.com"},
        }
        await asyncio.to_thread(server.post, "mutation { deleteUser(pk: 1) { id } }")
        deleted = await next_result(stream)
        assert (deleted["action"], deleted["responseStatus"]) == ("delete", 204)
        assert deleted["data"]["id"] == "1"
        with pytest.raises(StopAsyncIteration):
            await next_result(stream)  # the server completed the operation
    assert server.stop() == 0


@pytest.mark.redis
@pytest.mark.parametrize("layer", ["core", "pubsub"])
async def test_a_shell_save_reaches_subscribers_of_two_servers_through_redis(
    redis_env: dict[str, str], servers: Servers, layer: str
) -> None:
    # Both channels_redis layers: RedisChannelLayer and RedisPubSubChannelLayer.
    redis_env = {**redis_env, "REDIS_LAYER": layer}
    first = servers.demo(redis_env)
    second = servers.demo(redis_env)  # the database is already migrated
    on_first = await raw_subscribe(first.ws, 1, 1)
    on_second = await raw_subscribe(second.ws, 1, 2)
    # The shell exits right after save(): publishing finished before it returned.
    await asyncio.to_thread(run_shell, redis_env, RENAME_IN_SHELL.format(pk=1, name="from shell"))
    for ws, rid in ((on_first, 1), (on_second, 2)):
        update = await raw_next(ws)
        assert update == {
            "action": "update",
            "errors": [],
            "responseStatus": 200,
            "requestId": rid,
            "data": {"id": "1", "username": "from shell", "email": "1@example.com"},
        }
        await ws.close()
    # A mutation on one server reaches its own subscriber directly and the other's
    # through Redis, each once.
    on_first = await raw_subscribe(first.ws, 2, "a")
    on_second = await raw_subscribe(second.ws, 2, "m")
    for name in ("via A", "via A again"):
        mutation = f'mutation {{ updateUser(pk: 2, username: "{name}") {{ id }} }}'
        await asyncio.to_thread(first.post, mutation)
        for ws in (on_first, on_second):
            assert (await raw_next(ws))["data"]["username"] == name
    # The second server had both through Redis, so the copies Redis brings back to
    # the first are queued there already; a save from another process comes behind
    # them. The first's next frame is that save's: the copies were skipped.
    await asyncio.to_thread(run_shell, redis_env, RENAME_IN_SHELL.format(pk=2, name="after"))
    for ws in (on_first, on_second):
        assert (await raw_next(ws))["data"]["username"] == "after"
        await ws.close()


@pytest.mark.redis
async def test_an_idle_subscription_keeps_working_with_redis(
    redis_env: dict[str, str], servers: Servers
) -> None:
    server = servers.demo(redis_env)
    ws = await raw_subscribe(server.ws, 1, "idle")
    # Longer than redis-py's 5 s read timeout and channels_redis's 5 s BZPOPMIN,
    # twice: an idle receive must survive (channels_redis #422).
    await asyncio.sleep(12)
    await asyncio.to_thread(run_shell, redis_env, RENAME_IN_SHELL.format(pk=1, name="after idle"))
    assert (await raw_next(ws))["data"]["username"] == "after idle"
    await ws.close()
    log = server.log.read_text()
    assert "Traceback" not in log, log


@pytest.mark.redis
async def test_sigterm_closes_clients_and_leaves_no_group_membership(
    redis_env: dict[str, str], servers: Servers
) -> None:
    server = servers.demo(redis_env)
    ws = await raw_subscribe(server.ws, 1, "bye")
    connection = redis.Redis.from_url(E2E_REDIS_URL)
    group_key = f"{redis_env['CHANNELS_PREFIX']}:group:gqlobs.auth.user.1"
    assert connection.zcard(group_key) == 1
    assert await asyncio.to_thread(server.stop) == 0
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    assert connection.zcard(group_key) == 0
    log = server.log.read_text()
    assert "Task was destroyed" not in log and "Traceback" not in log, log
    connection.close()


def _post_as(server: DemoServer, token: str, query: str) -> Any:
    import urllib.request

    request = urllib.request.Request(
        server.http,
        data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _subscribe_note(pk: Any) -> str:
    return json.dumps(
        {"type": "subscribe", "id": "n", "payload": {"query": NOTE, "variables": {"pk": pk}}}
    )


async def _quiet(ws: Any, seconds: float = 0.5) -> bool:
    """Nothing but a completion of the refused operation arrives within ``seconds``."""
    try:
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), seconds))
            if message.get("type") != "complete":
                return False
    except TimeoutError:
        return True


NOTE = "subscription ($pk: ID!) { note(pk: $pk) { action responseStatus data { title } } }"


@pytest.mark.redis
async def test_the_server_refuses_bad_handshakes_and_frames_and_keeps_serving(
    redis_env: dict[str, str], servers: Servers
) -> None:
    env = {**redis_env, "CSRF_TRUSTED_ORIGINS": "http://localhost:3000"}
    http = ws_server = servers.demo(env)
    base = f"ws://127.0.0.1:{ws_server.port}"
    with pytest.raises(websockets.InvalidStatus) as other_path:
        await websockets.connect(f"{base}/elsewhere/", subprotocols=["graphql-transport-ws"])
    # An ASGI application refuses a handshake by closing before accepting: 403.
    assert other_path.value.response.status_code == 403
    # A Host that ALLOWED_HOSTS does not list (a DNS-rebinding page's own name).
    with pytest.raises(websockets.InvalidStatus) as rebound:
        await websockets.connect(
            f"ws://rebound.example:{ws_server.port}/graphql/",
            subprotocols=["graphql-transport-ws"],
            host="127.0.0.1",
        )
    assert rebound.value.response.status_code == 403
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
