"""End to end, on a real server with Redis between processes: the demo's own
chat consumer (at ws/chat/<room>/, mounted with the one-call helper or in the
project's own URLRouters) gets its
room's messages from its own process, from the test's and from a shell's, while
a GraphQL socket beside it holds an observed subscription and a subscription
written for strawberry's Channels integration (``joinChatRooms``) on the same
rooms."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from channels_redis.core import RedisChannelLayer

from tests.support.environment import E2E_REDIS_URL
from tests.support.servers import Servers, run_shell
from tests.support.ws_clients import SHORT_SUBSCRIPTION, open_subscription

pytestmark = pytest.mark.timeout(120)

JOIN = (
    'subscription { joinChatRooms(rooms: [{roomName: "lobby"}], user: "gql") '
    "{ roomName currentUser message } }"
)
SEND_FROM_SHELL = (
    "from asgiref.sync import async_to_sync; from channels.layers import get_channel_layer; "
    "async_to_sync(get_channel_layer().group_send)('chat_lobby', "
    "{'type': 'chat.message', 'room_id': 'chat_lobby', 'message': 'from a shell'})"
)
RENAME_IN_SHELL = (
    "from django.contrib.auth.models import User; u = User.objects.get(pk=1); "
    "u.username = 'renamed in a shell'; u.save()"
)


async def _frame(ws: Any) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return message


async def _chat_line(gql: Any) -> str:
    """The next frame of the GraphQL socket: a message of ``joinChatRooms``."""
    frame = await _frame(gql)
    assert frame["type"] == "next" and frame["id"] == "c", frame
    rooms = frame["payload"]["data"]["joinChatRooms"]
    assert (rooms["roomName"], rooms["currentUser"]) == ("chat_lobby", "gql")
    return str(rooms["message"])


async def _chat_heard(chat: Any) -> str:
    message = await _frame(chat)
    assert message["room"] == "chat_lobby", message
    return str(message["message"])


@pytest.mark.parametrize("routing", ["helper", "router"])
async def test_a_chat_consumer_and_graphql_share_the_server_and_redis(
    routing: str, redis_env: dict[str, str], servers: Servers
) -> None:
    server = servers.demo({**redis_env, "DEMO_ROUTING": routing})
    origin = f"http://127.0.0.1:{server.port}"
    chat_url = f"ws://127.0.0.1:{server.port}/ws/chat/lobby/"
    # The project's consumer is behind AllowedHostsOriginValidator: no Origin, no chat.
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(chat_url)
    chat = await websockets.connect(chat_url, origin=origin)  # type: ignore[arg-type]
    gql = await open_subscription(server.ws, SHORT_SUBSCRIPTION, {"pk": 1}, op_id="s")
    await gql.send(json.dumps({"type": "subscribe", "id": "c", "payload": {"query": JOIN}}))
    first = await _frame(gql)
    assert first == {"id": "c", "type": "next", "payload": {"data": {"joinChatRooms": None}}}

    # 1. The consumer's own process: the chat client speaks, its consumer sends.
    await chat.send(json.dumps({"message": "from the chat"}))
    assert await _chat_heard(chat) == "from the chat"
    assert await _chat_line(gql) == "from the chat"

    # 2. The test's process, through Redis.
    layer = RedisChannelLayer(hosts=[E2E_REDIS_URL], prefix=redis_env["CHANNELS_PREFIX"])
    await layer.group_send(
        "chat_lobby", {"type": "chat.message", "room_id": "chat_lobby", "message": "from a test"}
    )
    await layer.close_pools()
    assert await _chat_heard(chat) == "from a test"
    assert await _chat_line(gql) == "from a test"

    # 3. Another process: a shell.
    await asyncio.to_thread(run_shell, redis_env, SEND_FROM_SHELL)
    assert await _chat_heard(chat) == "from a shell"
    assert await _chat_line(gql) == "from a shell"

    # The observed subscription on the same socket is live all along.
    await asyncio.to_thread(run_shell, redis_env, RENAME_IN_SHELL)
    update = await _frame(gql)
    assert update["id"] == "s", update
    assert update["payload"]["data"]["user"]["data"]["username"] == "renamed in a shell"

    # The GraphQL mutation reaches the chat too (strawberry's tutorial's sendChatMessage).
    answer = await asyncio.to_thread(
        server.post,
        'mutation { sendChatMessage(room: {roomName: "lobby"}, message: "by mutation") }',
    )
    assert answer == {"data": {"sendChatMessage": True}}
    assert await _chat_heard(chat) == "by mutation"
    assert await _chat_line(gql) == "by mutation"
    await chat.close()
    await gql.close()
