"""Subscribing to one instance, through graphql-transport-ws on the real ASGI app."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from gql_observer.testing import GraphQLTransportWSCommunicator, settle
from tests.support import runtime as live
from tests.support.clients import barrier_value
from tests.support.users import SUBSCRIBE_USER, barrier, save_user, subscribe_user
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def update(rid: Any, pk: str, username: str, email: str) -> dict[str, Any]:
    return {
        "user": {
            "action": "update",
            "errors": [],
            "responseStatus": 200,
            "requestId": rid,
            "data": {"id": pk, "username": username, "email": email},
        }
    }


async def test_subscribe_answers_subscribe_instance_201(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_user(client, 1, rid=1550050)
    await barrier(client, op, 1)  # one 201, nothing else before the next change


async def test_a_committed_save_is_delivered_as_update(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_user(client, 1, rid=1550050)
    await save_user(1, username="edited user name")
    assert await client.next(op) == update(1550050, "1", "edited user name", "1@example.com")


@pytest.mark.parametrize(
    "rid", [1700000000000, "abc", None, {"nested": [1, 2.5, True]}, 0, -(2**53)]
)
async def test_request_id_is_echoed_unchanged_on_every_message(
    client: GraphQLTransportWSCommunicator, rid: Any
) -> None:
    op = await subscribe_user(client, 2, rid=rid)
    await save_user(2, email="new@example.com")
    assert await client.next(op) == update(rid, "2", "test 2", "new@example.com")


async def test_request_id_may_be_a_literal_in_the_document(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await client.subscribe(
        'subscription { user(pk: "1", requestId: 1700000000000) { action requestId } }'
    )
    assert await client.next(op) == {
        "user": {"action": "subscribe_instance", "requestId": 1700000000000}
    }
    await save_user(1, username="x")
    assert await client.next(op) == {"user": {"action": "update", "requestId": 1700000000000}}


async def test_request_id_is_optional(client: GraphQLTransportWSCommunicator) -> None:
    op = await client.subscribe("subscription { user(pk: 1) { action requestId responseStatus } }")
    assert await client.next(op) == {
        "user": {"action": "subscribe_instance", "requestId": None, "responseStatus": 201}
    }


async def test_missing_pk_answers_404_then_completes(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await client.subscribe(SUBSCRIBE_USER, {"pk": 999, "rid": 7})
    message = await client.next(op)
    assert message == {
        "user": {
            "action": "subscribe_instance",
            "errors": ["Not found."],
            "responseStatus": 404,
            "requestId": 7,
            "data": None,
        }
    }
    await client.expect_complete(op)
    assert live.hub().groups == {}


@pytest.mark.parametrize(
    "document",
    [SUBSCRIBE_USER, SUBSCRIBE_USER.replace("subscription", "query")],
    ids=["subscription", "query"],
)
@pytest.mark.parametrize("pk", ["99999999999999999999999999", "-99999999999999999999999999"])
async def test_a_pk_beyond_any_row_answers_404_like_any_pk_that_names_nothing(
    client: GraphQLTransportWSCommunicator, document: str, pk: str
) -> None:
    op = await client.subscribe(document, {"pk": pk, "rid": 9})
    action = "subscribe_instance" if document.startswith("subscription") else "retrieve"
    assert await client.next(op) == {
        "user": {
            "action": action,
            "errors": ["Not found."],
            "responseStatus": 404,
            "requestId": 9,
            "data": None,
        }
    }
    await client.expect_complete(op)


NAMED = "{ named(pk: $pk) { action responseStatus errors data { id username } } }"


@pytest.mark.db_matrix
async def test_text_no_row_can_hold_names_nothing_and_fails_nobody_elses_read(
    users: list[User],
) -> None:
    """A NUL in a text lookup (``named`` is found by username): PostgreSQL would
    refuse the whole query, and the reads of one type are coalesced, so a
    stranger's subscription read with it would fail too. It names nothing: 404,
    never read; the subscription beside it is served."""
    from tests.support import schema as support
    from tests.support.clients import connect

    app = support.application()
    stranger, other = await connect(app), await connect(app)
    query = await stranger.subscribe("query ($pk: ID!) " + NAMED, {"pk": "test\u00001"})
    assert (await stranger.next(query))["named"] == {
        "action": "retrieve",
        "responseStatus": 404,
        "errors": ["Not found."],
        "data": None,
    }
    await stranger.expect_complete(query)
    document = "subscription ($pk: ID!) " + NAMED
    bad, good = await asyncio.gather(  # asked together: one coalesced read
        stranger.subscribe(document, {"pk": "test\u00001"}),
        other.subscribe(document, {"pk": "test 1"}),
    )
    assert (await stranger.next(bad))["named"]["responseStatus"] == 404
    assert (await other.next(good))["named"]["responseStatus"] == 201
    await save_user(1, email="named@x.org")
    changed = (await other.next(good))["named"]
    assert (changed["action"], changed["data"]) == ("update", {"id": "1", "username": "test 1"})
    await stranger.disconnect()
    await other.disconnect()


async def test_malformed_pk_answers_404_not_a_crash(client: GraphQLTransportWSCommunicator) -> None:
    op = await client.subscribe(SUBSCRIBE_USER, {"pk": "abc", "rid": 8})
    assert (await client.next(op))["user"]["responseStatus"] == 404
    await client.expect_complete(op)
    # The connection still serves.
    await subscribe_user(client, 1)


async def test_updates_arrive_in_order_and_the_last_equals_the_committed_state(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_user(client, 1)
    for n in range(20):
        await save_user(1, username=f"name {n}")
    seen = []
    while not seen or seen[-1] != "name 19":
        seen.append((await client.next(op))["user"]["data"]["username"])
    # A re-read may already show a later commit than the event that caused it;
    # the later event then shows the same state again. Never an older one. Every
    # frame up to a later change (the barrier's new email) counts.
    email = barrier_value("@example.com")
    await save_user(1, email=email)
    while True:
        user = (await client.next(op))["user"]["data"]
        if user["email"] == email:
            break
        seen.append(user["username"])
    numbers = [int(name.split()[1]) for name in seen]
    assert numbers == sorted(numbers), seen
    assert seen[-1] == "name 19"


async def test_delete_sends_last_values_with_204_then_completes(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_user(client, 3, rid="del")
    await database_sync_to_async(User.objects.filter(pk=3).delete)()
    assert await client.next(op) == {
        "user": {
            "action": "delete",
            "errors": [],
            "responseStatus": 204,
            "requestId": "del",
            "data": {"id": "3", "username": "test 3", "email": "3@example.com"},
        }
    }
    await client.expect_complete(op)


async def test_each_subscription_receives_only_its_own_instance(
    client: GraphQLTransportWSCommunicator,
) -> None:
    one = await subscribe_user(client, 1, rid="one")
    two = await subscribe_user(client, 2, rid="two")
    await save_user(2, username="only two")
    assert await client.next(two) == update("two", "2", "only two", "2@example.com")
    # The next frame is user 1's next change: ``one`` was sent nothing of user 2's.
    await settle()
    await save_user(1, username="only one")
    assert await client.next(one) == update("one", "1", "only one", "1@example.com")
    await barrier(client, two, 2)  # and ``two`` nothing of user 1's


async def test_completing_one_of_two_subscriptions_to_one_instance_leaves_the_other(
    client: GraphQLTransportWSCommunicator,
) -> None:
    first = await subscribe_user(client, 1, rid="a")
    second = await subscribe_user(client, 1, rid="b")
    await client.complete(first)
    await save_user(1, username="after complete")
    assert await client.next(second) == update("b", "1", "after complete", "1@example.com")
    await barrier(client, second, 1)  # the completed one was sent nothing of either change


async def test_complete_leaves_no_subscription_task_or_group(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_user(client, 1)
    hub = live.hub()
    assert set(hub.groups) == {"gqlobs.auth.user.1"}
    # The instance's group, and its model's (where batches of changes arrive).
    assert hub.joined == {"gqlobs.auth.user.1", "gqlobs-model.auth.user"}
    await client.complete(op)
    await wait_until(lambda: hub.joined == set(), 5, "the hub left both groups")
    assert hub.groups == {} == hub.model_groups
    layer_groups = getattr(hub.layer, "groups", {})
    assert not layer_groups.get("gqlobs.auth.user.1")
    assert not layer_groups.get("gqlobs-model.auth.user")
    # Only the hub's receive and refresh loops remain.
    assert {t.get_name() for t in hub.tasks} == {
        "gql_observer.hub.receive",
        "gql_observer.hub.refresh",
        "gql_observer.publisher",
    } - {"gql_observer.publisher"}
    await save_user(1, username="unseen")
    # A new subscription's 201, then its first change, are the next frames: the
    # completed one was sent nothing.
    again = await subscribe_user(client, 1, rid="again")
    await barrier(client, again, 1)


async def test_disconnect_leaves_nothing_behind(application: Any, users: list[User]) -> None:
    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    await client.init()
    await subscribe_user(client, 1)
    await subscribe_user(client, 2)
    hub = live.hub()
    assert len(hub.groups) == 2
    await client.disconnect()
    await save_user(1, username="nobody listens")
    for _ in range(100):
        if not hub.joined:
            break
        await asyncio.sleep(0.01)
    assert hub.groups == {} and hub.joined == set()


async def test_hub_shutdown_completes_subscriptions_and_leaves_groups(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_user(client, 1)
    hub = live.hub()
    await hub.close()
    await client.expect_complete(op)
    assert hub.joined == set() and hub.tasks == set()
    assert not getattr(hub.layer, "groups", {}).get("gqlobs.auth.user.1")


async def test_no_subscriber_channel_joins_a_group(application: Any, users: list[User]) -> None:
    clients = [GraphQLTransportWSCommunicator(application) for _ in range(3)]
    ops = []
    for client in clients:
        await client.connect()
        await client.init()
        ops.append(await subscribe_user(client, 1))
    hub = live.hub()
    members = hub.layer.groups["gqlobs.auth.user.1"]
    assert set(members) == {hub.channel}
    await save_user(1, username="fan out")
    for client, op in zip(clients, ops, strict=True):
        assert (await client.next(op))["user"]["data"]["username"] == "fan out"
        await client.disconnect()


async def test_password_is_not_in_the_schema(client: GraphQLTransportWSCommunicator) -> None:
    op = await client.subscribe("subscription { user(pk: 1) { data { password } } }")
    message = await client.receive()
    assert message["type"] == "error" and message["id"] == op
    assert "Cannot query field 'password'" in message["payload"][0]["message"]


async def test_a_unique_field_other_than_pk_may_be_the_lookup(users: list[User]) -> None:
    import strawberry_django
    from django.contrib.auth.models import Group

    import gql_observer
    from gql_observer.asgi import application as build
    from gql_observer.observe.registry import definitions

    if not any(d.field_name == "groupByName" for d in definitions()):

        @gql_observer.observe(Group, name="groupByName", lookup="name")
        @strawberry_django.type(Group, fields=["id", "name"], name="GroupType")
        class GroupType:
            pass

    group = await database_sync_to_async(Group.objects.create)(name="editors")
    query = 'subscription { groupByName(pk: "editors") { action responseStatus data { id name } } }'
    async with GraphQLTransportWSCommunicator(build(gql_observer.build_schema())) as client:
        op = await client.subscribe(query)
        assert (await client.next(op))["groupByName"]["responseStatus"] == 201

        @database_sync_to_async
        def rename() -> None:
            group.name = "authors"
            group.save()

        await rename()
        # The subscription follows the instance, whatever its name becomes.
        assert await client.next(op) == {
            "groupByName": {
                "action": "update",
                "responseStatus": 200,
                "data": {"id": str(group.pk), "name": "authors"},
            }
        }
        missing = await client.subscribe(query.replace("editors", "nobody"))
        assert (await client.next(missing))["groupByName"]["responseStatus"] == 404
