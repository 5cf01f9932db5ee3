"""The context hook (``CONTEXT_GETTER``): called per HTTP request, per websocket
operation and per pushed event, so a DataLoader made in it never serves a row
read for an earlier event; ``info.context`` answers attributes and items; a
``get_queryset`` that reads what the hook put there is per subscriber."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator
from django.contrib.auth.models import User

from gql_observer import issue_token
from gql_observer.testing import GraphQLTransportWSCommunicator
from schema_examples.notes.models import Note
from tests.support import context as support
from tests.support.clients import PONG, connect, next_after_ping
from tests.support.notes import edit_note
from tests.support.users import save_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

HOOKS = ["tests.support.context.get_context", "tests.support.context.async_get_context"]
LOADED_NOTE = "subscription ($pk: ID!) { loadedNote(pk: $pk) { action data { title ownerName } } }"
WORD_NOTE = "subscription ($pk: ID!) { wordNote(pk: $pk) { action responseStatus data { title } } }"


@pytest.fixture
def note(users: list[User]) -> Note:
    return Note.objects.create(owner=users[0], title="alpha beta", body="")


@pytest.mark.parametrize("hook", HOOKS)
async def test_the_hook_shapes_the_context_of_each_http_request(
    hook: str, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(CONTEXT_GETTER=hook)
    token = await database_sync_to_async(issue_token)(users[0])
    before = support.CALLS["http"]
    for _ in range(2):
        http = HttpCommunicator(
            support.application(),
            "POST",
            "/graphql/",
            body=json.dumps({"query": "{ contextSeen }"}).encode(),
            headers=[
                (b"host", b"testserver"),
                (b"content-type", b"application/json"),
                (b"authorization", f"Bearer {token}".encode()),
            ],
        )
        response = await http.get_response()
        assert json.loads(response["body"]) == {
            "data": {"contextSeen": "ChannelsRequest||True|test 1"}
        }
    assert support.CALLS["http"] - before == 2


@pytest.mark.parametrize("hook", HOOKS)
async def test_the_hook_shapes_the_context_of_each_websocket_operation(
    hook: str, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(CONTEXT_GETTER=hook)
    client = await connect(support.application(), users[0], {"word": "alpha"})
    before = support.CALLS["ws"]
    for _ in range(2):
        op = await client.subscribe("{ contextSeen }")
        assert await client.next(op) == {"contextSeen": "TransportWSConnection|alpha|True|test 1"}
        await client.expect_complete(op)
    assert support.CALLS["ws"] - before == 2
    await client.disconnect()


@pytest.mark.parametrize("cohorts", [True, False], ids=["watch", "alone"])
@pytest.mark.parametrize("hook", HOOKS)
async def test_a_dataloader_never_serves_a_row_of_an_earlier_event(
    hook: str, cohorts: bool, note: Note, observer_settings: Callable[..., Any]
) -> None:
    observer_settings(CONTEXT_GETTER=hook, COHORTS=cohorts)
    client = await connect(support.application())
    op = await client.subscribe(LOADED_NOTE, {"pk": note.pk})
    created = await client.next(op)
    assert created["loadedNote"]["action"] == "subscribe_instance"
    await edit_note(note, title="first")
    first = await client.next(op)
    assert first["loadedNote"]["data"] == {"title": "first", "ownerName": "test 1"}
    # The owner is renamed (no event of the note), then the note changes: the
    # next event's loader reads the owner again.
    await save_user(1, username="renamed owner")
    await edit_note(note, title="second")
    second = await client.next(op)
    assert second["loadedNote"]["data"] == {"title": "second", "ownerName": "renamed owner"}
    await client.disconnect()


@pytest.mark.parametrize("hook", HOOKS)
async def test_each_event_of_a_subscription_of_the_users_own_gets_a_fresh_context(
    hook: str, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(CONTEXT_GETTER=hook)
    client = await connect(support.application())
    op = await client.subscribe("subscription { ticks(count: 3) { n loaders } }")
    serials = [(await client.next(op))["ticks"]["loaders"] for _ in range(3)]
    await client.expect_complete(op)
    assert len(set(serials)) == 3, serials
    await client.disconnect()


@pytest.mark.parametrize("cohorts", [True, False], ids=["watch", "alone"])
async def test_a_get_queryset_that_reads_the_hooks_context_is_per_subscriber(
    cohorts: bool, note: Note, observer_settings: Callable[..., Any]
) -> None:
    # Two anonymous subscribers, one viewer: only the context tells them apart.
    observer_settings(CONTEXT_GETTER=HOOKS[0], COHORTS=cohorts)
    alpha = await connect(support.application(), params={"word": "alpha"})
    beta = await connect(support.application(), params={"word": "beta"})
    ops = []
    for client in (alpha, beta):
        op = await client.subscribe(WORD_NOTE, {"pk": note.pk})
        assert (await client.next(op))["wordNote"]["responseStatus"] == 201
        ops.append(op)
    await edit_note(note, title="alpha only")
    assert await alpha.next(ops[0]) == {
        "wordNote": {"action": "update", "responseStatus": 200, "data": {"title": "alpha only"}}
    }
    assert await beta.next(ops[1]) == {
        "wordNote": {"action": "update", "responseStatus": 404, "data": None}
    }
    await beta.expect_complete(ops[1])
    await alpha.disconnect()
    await beta.disconnect()


async def test_a_hook_that_answers_something_else_fails_the_operation_or_request_only(
    users: list[User], observer_settings: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    observer_settings(CONTEXT_GETTER="tests.support.context.bad_get_context")
    client = GraphQLTransportWSCommunicator(support.application())
    await client.connect()
    await client.init()
    await client.subscribe("{ contextSeen }", id="q")
    error = await client.receive()
    assert error == {"id": "q", "type": "error", "payload": [{"message": "Unexpected error."}]}
    assert "return None" in caplog.text  # the log says how to fix the hook
    assert await next_after_ping(client) == PONG
    await client.disconnect()
    http = HttpCommunicator(
        support.application(),
        "POST",
        "/graphql/",
        body=json.dumps({"query": "{ contextSeen }"}).encode(),
        headers=[(b"host", b"testserver"), (b"content-type", b"application/json")],
    )
    response = await http.get_response()
    assert (response["status"], response["body"]) == (500, b"Internal Server Error")
