"""gql_observer.testing: ``settle()``, which the tests' barriers stand on (a frame
an action caused is written before ``settle()`` returns)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from gql_observer.graphql import runtime
from gql_observer.testing import GraphQLTransportWSCommunicator, settle
from tests.support import schema as support
from tests.support.clients import connect
from tests.support.users import save_user, subscribe_user, username_seen

pytestmark = pytest.mark.django_db(transaction=True)

#: A live list of the support schema whose rows hold on ``Gate``.
GATED = (
    'subscription { members(filters: {username: {startsWith: "s-"}}) { action data { gated } } }'
)


async def test_settle_returns_once_the_frames_of_a_saved_change_are_written(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_user(client, 1)
    for n in range(3):
        await save_user(1, username=f"settled {n}")
        await settle()
        current = runtime.running()
        assert current is not None and current.settled
        # The frame is already in the client's queue, before the test reads it.
        assert client.communicator.output_queue.qsize() == 1
        assert await username_seen(client, op) == f"settled {n}"


async def test_settle_without_a_runtime_returns_at_once() -> None:
    assert runtime.running() is None
    await settle(timeout=0)
    assert runtime.running() is None  # and it made none


async def test_settle_waits_for_the_frames_of_a_list_subscription_running_through_strawberry(
    users: list[User], observer_settings: Callable[..., Any]
) -> None:
    # COHORTS off: strawberry's generator takes the change from its list watch,
    # then executes and writes the frame; settle() returns only after the write.
    observer_settings(COHORTS=False)
    client = await connect(support.application())
    await client.subscribe(GATED, {})
    assert (await client.receive())["payload"]["data"]["members"]["action"] == "subscribe_list"
    support.Gate.close()
    entered = support.Gate.entered
    assert entered is not None
    try:
        await database_sync_to_async(User.objects.create)(username="s-gated")
        await asyncio.wait_for(entered.wait(), 5)  # taken, half-way through its execution
        with pytest.raises(TimeoutError):
            await settle(timeout=0.2)
    finally:
        support.Gate.open()
    await settle()
    assert client.communicator.output_queue.qsize() == 1
    frame = await client.receive()
    assert frame["payload"]["data"]["members"] == {"action": "create", "data": {"gated": "open"}}
    await client.disconnect()
