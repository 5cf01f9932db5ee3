"""Hostile input: arbitrary frames on one connection never disturb the others.

Property-based (hypothesis): whatever a connection sends, it gets a protocol
answer or a specified close code, and a well-behaved client on another
connection keeps getting its updates.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gql_observer.testing import GraphQLTransportWSCommunicator, ProtocolError
from tests.support import runtime as live
from tests.support.clients import PONG, next_after_ping
from tests.support.users import save_user, subscribe_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

#: The close codes graphql-transport-ws (and the size limit) may answer with.
ALLOWED_CLOSES = {1000, 1002, 1009, 1011, 4400, 4401, 4403, 4408, 4409, 4429}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
messages = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "connection_init",
                "ping",
                "pong",
                "subscribe",
                "complete",
                "next",
                "error",
                "start",
                "stop",
                "bogus",
            ]
        )
    },
    optional={
        "id": st.one_of(st.text(max_size=6), st.integers(), st.none()),
        "payload": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {
                    "query": st.sampled_from(
                        [
                            "subscription { user(pk: 1) { action } }",
                            "{ user(pk: 2) { data { id } } }",
                            "subscription { user(pk: 99999999999999999999) { action } }",
                            "{ __typename",
                            "mutation { deleteUser(pk: 1) { id } }",
                        ]
                    )
                },
                optional={"variables": json_values, "operationName": st.text(max_size=5)},
            ),
        ),
    },
)
frames = st.one_of(
    messages.map(json.dumps),
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.just("x" * 70_000),
    st.binary(max_size=50),
)


async def hostile(application: Any, sent: list[str | bytes], protocol: str) -> None:
    client = GraphQLTransportWSCommunicator(application, subprotocols=[protocol])
    await client.connect()
    try:
        for frame in sent:
            await client.send_raw(frame)
        # Drain: answers are fine, a close must carry a specified code.
        closed: ProtocolError | None = None
        while closed is None and not await client.nothing(0.2):
            try:
                assert isinstance(await client.receive(), dict)
            except ProtocolError as error:
                closed = error
        if closed is not None:
            assert closed.code in ALLOWED_CLOSES, closed
    finally:
        await client.disconnect()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sent=st.lists(frames, min_size=1, max_size=6),
    protocol=st.sampled_from(["graphql-transport-ws", "graphql-ws"]),
)
def test_arbitrary_frames_get_a_specified_answer_and_others_keep_their_updates(
    application: Any, users: list[User], sent: list[str | bytes], protocol: str
) -> None:
    async def scenario() -> None:
        async with GraphQLTransportWSCommunicator(application) as good:
            op = await subscribe_user(good, 2, rid="good")
            await hostile(application, sent, protocol)
            name = f"still served {len(sent)}"
            await save_user(2, username=name)
            update = await good.next(op)
            assert update["user"]["data"]["username"] == name
        current = live.started_hub()
        if current is not None:
            await current.close()

    async_to_sync(scenario)()
    # A hostile deleteUser may have run: put the user back for the next example.
    if not User.objects.filter(pk=1).exists():
        User.objects.create(pk=1, username="test 1", email="1@example.com")


async def test_thousands_of_subscribe_messages_keep_memory_bounded_and_others_served(
    application: Any, users: list[User]
) -> None:
    async with GraphQLTransportWSCommunicator(application) as good:
        op = await subscribe_user(good, 2, rid="good")
        flood = GraphQLTransportWSCommunicator(application)
        await flood.connect()
        await flood.init()
        for n in range(3000):
            await flood.send(
                {
                    "type": "subscribe",
                    "id": str(n),
                    "payload": {"query": "subscription { user(pk: 1) { action } }"},
                }
            )
        # Every subscribe gets exactly one answer: its 201, or an error (the
        # operation limit or the subscribe rate); then the answer to a ping.
        kinds = [(await flood.receive(timeout=10))["type"] for _ in range(3000)]
        answered = len(kinds)
        assert await next_after_ping(flood) == PONG
        hub = live.hub()
        # Only the allowed operations hold a local subscription.
        from gql_observer.core.conf import get_settings

        limit = get_settings().max_operations_per_connection
        assert sum(len(s) for s in hub.groups.values()) <= limit + 1
        assert answered == 3000
        assert kinds.count("next") <= limit
        assert kinds.count("error") == 3000 - kinds.count("next")
        await save_user(2, username="after the flood")
        assert (await good.next(op))["user"]["data"]["username"] == "after the flood"
        await flood.disconnect()
    assert await database_sync_to_async(User.objects.count)() == 3
