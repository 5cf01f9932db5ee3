"""The lean graphql-transport-ws connection (gql_observer.transport.connection): what it
costs, and what resolvers find in their context."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncGenerator, Callable
from typing import Any

import pytest
import strawberry
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from strawberry.types import Info
from strawberry_django.auth.utils import get_current_user

from gql_observer import issue_token
from gql_observer.graphql.reads import READ_TASK
from gql_observer.testing import GraphQLTransportWSCommunicator
from gql_observer.transport.connection import Connection
from gql_observer.transport.operation import ADMIT_TASK
from tests.support import runtime as live_runtime
from tests.support.clients import (
    LEGACY_ANSWER,
    PONG,
    next_after_legacy_query,
    next_after_ping,
)
from tests.support.users import (
    SUBSCRIBE_USER,
    barrier,
    login_session,
    save_user,
    subscribe_user,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _tasks() -> int:
    """Tasks alive, but for coalesced reads (one per kind of read, ending a read
    window after the last read: not per subscription, and not alive for long) and
    the tasks that start subscriptions (each ends with its 201)."""
    passing = {READ_TASK, ADMIT_TASK}
    return sum(task.get_name() not in passing for task in asyncio.all_tasks())


async def test_an_observed_subscription_costs_no_task(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(SUBSCRIBE_RATE=10_000)
    clients = []
    before = _tasks()
    for _ in range(10):
        client = GraphQLTransportWSCommunicator(application)
        await client.connect()
        await client.init()
        clients.append(client)
    # One task per connection: the application's own (the server's, in production).
    assert _tasks() - before == 10
    ops = [await subscribe_user(clients[0], 1)]
    with_one = _tasks()  # the watch and the hub have started
    for client in clients:
        for _ in range(5):
            ops.append(await subscribe_user(client, 1))
    assert _tasks() == with_one, "50 more observed subscriptions started tasks"
    await wait_until(
        lambda: not any(t.get_name() == ADMIT_TASK for t in asyncio.all_tasks()),
        5,
        "the subscriptions' starting tasks end",
    )
    assert len(live_runtime.watches()) == 1

    await save_user(1, username="seen by all")
    first = clients[0]
    for client in clients:
        count = 6 if client is first else 5
        for _ in range(count):
            message = await client.receive()
            assert message["type"] == "next"
            assert message["payload"]["data"]["user"]["data"]["username"] == "seen by all"
    for client in clients:
        await client.disconnect()
    assert live_runtime.watches() == {}


@strawberry.type
class Query:
    @strawberry.field
    def me(self, info: Info) -> str:
        # strawberry-django's way, and the context's own user.
        user = get_current_user(info)
        assert user is info.context["user"] or user == info.context["user"]
        return str(user.username) if user.is_authenticated else "anonymous"

    @strawberry.field
    def params(self, info: Info) -> strawberry.scalars.JSON:
        return info.context["connection_params"]


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def count(self, to: int) -> AsyncGenerator[int, None]:
        for n in range(to):
            yield n
        # and then nothing until the client completes (or leaves)
        if to == 0:
            await asyncio.Event().wait()


@pytest.fixture
def own_application() -> Any:
    import gql_observer
    from gql_observer.asgi import application as build

    return build(gql_observer.build_schema(query=Query, subscription=Subscription))


async def _me(client: GraphQLTransportWSCommunicator) -> str:
    op = await client.subscribe("{ me }")
    data = await client.next(op)
    await client.expect_complete(op)
    return str(data["me"])


async def test_a_connection_keeps_nothing_of_an_operation_that_ended(
    own_application: Any, users: list[User]
) -> None:
    async with GraphQLTransportWSCommunicator(own_application) as client:
        assert await _me(client) == "anonymous"  # a query: it ran in a task of its own
        live = [c for c in gc.get_objects() if issubclass(type(c), Connection) and not c.closed]
        assert len(live) == 1
        # Not even an empty set of tasks (every idle connection would keep one
        # after its first ping).
        await wait_until(lambda: not live[0].holds_task_set, 5, "the task set is dropped")
        assert live[0].operations == {}


async def test_resolvers_find_the_user_where_strawberry_django_looks(
    own_application: Any, users: list[User]
) -> None:
    async with GraphQLTransportWSCommunicator(own_application) as client:
        assert await _me(client) == "anonymous"

    key = await login_session(users[1])
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={key}".encode()
    async with GraphQLTransportWSCommunicator(
        own_application, headers=[(b"cookie", cookie)]
    ) as client:
        assert await _me(client) == "test 2"

    token = await database_sync_to_async(issue_token)(users[2])
    client = GraphQLTransportWSCommunicator(own_application)
    await client.connect()
    await client.init({"token": token, "locale": "fr"})
    assert await _me(client) == "test 3"
    op = await client.subscribe("{ params }")
    assert await client.next(op) == {"params": {"token": token, "locale": "fr"}}
    await client.disconnect()


async def _operation_tasks(count: int) -> set[asyncio.Task[Any]] | None:
    """The connections' operation tasks once there are ``count`` of them; None
    if that does not happen within 5 s."""
    for _ in range(500):
        tasks = {
            t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__qualname__", "") == "_run"
        }
        if len(tasks) == count:
            return tasks
        await asyncio.sleep(0.01)
    return None


async def test_a_subscription_of_a_plain_field_runs_and_ends(own_application: Any) -> None:
    async with GraphQLTransportWSCommunicator(own_application) as client:
        op = await client.subscribe("subscription { count(to: 3) }")
        assert [await client.next(op) for _ in range(3)] == [{"count": n} for n in range(3)]
        await client.expect_complete(op)

        assert await _operation_tasks(0) is not None, "the finished operation's task stayed"
        op = await client.subscribe("subscription { count(to: 0) }")
        # A field nobody observes runs in a task of its own...
        started = await _operation_tasks(1)
        assert started is not None, "no task of its own"
        (task,) = started
        await client.complete(op)
        # ...which ends when the client completes the operation.
        await asyncio.wait_for(asyncio.wait([task]), 5)
        assert task.cancelled()
        # Its task is done: the next frame answers a ping (nothing came of it).
        assert await next_after_ping(client) == PONG


async def test_the_subprotocol_is_the_clients_first_choice(
    application: Any, users: list[User]
) -> None:
    # A handshake offering neither GraphQL subprotocol is accepted, then
    # closed with 4406 (as graphql-ws servers answer it).
    refused = GraphQLTransportWSCommunicator(application, subprotocols=["something-else"])
    await refused.connect()
    assert refused.subprotocol is None
    code, _ = await refused.receive_close()
    assert code == 4406
    # The client's first choice wins.
    for offered in (["graphql-ws"], ["graphql-ws", "graphql-transport-ws"]):
        legacy = GraphQLTransportWSCommunicator(application, subprotocols=offered)
        await legacy.connect()
        assert legacy.subprotocol == "graphql-ws"
        await legacy.disconnect()
    current = GraphQLTransportWSCommunicator(
        application, subprotocols=["graphql-transport-ws", "graphql-ws"]
    )
    await current.connect()
    assert current.subprotocol == "graphql-transport-ws"
    await current.disconnect()


async def test_an_operation_of_a_closed_connection_ends_with_it(
    application: Any, users: list[User]
) -> None:
    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    await client.init()
    await client.subscribe(SUBSCRIBE_USER, {"pk": 1, "rid": 1})
    await client.next("1")
    assert len(live_runtime.watches()) == 1
    await client.disconnect()
    assert live_runtime.watches() == {}


# -- legacy graphql-ws (subscriptions-transport-ws) on the same connection ----------------


async def legacy_client(application: Any, payload: Any = None) -> GraphQLTransportWSCommunicator:
    client = GraphQLTransportWSCommunicator(application, subprotocols=["graphql-ws"])
    await client.connect()
    await client.send({"type": "connection_init", "payload": payload or {}})
    assert await client.receive() == {"type": "connection_ack"}
    return client


async def test_legacy_clients_share_a_watch_and_get_data_frames(
    application: Any, users: list[User]
) -> None:
    current = GraphQLTransportWSCommunicator(application)
    await current.connect()
    await current.init()
    op = await subscribe_user(current, 1)
    legacy = await legacy_client(application)
    await legacy.send(
        {
            "type": "start",
            "id": "a",
            "payload": {"query": SUBSCRIBE_USER, "variables": {"pk": 1, "rid": 1}},
        }
    )
    first = await legacy.receive()
    assert (first["type"], first["id"]) == ("data", "a")
    assert first["payload"]["data"]["user"]["responseStatus"] == 201
    assert len(live_runtime.watches()) == 1  # one shared result for both protocols

    await save_user(1, username="both")
    assert (await current.next(op))["user"]["data"]["username"] == "both"
    update = await legacy.receive()
    assert (update["type"], update["id"]) == ("data", "a")
    assert update["payload"]["data"]["user"]["data"]["username"] == "both"

    # stop: the subscription ends, and legacy graphql-ws answers complete
    await legacy.send({"type": "stop", "id": "a"})
    assert await legacy.receive() == {"type": "complete", "id": "a"}
    await save_user(1, username="only the other")
    assert (await current.next(op))["user"]["data"]["username"] == "only the other"
    # The shared watch has handled the change: the legacy client's next frame
    # answers a query of its own, it was sent nothing of it.
    assert await next_after_legacy_query(legacy) == LEGACY_ANSWER
    await legacy.disconnect()
    await current.disconnect()


async def test_legacy_protocol_answers(application: Any, users: list[User]) -> None:
    client = GraphQLTransportWSCommunicator(application, subprotocols=["graphql-ws"])
    await client.connect()
    # start before connection_init
    await client.send({"type": "start", "id": "1", "payload": {"query": "{ __typename }"}})
    assert await client.receive_close() == (4401, "Unauthorized")

    client = await legacy_client(application)
    for ignored in ("not json", json.dumps({"type": "bogus"}), json.dumps([1, 2])):
        await client.send_raw(ignored)
    await client.send({"type": "start", "id": "2", "payload": {"query": 3}})
    assert await client.receive() == {
        "type": "error",
        "id": "2",
        "payload": {"message": "Invalid start message."},
    }
    # a query runs, answers data, then complete
    await client.send({"type": "start", "id": "3", "payload": {"query": "{ __typename }"}})
    assert await client.receive() == {
        "type": "data",
        "id": "3",
        "payload": {"data": {"__typename": "Query"}},
    }
    assert await client.receive() == {"type": "complete", "id": "3"}
    # an invalid document: one error (not a list), the connection goes on
    await client.send({"type": "start", "id": "4", "payload": {"query": "{ nope }"}})
    error = await client.receive()
    assert (error["type"], error["id"]) == ("error", "4")
    assert "nope" in error["payload"]["message"]
    await client.send_raw(b"\x00")
    assert (await client.receive_close())[0] == 1002


async def test_a_legacy_start_with_a_live_id_replaces_it(
    application: Any, users: list[User]
) -> None:
    client = await legacy_client(application)

    def start(pk: int) -> dict[str, Any]:
        payload = {"query": SUBSCRIBE_USER, "variables": {"pk": pk}}
        return {"type": "start", "id": "x", "payload": payload}

    await client.send(start(1))
    assert (await client.receive())["type"] == "data"
    await client.send(start(2))
    assert await client.receive() == {"type": "complete", "id": "x"}
    assert (await client.receive())["payload"]["data"]["user"]["responseStatus"] == 201
    await save_user(2, username="the second")
    update = await client.receive()
    assert update["payload"]["data"]["user"]["data"]["username"] == "the second"
    await save_user(1, username="not watched any more")
    # The next frame is the next change of the second: nothing came of the first.
    await barrier(client, "x", 2, kind="data")
    await client.disconnect()


async def test_a_bad_legacy_token_gets_connection_error(
    application: Any, users: list[User]
) -> None:
    client = GraphQLTransportWSCommunicator(application, subprotocols=["graphql-ws"])
    await client.connect()
    await client.send({"type": "connection_init", "payload": {"token": "garbage"}})
    assert await client.receive() == {
        "type": "connection_error",
        "payload": {"message": "Forbidden"},
    }
    assert (await client.receive_close())[0] == 1011
