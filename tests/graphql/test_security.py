"""Who may see what, through the real protocol: authentication by session and by
token, owner-only notes re-checked on every event, limits, masked errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.db import transaction

from gql_observer import issue_token
from gql_observer.testing import GraphQLTransportWSCommunicator, settle
from schema_examples.notes.models import Note
from tests.support.clients import PONG, connect, next_after_ping
from tests.support.notes import (
    NOT_FOUND,
    NOTE_FIELDS,
    SUBSCRIBE_NOTE,
    UNAUTHORIZED,
    edit_note,
    note_envelope,
    subscribe_note,
)
from tests.support.users import barrier, login_session, subscribe_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def note(users: list[User]) -> Note:
    return Note.objects.create(owner=users[0], title="secret title", body="secret body")


# -- authentication ---------------------------------------------------------


async def test_a_token_in_connection_init_authenticates_the_connection(
    application: Any, users: list[User], note: Note
) -> None:
    client = await connect(application, users[0])
    op = await subscribe_note(client, note)
    await edit_note(note, title="new title")
    assert await client.next(op) == note_envelope(
        "update", 200, {"id": str(note.pk), "title": "new title", "body": "secret body"}
    )
    await client.disconnect()


@pytest.mark.parametrize(
    "payload", [{"token": "garbage"}, {"authToken": "a:b:c"}, {"Authorization": "Bearer nope"}]
)
async def test_a_bad_token_closes_4403(
    application: Any, users: list[User], payload: dict[str, str]
) -> None:
    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    await client.send({"type": "connection_init", "payload": payload})
    assert await client.receive_close() == (4403, "Forbidden")


async def test_an_expired_token_closes_4403(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    token = await database_sync_to_async(issue_token)(users[0])
    observer_settings(TOKEN_MAX_AGE=-1)
    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    await client.send({"type": "connection_init", "payload": {"token": token}})
    assert await client.receive_close() == (4403, "Forbidden")


async def test_a_token_dies_when_the_password_changes(application: Any, users: list[User]) -> None:
    token = await database_sync_to_async(issue_token)(users[0])

    @database_sync_to_async
    def change_password() -> None:
        user = User.objects.get(pk=1)
        user.set_password("another")
        user.save()

    await change_password()
    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    await client.send({"type": "connection_init", "payload": {"token": token}})
    assert await client.receive_close() == (4403, "Forbidden")


async def test_the_session_cookie_authenticates_the_connection_and_logout_ends_it(
    application: Any, users: list[User], note: Note
) -> None:
    key = await login_session(users[0])
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={key}".encode()
    client = GraphQLTransportWSCommunicator(application, headers=[(b"cookie", cookie)])
    await client.connect()
    await client.init()
    op = await subscribe_note(client, note)
    await database_sync_to_async(SessionStore(key).delete)()  # logged out elsewhere
    await edit_note(note, title="after logout")
    assert await client.next(op) == note_envelope("update", 401, None, UNAUTHORIZED)
    await client.expect_complete(op)
    await client.disconnect()


# -- visibility -----------------------------------------------------------------


async def test_anonymous_gets_401_and_no_field(application: Any, note: Note) -> None:
    client = await connect(application, None)
    op = await client.subscribe(SUBSCRIBE_NOTE, {"pk": note.pk})
    assert await client.next(op) == note_envelope("subscribe_instance", 401, None, UNAUTHORIZED)
    await client.expect_complete(op)
    await client.disconnect()


async def test_another_user_gets_404_as_if_the_note_did_not_exist(
    application: Any, users: list[User], note: Note
) -> None:
    client = await connect(application, users[1])
    op = await client.subscribe(SUBSCRIBE_NOTE, {"pk": note.pk})
    assert await client.next(op) == note_envelope("subscribe_instance", 404, None, NOT_FOUND)
    await client.expect_complete(op)
    query = await client.subscribe(f"query {{ note(pk: {note.pk}) {{ {NOTE_FIELDS} }} }}")
    assert (await client.next(query))["note"]["responseStatus"] == 404
    await client.disconnect()


async def test_ownership_transferred_ends_the_old_owners_subscription_and_opens_the_new_ones(
    application: Any, users: list[User], note: Note
) -> None:
    old, new = await connect(application, users[0]), await connect(application, users[1])
    op = await subscribe_note(old, note)
    await edit_note(note, owner_id=users[1].pk, title="now yours")
    assert await old.next(op) == note_envelope("update", 404, None, NOT_FOUND)
    await old.expect_complete(op)
    await edit_note(note, title="old owner must not see this")
    # Handled before the new owner subscribes: else, on a loaded machine, its
    # event may reach the new watch after it started, as an update of its own.
    await settle()
    op_new = await subscribe_note(new, note)
    await edit_note(note, body="new body")
    assert (await new.next(op_new))["note"]["data"]["body"] == "new body"
    # The note's watch has handled both changes: the old owner's next frame is
    # the answer to a ping, it was sent nothing of either.
    assert await next_after_ping(old) == PONG
    await old.disconnect()
    await new.disconnect()


@pytest.mark.db_matrix
async def test_a_deactivated_user_gets_401_and_nothing_after(
    application: Any, users: list[User], note: Note
) -> None:
    client = await connect(application, users[0])
    op = await subscribe_note(client, note)
    # A public type on the same connection: the barrier below.
    public = await subscribe_user(client, 2, rid="public")
    await database_sync_to_async(User.objects.filter(pk=users[0].pk).update)(is_active=False)
    await edit_note(note, title="after deactivation")
    assert await client.next(op) == note_envelope("update", 401, None, UNAUTHORIZED)
    await client.expect_complete(op)
    await edit_note(note, title="still nothing")
    # A later change is the next frame: the ended subscription was sent nothing.
    await barrier(client, public, 2)
    await client.disconnect()


async def test_a_note_transferred_and_deleted_at_once_leaks_nothing_to_the_old_owner(
    application: Any, users: list[User], note: Note
) -> None:
    client = await connect(application, users[0])
    op = await subscribe_note(client, note)

    @database_sync_to_async
    def transfer_then_delete() -> None:
        with transaction.atomic():
            fresh = Note.objects.get(pk=note.pk)
            fresh.owner_id = users[1].pk
            fresh.title = "the new owner's words"
            fresh.save()
            fresh.delete()

    await transfer_then_delete()
    # The update may be seen first (re-read: gone) or merged into the delete
    # (checked against the last values: not the owner's): no data either way.
    last = (await client.next(op))["note"]
    assert last["action"] in {"update", "delete"}
    assert (last["responseStatus"], last["data"], last["errors"]) == (404, None, NOT_FOUND)
    await client.expect_complete(op)
    await client.disconnect()


async def test_the_owner_sees_the_delete_with_last_values(
    application: Any, users: list[User], note: Note
) -> None:
    client = await connect(application, users[0])
    op = await subscribe_note(client, note)
    await database_sync_to_async(Note.objects.filter(pk=note.pk).delete)()
    assert await client.next(op) == note_envelope(
        "delete", 204, {"id": str(note.pk), "title": "secret title", "body": "secret body"}
    )
    await client.expect_complete(op)
    await client.disconnect()


def test_object_permissions_go_through_user_has_perm(users: list[User]) -> None:
    from gql_observer.observe.decorator import _permission_hook

    hook = _permission_hook("notes.view_note")
    assert hook is not None
    note = Note(owner=users[0], title="t")
    superuser = User(username="root", is_superuser=True, is_active=True)
    assert hook(superuser, note) is True
    assert hook(users[1], note) is False


# -- limits and errors -----------------------------------------------------------


async def test_an_oversized_message_closes_1009_and_others_are_served(
    client: GraphQLTransportWSCommunicator, application: Any, settings: Any
) -> None:
    from gql_observer.core.conf import get_settings

    size = get_settings().max_message_size
    await client.send_raw(json.dumps({"type": "ping", "payload": {"x": "a" * size}}))
    assert await client.receive_close() == (1009, "Message too big")
    async with GraphQLTransportWSCommunicator(application) as other:
        await other.send({"type": "ping"})
        assert await other.receive() == {"type": "pong"}


async def test_a_too_deep_query_is_an_error_and_the_connection_goes_on(
    users: list[User], observer_settings: Callable[..., Any]
) -> None:
    import gql_observer
    from gql_observer.asgi import application as build

    observer_settings(MAX_QUERY_DEPTH=1)
    async with GraphQLTransportWSCommunicator(build(gql_observer.build_schema())) as client:
        op = await client.subscribe("query Deep { user(pk: 1) { data { id } } }")
        message = await client.receive()
        assert message["id"] == op
        assert message["payload"][0]["message"] == "'Deep' exceeds maximum operation depth of 1"
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}


async def test_introspection_follows_its_setting(
    users: list[User], observer_settings: Callable[..., Any]
) -> None:
    import gql_observer
    from gql_observer.asgi import application as build

    observer_settings(INTROSPECTION=False)
    async with GraphQLTransportWSCommunicator(build(gql_observer.build_schema())) as client:
        op = await client.subscribe("{ __schema { queryType { name } } }")
        message = await client.receive()
        assert message["id"] == op
        assert "introspection" in message["payload"][0]["message"].lower()


async def test_unexpected_errors_are_masked() -> None:
    from graphql import GraphQLError

    from gql_observer import ClientError
    from gql_observer.core.errors import should_mask

    assert should_mask(GraphQLError("x", original_error=RuntimeError("SELECT * FROM secret")))
    assert not should_mask(GraphQLError("x", original_error=ClientError("shown")))
    assert not should_mask(GraphQLError("syntax"))


async def test_mutations_need_a_user(application: Any, users: list[User], note: Note) -> None:
    client = await connect(application, None)
    op = await client.subscribe('mutation { createNote(title: "x") { id } }')
    message = await client.receive()
    assert message["type"] == "next" and message["id"] == op
    assert message["payload"]["errors"][0]["message"] == (
        "Authentication required: log in or send a token."
    )
    await client.disconnect()


async def test_login_gives_a_token_that_authenticates(
    application: Any, users: list[User], note: Note
) -> None:
    client = await connect(application, None)
    op = await client.subscribe('mutation { login(username: "test 1", password: "secret-1") }')
    token = (await client.next(op))["login"]
    await client.disconnect()
    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    await client.init({"Authorization": f"Bearer {token}"})
    await subscribe_note(client, note)
    await client.disconnect()


async def test_a_revoked_object_permission_ends_the_subscription(
    users: list[User], note: Note
) -> None:
    import strawberry_django
    from django.contrib.auth.models import Permission

    import gql_observer
    from gql_observer.asgi import application as build
    from gql_observer.observe.registry import definitions

    if not any(d.field_name == "guardedNote" for d in definitions()):

        @gql_observer.observe(Note, name="guardedNote", permission="notes.view_note")
        @strawberry_django.type(Note, fields=["id", "title"], name="GuardedNoteType")
        class GuardedNoteType:
            pass

    @database_sync_to_async
    def grant(user: User, granted: bool) -> None:
        permission = Permission.objects.get(codename="view_note")
        if granted:
            user.user_permissions.add(permission)
        else:
            user.user_permissions.remove(permission)

    await grant(users[1], True)
    client = GraphQLTransportWSCommunicator(build(gql_observer.build_schema()))
    await client.connect()
    await client.init({"token": await database_sync_to_async(issue_token)(users[1])})
    query = (
        "subscription ($pk: ID!) { guardedNote(pk: $pk) { action responseStatus data { title } } }"
    )
    op = await client.subscribe(query, {"pk": note.pk})
    assert await client.next(op) == {
        "guardedNote": {"action": "subscribe_instance", "responseStatus": 201, "data": None}
    }
    await edit_note(note, title="visible")
    assert await client.next(op) == {
        "guardedNote": {"action": "update", "responseStatus": 200, "data": {"title": "visible"}}
    }
    await grant(users[1], False)
    await edit_note(note, title="revoked")
    assert await client.next(op) == {
        "guardedNote": {"action": "update", "responseStatus": 404, "data": None}
    }
    await client.expect_complete(op)
    await client.disconnect()


async def test_a_bearer_token_authenticates_http_and_a_bad_one_answers_401(
    application: Any, users: list[User], note: Note
) -> None:
    from channels.testing import HttpCommunicator

    async def post(authorization: str) -> Any:
        body = json.dumps(
            {"query": f"{{ note(pk: {note.pk}) {{ responseStatus data {{ title }} }} }}"}
        )
        communicator = HttpCommunicator(
            application,
            "POST",
            "/graphql/",
            body=body.encode(),
            headers=[
                (b"host", b"testserver"),
                (b"content-type", b"application/json"),
                (b"authorization", authorization.encode()),
            ],
        )
        return await communicator.get_response(timeout=5)

    token = await database_sync_to_async(issue_token)(users[0])
    ok = await post(f"Bearer {token}")
    assert json.loads(ok["body"]) == {
        "data": {"note": {"responseStatus": 200, "data": {"title": "secret title"}}}
    }
    other = await post(f"Bearer {await database_sync_to_async(issue_token)(users[1])}")
    assert json.loads(other["body"])["data"]["note"] == {"responseStatus": 404, "data": None}
    bad = await post("Bearer forged")
    assert bad["status"] == 401


async def test_a_password_change_ends_a_token_subscription(
    application: Any, users: list[User], note: Note
) -> None:
    client = await connect(application, users[0])
    op = await subscribe_note(client, note)

    @database_sync_to_async
    def change_password() -> None:
        user = User.objects.get(pk=users[0].pk)
        user.set_password("changed")
        user.save()

    await change_password()
    await edit_note(note, title="after the password change")
    assert await client.next(op) == note_envelope("update", 401, None, UNAUTHORIZED)
    await client.expect_complete(op)
    await client.disconnect()
