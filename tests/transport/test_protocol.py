"""graphql-transport-ws basics, as PROTOCOL.md specifies them, on the real app."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User

from gql_observer.testing import GraphQLTransportWSCommunicator
from tests.support.clients import LEGACY_ANSWER, next_after_legacy_query
from tests.support.users import SUBSCRIBE_USER, subscribe_user

pytestmark = pytest.mark.django_db(transaction=True)


async def connected(application: Any) -> GraphQLTransportWSCommunicator:
    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    return client


async def test_handshake_selects_graphql_transport_ws(application: Any, users: list[User]) -> None:
    client = await connected(application)
    assert client.subprotocol == "graphql-transport-ws"
    await client.disconnect()


async def test_legacy_graphql_ws_is_also_spoken(application: Any, users: list[User]) -> None:
    client = GraphQLTransportWSCommunicator(application, subprotocols=["graphql-ws"])
    await client.connect()
    assert client.subprotocol == "graphql-ws"
    await client.send({"type": "connection_init"})
    assert (await client.receive())["type"] == "connection_ack"
    await client.send(
        {"type": "start", "id": "1", "payload": {"query": SUBSCRIBE_USER, "variables": {"pk": 1}}}
    )
    message = await client.receive()
    assert message["type"] == "data" and message["id"] == "1"
    assert message["payload"]["data"]["user"]["responseStatus"] == 201
    await client.disconnect()


async def test_ping_is_answered_with_pong(client: GraphQLTransportWSCommunicator) -> None:
    await client.send({"type": "ping"})
    assert await client.receive() == {"type": "pong"}


async def test_closes_4408_when_connection_init_does_not_come_in_time(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(CONNECTION_INIT_TIMEOUT=0.2)
    from gql_observer.asgi import application as build

    client = GraphQLTransportWSCommunicator(build())
    await client.connect()
    assert await client.receive_close() == (4408, "Connection initialisation timeout")


async def test_legacy_graphql_ws_closes_4408_when_connection_init_does_not_come_in_time(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(CONNECTION_INIT_TIMEOUT=0.2)
    from gql_observer.asgi import application as build

    client = GraphQLTransportWSCommunicator(build(), subprotocols=["graphql-ws"])
    await client.connect()
    assert client.subprotocol == "graphql-ws"
    assert await client.receive_close() == (4408, "Connection initialisation timeout")


async def test_legacy_graphql_ws_connection_init_in_time_stays_open(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(CONNECTION_INIT_TIMEOUT=0.2)
    from gql_observer.asgi import application as build

    client = GraphQLTransportWSCommunicator(build(), subprotocols=["graphql-ws"])
    await client.connect()
    await client.send({"type": "connection_init"})
    assert await client.receive() == {"type": "connection_ack"}
    # Past the deadline (a timer of this event loop, due before the sleep ends),
    # the connection still serves: the next frame answers a query, not a close.
    await asyncio.sleep(0.4)
    assert await next_after_legacy_query(client) == LEGACY_ANSWER
    await client.disconnect()


async def test_connection_init_timeout_defaults_to_3_seconds() -> None:
    from gql_observer.core.conf import DEFAULTS

    assert DEFAULTS["CONNECTION_INIT_TIMEOUT"] == 3.0


async def test_closes_4429_on_a_second_connection_init(
    client: GraphQLTransportWSCommunicator,
) -> None:
    await client.send({"type": "connection_init"})
    assert await client.receive_close() == (4429, "Too many initialisation requests")


async def test_closes_4401_on_subscribe_before_ack(application: Any, users: list[User]) -> None:
    client = await connected(application)
    await client.subscribe(SUBSCRIBE_USER, {"pk": 1})
    assert await client.receive_close() == (4401, "Unauthorized")


async def test_closes_4409_when_an_operation_id_is_reused(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_user(client, 1)
    await client.subscribe(SUBSCRIBE_USER, {"pk": 2}, id=op)
    assert await client.receive_close() == (4409, f"Subscriber for {op} already exists")


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not json", "WebSocket message must be valid JSON"),
        (json.dumps({"type": "nonsense"}), "Unknown message type: nonsense"),
        (json.dumps({"id": "1"}), "Failed to parse message"),
        (json.dumps({"type": "subscribe", "id": "1"}), "Failed to parse message"),
        ("null", "Failed to parse message"),
        ("[1, 2]", "Failed to parse message"),
        (
            json.dumps({"type": "subscribe", "id": [1], "payload": {"query": "{ x }"}}),
            "Failed to parse message",
        ),
        (
            json.dumps({"type": "subscribe", "id": "1", "payload": {"query": 5}}),
            "Failed to parse message",
        ),
        (json.dumps({"type": "complete", "id": {"a": 1}}), "Failed to parse message"),
    ],
)
async def test_closes_4400_on_an_invalid_message(
    client: GraphQLTransportWSCommunicator, frame: str, reason: str
) -> None:
    await client.send_raw(frame)
    assert await client.receive_close() == (4400, reason)


async def test_closes_4400_on_a_syntax_error(client: GraphQLTransportWSCommunicator) -> None:
    await client.subscribe("subscription { user(pk: 1) { ")
    code, reason = await client.receive_close()
    assert code == 4400 and "Syntax Error" in reason


async def test_a_validation_error_is_an_error_message_not_a_close(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await client.subscribe("subscription { user { action } }")
    message = await client.receive()
    assert message["type"] == "error" and message["id"] == op
    assert message["payload"][0]["message"] == (
        "Argument 'Subscription.user(pk:)' of type 'ID!' is required, but it was not provided."
    )
    await subscribe_user(client, 1)


async def test_a_query_over_the_websocket_is_answered_then_completed(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await client.subscribe("query { user(pk: 1, requestId: 5) { action responseStatus } }")
    assert await client.next(op) == {"user": {"action": "retrieve", "responseStatus": 200}}
    await client.expect_complete(op)


async def test_too_many_operations_on_one_connection_get_an_error(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(SUBSCRIBE_RATE=10_000)
    from gql_observer.core.conf import get_settings

    limit = get_settings().max_operations_per_connection
    async with GraphQLTransportWSCommunicator(application) as client:
        for _ in range(limit):
            await subscribe_user(client, 1)
        op = await client.subscribe(SUBSCRIBE_USER, {"pk": 1})
        message = await client.receive()
        assert message == {
            "id": op,
            "type": "error",
            "payload": [{"message": "Subscription limit reached"}],
        }


async def test_subscribing_faster_than_the_rate_gets_errors_and_the_connection_goes_on(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(SUBSCRIBE_RATE=1.0)
    async with GraphQLTransportWSCommunicator(application) as client:
        await subscribe_user(client, 1)  # burst of 2
        await subscribe_user(client, 1)
        op = await client.subscribe(SUBSCRIBE_USER, {"pk": 1})
        assert await client.receive() == {
            "id": op,
            "type": "error",
            "payload": [{"message": "Too many subscribe messages; slow down."}],
        }
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}
