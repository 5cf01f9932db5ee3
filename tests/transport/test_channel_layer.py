"""Subscriptions written for strawberry's Channels integration run unchanged on
gql_observer's connection: ``info.context["ws"]`` has ``channel_layer``,
``channel_name``, ``listen_to_channel`` and ``channel_listen``, beside observed
subscriptions on the same socket; the connection's channel is made only when an
operation asks for one."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.contrib.auth.models import User

from tests.support import channels as support
from tests.support.clients import PONG, connect, next_after_ping
from tests.support.servers import run_shell
from tests.support.users import save_user, subscribe_user, username_seen

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

JOIN = (
    'subscription ($user: String!) { joinRooms(rooms: [{roomName: "one"}, {roomName: "two"}], '
    "user: $user) { roomName currentUser message } }"
)


SEND_FROM_SHELL = (
    "from asgiref.sync import async_to_sync; from channels.layers import get_channel_layer; "
    "async_to_sync(get_channel_layer().group_send)('chat_one', "
    "{'type': 'chat.message', 'room_id': 'chat_one', 'message': 'from a shell'})"
)


def _message(room: str, text: str) -> dict[str, Any]:
    return {"type": "chat.message", "room_id": f"chat_{room}", "message": text}


async def _joined(client: Any, group: str) -> None:
    """Wait until the server's connection is in ``group`` (a ping answered
    each time: every step is the server's own)."""
    while group not in get_channel_layer().groups:
        assert await next_after_ping(client) == PONG


def _own_channels() -> set[str]:
    """The in-memory layer's channels of connections (consumers' and ours)."""
    layer = get_channel_layer()
    return {name for name in layer.channels if name.startswith("specific.")}


async def test_strawberrys_tutorial_subscription_runs_beside_an_observed_one(
    users: list[User],
) -> None:
    client = await connect(support.application())
    observed = await subscribe_user(client, 1)
    chat = await client.subscribe(JOIN, {"user": "ann"})
    greetings = {(await client.next(chat))["joinRooms"]["roomName"] for _ in range(2)}
    assert greetings == {"chat_one", "chat_two"}
    layer = get_channel_layer()
    await layer.group_send("chat_elsewhere", _message("elsewhere", "not for ann"))
    await layer.group_send("chat_two", _message("two", "hello room two"))
    assert await client.next(chat) == {
        "joinRooms": {"roomName": "chat_two", "currentUser": "ann", "message": "hello room two"}
    }
    await save_user(1, username="observed too")
    assert await username_seen(client, observed) == "observed too"
    # Leaving the rooms: the groups lose the connection's channel.
    await client.complete(chat)
    assert await next_after_ping(client) == PONG
    assert not any(g in layer.groups for g in ("chat_one", "chat_two"))
    await client.disconnect()


async def test_channel_listen_of_older_code_still_works(users: list[User]) -> None:
    client = await connect(support.application())
    op = await client.subscribe(
        'subscription { oldRooms(rooms: [{roomName: "three"}]) { roomName message } }'
    )
    layer = get_channel_layer()
    with pytest.warns(DeprecationWarning, match="listen_to_channel"):
        await _joined(client, "chat_three")
    await layer.group_send("chat_three", _message("three", "still heard"))
    assert await client.next(op) == {
        "oldRooms": {"roomName": "chat_three", "message": "still heard"}
    }
    await client.disconnect()


async def test_a_listener_with_a_timeout_ends_when_nothing_comes(users: list[User]) -> None:
    client = await connect(support.application())
    op = await client.subscribe('subscription { untilQuiet(room: "four", timeout: 0.05) }')
    assert await client.next(op) == {"untilQuiet": None}
    await client.expect_complete(op, timeout=10)
    assert "chat_four" not in get_channel_layer().groups
    await client.disconnect()


async def test_a_connection_makes_no_channel_until_an_operation_asks_for_one(
    users: list[User],
) -> None:
    clients = [await connect(support.application()) for _ in range(3)]
    await subscribe_user(clients[0], 1)  # the process's hub has its channel now
    before = _own_channels()
    for client in clients:
        await subscribe_user(client, 1)
    assert _own_channels() == before, "observed subscriptions made channels"
    op = await clients[0].subscribe(JOIN, {"user": "bob"})
    for _ in range(2):
        await clients[0].next(op)
    made = _own_channels() - before
    assert len(made) == 1
    groups = get_channel_layer().groups
    assert made <= set(groups["chat_one"]) and made <= set(groups["chat_two"])
    for client in clients:
        await client.disconnect()
    assert not _own_channels() & made, "the channel outlived its connection"


async def test_strawberrys_tutorial_subscription_hears_another_process_over_redis(
    redis_layer: str, users: list[User], tmp_path: Path
) -> None:
    client = await connect(support.application())
    observed = await subscribe_user(client, 1)
    chat = await client.subscribe(JOIN, {"user": "ann"})
    greetings = {(await client.next(chat))["joinRooms"]["roomName"] for _ in range(2)}
    assert greetings == {"chat_one", "chat_two"}
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(REDIS_URL=redis_layer, DATABASE_URL=f"sqlite:///{tmp_path / 'shell.sqlite3'}")
    await asyncio.to_thread(run_shell, env, SEND_FROM_SHELL)
    assert await client.next(chat) == {
        "joinRooms": {"roomName": "chat_one", "currentUser": "ann", "message": "from a shell"}
    }
    await save_user(1, username="through redis")
    assert await username_seen(client, observed) == "through redis"
    await client.disconnect()
