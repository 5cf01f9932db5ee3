"""Subscribers of one instance share work, never what could differ: each gets what
strawberry would send it if it ran its operation alone, with its own context. The
cases that leaked before, by name: a permission-gated field seen by whoever came
second, a resolver reading the first subscriber's context, an extension run once
for everybody, and two tokens of one user sharing a verdict."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.core import signing

from gql_observer import issue_token
from gql_observer.testing import GraphQLTransportWSCommunicator
from schema_examples.notes.models import Note
from tests.support import schema as support
from tests.support.clients import connect
from tests.support.users import save_user

pytestmark = pytest.mark.django_db(transaction=True)

PROFILE = (
    "subscription ($pk: ID!, $rid: JSON) { profile(pk: $pk, requestId: $rid) "
    "{ action requestId data { id username email viewer locale } } }"
)
#: Where ``email`` is in PROFILE (line 1), for the errors' locations.
EMAIL_COLUMN = PROFILE.index("email") + 1


@pytest.fixture
def app() -> Any:
    return support.application()


def update(rid: Any, data: Any) -> dict[str, Any]:
    return {"profile": {"action": "update", "requestId": rid, "data": data}}


def not_authenticated(rid: Any) -> dict[str, Any]:
    return {
        "data": update(rid, None),
        "errors": [
            {
                "message": "User is not authenticated",
                "locations": [{"line": 1, "column": EMAIL_COLUMN}],
                "path": ["profile", "data", "email"],
            }
        ],
    }


async def subscribe(client: GraphQLTransportWSCommunicator, rid: Any, pk: int = 2) -> None:
    await client.subscribe(PROFILE, {"pk": pk, "rid": rid})
    first = await client.next("1")
    assert first == {"profile": {"action": "subscribe_instance", "requestId": rid, "data": None}}


async def next_payload(client: GraphQLTransportWSCommunicator) -> Any:
    message = await client.receive()
    assert (message["type"], message["id"]) == ("next", "1"), message
    return message["payload"]


async def test_an_anonymous_subscriber_after_alice_gets_none_of_her_fields(
    app: Any, users: list[User]
) -> None:
    alice = await connect(app, users[0], {"locale": "fr"})
    anonymous = await connect(app)
    await subscribe(alice, 1)
    await subscribe(anonymous, 1)  # the very same document and variables
    await save_user(2, username="renamed")
    assert await next_payload(alice) == {
        "data": update(
            1,
            {
                "id": "2",
                "username": "renamed",
                "email": "2@example.com",
                "viewer": "test 1",
                "locale": "fr",
            },
        )
    }
    assert await next_payload(anonymous) == not_authenticated(1)
    await alice.disconnect()
    await anonymous.disconnect()


async def test_alice_after_an_anonymous_subscriber_gets_her_fields(
    app: Any, users: list[User]
) -> None:
    anonymous = await connect(app)
    alice = await connect(app, users[0])
    await subscribe(anonymous, 7)
    await subscribe(alice, 7)  # the very same document and variables
    await save_user(2, username="renamed")
    assert await next_payload(anonymous) == not_authenticated(7)
    payload = await next_payload(alice)
    assert "errors" not in payload
    assert payload["data"]["profile"]["data"]["email"] == "2@example.com"
    assert payload["data"]["profile"]["data"]["viewer"] == "test 1"
    await anonymous.disconnect()
    await alice.disconnect()


async def test_strawberry_django_permission_extensions_answer_each_viewer(
    app: Any, users: list[User]
) -> None:
    staff = users[2]
    staff.is_staff = True
    await database_sync_to_async(staff.save)()
    query = "subscription { profile(pk: 1, requestId: 1) { data { username firstName lastName } } }"
    clients = {
        "anonymous": await connect(app),
        "alice": await connect(app, users[0]),
        "staff": await connect(app, staff),
    }
    for client in clients.values():
        await client.subscribe(query)
        await client.next("1")
    await save_user(1, first_name="Ada", last_name="Lovelace")
    got = {name: await next_payload(client) for name, client in clients.items()}
    column = query.index("lastName") + 1
    refused = {
        "message": "User is not a staff member.",
        "locations": [{"line": 1, "column": column}],
        "path": ["profile", "data", "lastName"],
    }
    assert got["staff"] == {
        "data": {
            "profile": {"data": {"username": "test 1", "firstName": "Ada", "lastName": "Lovelace"}}
        }
    }
    # IsAuthenticated fails silently (null); IsStaff raises, and nulls the object.
    assert got["alice"] == {"data": {"profile": {"data": None}}, "errors": [refused]}
    assert got["anonymous"] == {"data": {"profile": {"data": None}}, "errors": [refused]}
    for client in clients.values():
        await client.disconnect()


async def test_a_resolver_reading_the_context_sees_each_subscribers_own(
    app: Any, users: list[User]
) -> None:
    query = (
        "subscription ($rid: JSON) { profile(pk: 3, requestId: $rid) { data { viewer locale } } }"
    )
    clients = [
        await connect(app, users[0], {"locale": "fr"}),
        await connect(app, users[1], {"locale": "de"}),
        await connect(app, None, {"locale": "it"}),
        await connect(app, users[1]),
    ]
    for client in clients:
        await client.subscribe(query, {"rid": "same"})
        await client.next("1")
    await save_user(3, username="seen")
    got = [(await client.next("1"))["profile"]["data"] for client in clients]
    assert got == [
        {"viewer": "test 1", "locale": "fr"},
        {"viewer": "test 2", "locale": "de"},
        {"viewer": "anonymous", "locale": "it"},
        {"viewer": "test 2", "locale": None},
    ]
    for client in clients:
        await client.disconnect()


async def test_a_schema_extension_runs_on_execute_once_per_subscriber(users: list[User]) -> None:
    app = support.application(counting=True)
    support.EXECUTED.clear()
    clients = [await connect(app, users[0]), await connect(app, users[1]), await connect(app)]
    for client in clients:
        await subscribe(client, "same")
    assert support.EXECUTED == {"test 1": 1, "test 2": 1, "anonymous": 1}
    await save_user(2, username="again")
    for client in clients:
        payload = await next_payload(client)
        assert payload["data"]["profile"]["action"] == "update"
    for client in clients:
        await client.disconnect()


async def test_two_tokens_of_one_user_issued_in_one_second_do_not_share_a_verdict(
    application: Any, users: list[User], monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = users[0]
    note = await Note.objects.acreate(owner=owner, title="title", body="body")
    # Both tokens carry the same issue time, so the same expiry: only the password
    # fingerprint tells them apart.
    frozen = float(int(time.time()))
    monkeypatch.setattr(signing, "time", SimpleNamespace(time=lambda: frozen))
    old_token = await database_sync_to_async(issue_token)(owner)
    query = (
        "subscription ($pk: ID!) "
        "{ note(pk: $pk, requestId: 1) { action responseStatus data { body } } }"
    )
    holder = GraphQLTransportWSCommunicator(application)
    await holder.connect()
    await holder.init({"token": old_token})
    await holder.subscribe(query, {"pk": note.pk})
    assert (await holder.next("1"))["note"]["responseStatus"] == 201

    def change_password() -> str:
        fresh = User.objects.get(pk=owner.pk)
        fresh.set_password("a new one")
        fresh.save()
        return issue_token(fresh)

    new_token = await database_sync_to_async(change_password)()
    current = GraphQLTransportWSCommunicator(application)
    await current.connect()
    await current.init({"token": new_token})
    await current.subscribe(query, {"pk": note.pk})
    assert (await current.next("1"))["note"]["responseStatus"] == 201

    def edit() -> None:
        fresh = Note.objects.get(pk=note.pk)
        fresh.body = "after the change"
        fresh.save()

    await database_sync_to_async(edit)()
    assert await current.next("1") == {
        "note": {"action": "update", "responseStatus": 200, "data": {"body": "after the change"}}
    }
    assert await holder.next("1") == {
        "note": {"action": "update", "responseStatus": 401, "data": None}
    }
    await holder.expect_complete("1")
    await holder.disconnect()
    await current.disconnect()
