"""Only committed changes leave, after the outermost commit. Runs on SQLite and,
with GQLOBS_TEST_DB=postgres, on PostgreSQL."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.db import transaction

from gql_observer.testing import GraphQLTransportWSCommunicator, settle
from tests.support.users import barrier, rename, subscribe_user, username_seen

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db_matrix]


async def test_a_save_inside_atomic_is_delivered_only_after_commit(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_user(client, 1)
    committed = False

    @database_sync_to_async
    def write() -> None:
        nonlocal committed
        with transaction.atomic():
            rename(1, "in transaction")
            # on_commit has not run: nothing can have left yet.
            assert transaction.get_connection().run_on_commit
        committed = True

    await write()
    assert committed
    assert await username_seen(client, op) == "in transaction"


async def test_rollback_sends_nothing(client: GraphQLTransportWSCommunicator) -> None:
    op = await subscribe_user(client, 1)

    @database_sync_to_async
    def write() -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            rename(1, "rolled back")
            raise RuntimeError("abort")

    await write()
    # Once the runtime has handled whatever it was handed, the next frame is a
    # later committed change: the rollback sent nothing, and the subscription
    # still works.
    await settle()
    await database_sync_to_async(rename)(1, "after rollback")
    assert await username_seen(client, op) == "after rollback"


async def test_a_rolled_back_savepoint_inside_a_committed_transaction_sends_nothing(
    client: GraphQLTransportWSCommunicator,
) -> None:
    one = await subscribe_user(client, 1, rid="one")
    two = await subscribe_user(client, 2, rid="two")  # and hears nothing below

    @database_sync_to_async
    def write() -> None:
        with transaction.atomic():
            rename(1, "outer")
            try:
                with transaction.atomic():
                    rename(2, "inner, rolled back")
                    raise RuntimeError("abort savepoint")
            except RuntimeError:
                pass

    await write()
    assert await username_seen(client, one) == "outer"
    # user 2's rolled-back savepoint was not announced: its next frame is a later change.
    await barrier(client, two, 2)


async def test_a_committed_savepoint_inside_a_rolled_back_transaction_sends_nothing(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_user(client, 1)

    @database_sync_to_async
    def write() -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            with transaction.atomic():
                rename(1, "inner committed")
            raise RuntimeError("abort outer")

    await write()
    await barrier(client, op, 1)


async def test_a_rolled_back_savepoint_after_a_save_delivers_the_committed_state(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_user(client, 1)

    @database_sync_to_async
    def write() -> None:
        with transaction.atomic():
            rename(1, "kept")
            try:
                with transaction.atomic():
                    rename(1, "undone")
                    raise RuntimeError("abort savepoint")
            except RuntimeError:
                pass

    await write()
    assert await username_seen(client, op) == "kept"
    await barrier(client, op, 1)  # and no second frame of the savepoint


async def test_several_saves_in_one_transaction_deliver_the_final_state(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_user(client, 1)

    @database_sync_to_async
    def write() -> None:
        with transaction.atomic():
            for n in range(10):
                rename(1, f"step {n}")

    await write()
    # The batch is merged per instance: one message, the committed state.
    assert await username_seen(client, op) == "step 9"
    await barrier(client, op, 1)  # and no second frame


async def test_a_delete_rolled_back_sends_nothing(client: GraphQLTransportWSCommunicator) -> None:
    op = await subscribe_user(client, 2)

    @database_sync_to_async
    def write() -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            User.objects.get(pk=2).delete()
            raise RuntimeError("abort")

    await write()
    await barrier(client, op, 2)  # an update of the instance still there, not its delete
