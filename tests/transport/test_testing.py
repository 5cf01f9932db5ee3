"""gql_observer.testing: ``settle()``, which the tests' barriers stand on (a frame
an action caused is written before ``settle()`` returns)."""

from __future__ import annotations

import pytest

from gql_observer.graphql import runtime
from gql_observer.testing import GraphQLTransportWSCommunicator, settle
from tests.support.users import save_user, subscribe_user, username_seen

pytestmark = pytest.mark.django_db(transaction=True)


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
