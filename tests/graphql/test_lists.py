"""The list fields (``users``, ``notes``): the Query of one page of the viewer's
rows, and the Subscription of rows entering, changing in and leaving the
viewer's set, through graphql-transport-ws on the real ASGI app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.db import transaction

from gql_observer.changes.groups import model_group
from gql_observer.testing import GraphQLTransportWSCommunicator
from schema_examples.notes.models import Note
from tests.support import runtime as live
from tests.support.clients import connect, library_queries
from tests.support.lists import (
    SUBSCRIBE_NOTES,
    SUBSCRIBE_USERS,
    list_notes,
    list_users,
    row,
    subscribe_notes,
    subscribe_users,
)
from tests.support.users import save_user
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db_matrix]

LIVE = {"username": {"startsWith": "live-"}}


def user(pk: Any, username: str, email: str | None = None) -> dict[str, Any]:
    return {
        "id": str(pk),
        "username": username,
        "email": f"{pk}@example.com" if email is None else email,
    }


@database_sync_to_async
def make_user(username: str, email: str = "") -> int:
    return int(User.objects.create(username=username, email=email).pk)


@database_sync_to_async
def delete_user(pk: int) -> None:
    User.objects.get(pk=pk).delete()


@database_sync_to_async
def make_note(owner: User, title: str) -> Note:
    return Note.objects.create(owner=owner, title=title, body="")


@database_sync_to_async
def edit_note(pk: int, **changes: Any) -> None:
    note = Note.objects.get(pk=pk)
    for name, value in changes.items():
        setattr(note, name, value)
    note.save()


# -- the Query -----------------------------------------------------------------


async def test_the_query_lists_matching_rows_ordered_by_pk(
    client: GraphQLTransportWSCommunicator,
) -> None:
    b = await make_user("live-b", "b@x.org")
    a = await make_user("live-a", "a@x.org")
    await make_user("dead-c")
    answer = await list_users(client, LIVE, rid=1700000000000)
    assert answer == {
        "action": "list",
        "errors": [],
        "responseStatus": 200,
        "requestId": 1700000000000,
        "data": [user(b, "live-b", "b@x.org"), user(a, "live-a", "a@x.org")],
    }
    everyone = await list_users(client)
    assert [u["id"] for u in everyone["data"]] == ["1", "2", "3", str(b), str(a), str(a + 1)]


async def test_the_query_pages_with_offset_and_limit(
    client: GraphQLTransportWSCommunicator,
) -> None:
    answer = await list_users(client, None, {"offset": 1, "limit": 1})
    assert answer["data"] == [user(2, "test 2")]
    assert (await list_users(client, None, {"offset": 3}))["data"] == []
    assert (await list_users(client, None, {"limit": 0}))["data"] == []


async def test_the_page_size_has_a_default_and_a_maximum(
    client: GraphQLTransportWSCommunicator, observer_settings: Callable[..., Any]
) -> None:
    for n in range(4):
        await make_user(f"more-{n}")
    observer_settings(LIST_PAGE_SIZE=2, LIST_MAX_PAGE_SIZE=5)
    assert [u["id"] for u in (await list_users(client))["data"]] == ["1", "2"]
    capped = await list_users(client, None, {"limit": 1000})
    assert len(capped["data"]) == 5
    assert len((await list_users(client, None, {"limit": -1}))["data"]) == 5


async def test_a_negative_offset_answers_400(client: GraphQLTransportWSCommunicator) -> None:
    answer = await list_users(client, None, {"offset": -1})
    assert answer == {
        "action": "list",
        "errors": ["pagination.offset must be 0 or more, not -1."],
        "responseStatus": 400,
        "requestId": 1,
        "data": [],
    }


async def test_a_filter_value_the_field_cannot_hold_answers_400_and_serves_on(
    client: GraphQLTransportWSCommunicator,
) -> None:
    answer = await list_users(client, {"id": {"exact": "not a number"}})
    assert answer["responseStatus"] == 400
    assert answer["data"] == []
    assert answer["errors"][0].startswith("Invalid filters:")
    op = await client.subscribe(SUBSCRIBE_USERS, {"filters": {"id": {"exact": "x"}}, "rid": 2})
    frame = (await client.next(op))["users"]
    assert (frame["action"], frame["responseStatus"], frame["pk"], frame["data"]) == (
        "subscribe_list",
        400,
        None,
        None,
    )
    await client.expect_complete(op)
    assert (await list_users(client, {"id": {"exact": "2"}}))["data"] == [user(2, "test 2")]


#: A backtracking regular expression, anywhere in a filter; the test first writes
#: a row that takes Python's ``re`` seconds to refuse (each ``a`` more doubles it).
BACKTRACKING = "^(a+)+$"
REGEX_FILTERS = [
    {"username": {"regex": BACKTRACKING}},
    {"email": {"iRegex": BACKTRACKING}},
    {"id": {"exact": "1"}, "OR": {"NOT": {"username": {"regex": BACKTRACKING}}}},
]


@pytest.mark.parametrize("filters", REGEX_FILTERS)
async def test_a_regular_expression_is_refused_on_sqlite_and_served_on_postgresql(
    client: GraphQLTransportWSCommunicator,
    users: list[User],
    observer_settings: Callable[..., Any],
    filters: dict[str, Any],
) -> None:
    """On SQLite Django runs ``REGEXP`` in Python, in the server process, under
    its interpreter lock: one backtracking pattern against a row the client
    wrote would hold every connection. It is refused (400) before any read,
    unless ``LIST_REGEX_ON_SQLITE``; PostgreSQL runs regular expressions itself
    and serves them."""
    from django.db import connection

    await make_user("a" * 24 + "!", "a" * 24 + "!@x")
    served = connection.vendor != "sqlite"
    answer = await list_users(client, filters)
    op = await client.subscribe(SUBSCRIBE_USERS, {"filters": filters, "rid": 2})
    first = (await client.next(op))["users"]
    if served:
        assert answer["responseStatus"] == 200, answer
        assert (first["action"], first["responseStatus"]) == ("subscribe_list", 201)
        await client.complete(op)
    else:
        assert answer == {
            "action": "list",
            "errors": ["Invalid filters: regular expressions are not served here."],
            "responseStatus": 400,
            "requestId": 1,
            "data": [],
        }
        assert (first["action"], first["responseStatus"], first["errors"]) == (
            "subscribe_list",
            400,
            ["Invalid filters: regular expressions are not served here."],
        )
        await client.expect_complete(op)
        # Served on, as before; and where every client is trusted, served.
        assert (await list_users(client, {"id": {"exact": "2"}}))["data"] == [user(2, "test 2")]
        observer_settings(LIST_REGEX_ON_SQLITE=True)
        harmless = {"username": {"regex": "^test [12]$"}}
        assert [u["id"] for u in (await list_users(client, harmless))["data"]] == ["1", "2"]


NUL = "PostgreSQL text fields cannot contain NUL"


@pytest.mark.parametrize(
    ("filters", "on_sqlite", "on_postgresql"),
    [
        # PostgreSQL's text cannot hold a NUL; SQLite's can (and none matches).
        ({"email": {"exact": "a\u0000b"}}, None, NUL),
        ({"username": {"startsWith": "a\u0000"}}, None, NUL),
        # A regular expression that does not compile (served on SQLite by the setting).
        ({"username": {"iRegex": "("}}, "does not compile", "invalid regular expression"),
    ],
)
async def test_a_filter_the_database_cannot_run_answers_400_not_an_error(
    client: GraphQLTransportWSCommunicator,
    observer_settings: Callable[..., Any],
    filters: dict[str, Any],
    on_sqlite: str | None,
    on_postgresql: str,
) -> None:
    """What the database refuses to run (not only what Django refuses to
    convert) is a bad filter: 400 with the database's reason, on the Query and
    on the Subscription, never a masked error, and the client is served on."""
    from django.db import connection

    observer_settings(LIST_REGEX_ON_SQLITE=True)
    reason = on_sqlite if connection.vendor == "sqlite" else on_postgresql
    answer = await list_users(client, filters)
    op = await client.subscribe(SUBSCRIBE_USERS, {"filters": filters, "rid": 2})
    first = (await client.next(op))["users"]
    if reason is None:
        assert (answer["responseStatus"], answer["data"]) == (200, [])
        assert (first["action"], first["responseStatus"]) == ("subscribe_list", 201)
        await client.complete(op)
    else:
        assert answer["responseStatus"] == 400 and answer["data"] == [], answer
        assert answer["errors"][0].startswith("Invalid filters: ") and reason in answer["errors"][0]
        assert (first["responseStatus"], first["errors"]) == (400, answer["errors"])
        await client.expect_complete(op)
    assert (await list_users(client, {"id": {"exact": "2"}}))["data"] == [user(2, "test 2")]


async def test_owner_only_notes_list_only_the_viewers_own(
    application: Any, users: list[User]
) -> None:
    mine = [await make_note(users[0], t) for t in ("plan a", "other", "plan b")]
    await make_note(users[1], "plan theirs")
    client = await connect(application, users[0])
    answer = await list_notes(client, {"title": {"startsWith": "plan"}})
    assert answer["data"] == [
        {"id": str(mine[0].pk), "title": "plan a", "body": ""},
        {"id": str(mine[2].pk), "title": "plan b", "body": ""},
    ]
    # The offset counts the viewer's own rows only.
    page = await list_notes(client, None, {"offset": 1, "limit": 1})
    assert page["data"] == [{"id": str(mine[1].pk), "title": "other", "body": ""}]
    await client.disconnect()


async def test_login_required_lists_answer_401_to_anonymous(
    client: GraphQLTransportWSCommunicator, users: list[User]
) -> None:
    await make_note(users[0], "secret")
    assert await list_notes(client) == {
        "action": "list",
        "errors": ["Authentication required."],
        "responseStatus": 401,
        "requestId": 1,
        "data": [],
    }
    op = await client.subscribe(SUBSCRIBE_NOTES, {})
    assert await client.next(op) == row(
        "notes", "subscribe_list", 401, None, None, errors=["Authentication required."]
    )
    await client.expect_complete(op)


# -- the Subscription ----------------------------------------------------------


async def test_rows_enter_change_leave_re_enter_and_are_deleted(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_users(client, LIVE, rid="r")
    pk = await make_user("live-1")
    assert await client.next(op) == row("users", "create", 201, pk, user(pk, "live-1", ""), "r")
    await save_user(pk, email="e@x.org")
    assert await client.next(op) == row(
        "users", "update", 200, pk, user(pk, "live-1", "e@x.org"), "r"
    )
    await save_user(pk, username="gone-1")  # out of the filter
    assert await client.next(op) == row("users", "delete", 204, pk, None, "r")
    await save_user(pk, username="live-again")  # into it
    assert await client.next(op) == row(
        "users", "create", 201, pk, user(pk, "live-again", "e@x.org"), "r"
    )
    await delete_user(pk)
    assert await client.next(op) == row(
        "users", "delete", 204, pk, user(pk, "live-again", "e@x.org"), "r"
    )


async def test_an_update_into_the_filter_is_a_create(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_users(client, LIVE)
    await save_user(2, username="live-two")
    assert await client.next(op) == row("users", "create", 201, 2, user(2, "live-two"))


async def test_rows_outside_the_set_send_nothing(client: GraphQLTransportWSCommunicator) -> None:
    op = await subscribe_users(client, LIVE)
    outside = await make_user("dead-1")
    await save_user(outside, email="still@dead.org")
    await save_user(1, email="one@x.org")
    await delete_user(outside)
    # Barrier: a change that must arrive is the next frame.
    await save_user(3, username="live-3")
    assert await client.next(op) == row("users", "create", 201, 3, user(3, "live-3"))


async def test_a_rolled_back_create_sends_nothing(client: GraphQLTransportWSCommunicator) -> None:
    op = await subscribe_users(client, LIVE)

    @database_sync_to_async
    def create_then_roll_back() -> None:
        with transaction.atomic():
            User.objects.create(username="live-never")
            transaction.set_rollback(True)

    await create_then_roll_back()
    pk = await make_user("live-kept")
    assert await client.next(op) == row("users", "create", 201, pk, user(pk, "live-kept", ""))


async def test_a_row_moving_between_two_filters_is_a_delete_and_a_create(
    client: GraphQLTransportWSCommunicator,
) -> None:
    live = await subscribe_users(client, LIVE, rid="live")
    tests = await subscribe_users(client, {"username": {"startsWith": "test"}}, rid="test")
    await save_user(1, username="live-1")
    first, second = await client.receive(), await client.receive()
    by_op = {first["id"]: first["payload"]["data"], second["id"]: second["payload"]["data"]}
    assert by_op == {
        live: row("users", "create", 201, 1, user(1, "live-1"), "live"),
        tests: row("users", "delete", 204, 1, None, "test"),
    }


async def test_notes_transfers_are_create_and_delete_and_others_notes_send_nothing(
    application: Any, users: list[User]
) -> None:
    first, second = users[0], users[1]
    kept = await make_note(first, "mine")
    given = await make_note(first, "to give")
    theirs = await make_note(second, "theirs")
    me = await connect(application, first)
    op = await subscribe_notes(me)
    await edit_note(theirs.pk, title="theirs, edited")  # not in my set: nothing
    await edit_note(given.pk, owner=second)  # transfer away
    assert await me.next(op) == row("notes", "delete", 204, given.pk, None)
    await edit_note(theirs.pk, owner=first)  # transfer to me
    assert await me.next(op) == row(
        "notes",
        "create",
        201,
        theirs.pk,
        {"id": str(theirs.pk), "title": "theirs, edited", "body": ""},
    )
    await database_sync_to_async(Note.objects.filter(pk=given.pk).delete)()  # not mine now
    await edit_note(kept.pk, title="mine, edited")  # barrier
    assert await me.next(op) == row(
        "notes", "update", 200, kept.pk, {"id": str(kept.pk), "title": "mine, edited", "body": ""}
    )
    await database_sync_to_async(Note.objects.filter(pk=kept.pk).delete)()
    assert await me.next(op) == row(
        "notes", "delete", 204, kept.pk, {"id": str(kept.pk), "title": "mine, edited", "body": ""}
    )
    await me.disconnect()


@pytest.mark.redis
async def test_changes_reach_list_subscribers_through_redis(
    application: Any, users: list[User], redis_layer: str
) -> None:
    # DELIVER_IN_PROCESS is off: the saves come back through channels_redis.
    client = await connect(application)
    op = await subscribe_users(client, LIVE)
    pk = await make_user("live-redis")
    assert await client.next(op) == row("users", "create", 201, pk, user(pk, "live-redis", ""))
    await save_user(pk, username="off")
    assert await client.next(op) == row("users", "delete", 204, pk, None)
    await client.disconnect()


# -- sharing -------------------------------------------------------------------


def group_filter(k: int) -> dict[str, Any]:
    """Usernames starting ``g<k>-``, or the e-mail every group shares."""
    return {"username": {"startsWith": f"g{k}-"}, "OR": {"email": {"exact": "all@x.org"}}}


async def test_one_read_serves_every_list_subscriber_of_a_change_whatever_their_filters(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(SUBSCRIBE_RATE=10_000)
    clients = [await connect(application) for _ in range(20)]
    ops = [await subscribe_users(c, group_filter(n % 10), rid=n) for n, c in enumerate(clients)]
    with library_queries() as queries:
        await save_user(1, username="g3-one")
        for n in (3, 13):
            assert await clients[n].next(ops[n]) == row(
                "users", "create", 201, 1, user(1, "g3-one"), n
            )
    # One query for the twenty subscribers and their ten filters.
    assert len(queries) == 1, queries.statements
    # Barrier: a change every filter matches is the next frame of each; the
    # others never heard of user 1.
    await save_user(2, email="all@x.org")
    for n, (client, op) in enumerate(zip(clients, ops, strict=True)):
        assert await client.next(op) == row(
            "users", "create", 201, 2, user(2, "test 2", "all@x.org"), n
        )
        await client.disconnect()


async def test_a_filter_that_changes_the_queryset_is_read_on_its_own_and_still_right(
    client: GraphQLTransportWSCommunicator,
) -> None:
    distinct = await subscribe_users(client, {**LIVE, "DISTINCT": True}, rid="distinct")
    plain = await subscribe_users(client, LIVE, rid="plain")
    pk = await make_user("live-d")
    frames = [await client.receive(), await client.receive()]
    by_op = {f["id"]: f["payload"]["data"] for f in frames}
    assert by_op == {
        distinct: row("users", "create", 201, pk, user(pk, "live-d", ""), "distinct"),
        plain: row("users", "create", 201, pk, user(pk, "live-d", ""), "plain"),
    }


async def test_each_viewer_gets_its_own_set_from_one_shared_read(
    application: Any, users: list[User]
) -> None:
    note = await make_note(users[0], "passed on")
    first, second = await connect(application, users[0]), await connect(application, users[1])
    mine, theirs = await subscribe_notes(first), await subscribe_notes(second)
    with library_queries() as queries:
        await edit_note(note.pk, owner=users[1])
        assert await first.next(mine) == row("notes", "delete", 204, note.pk, None)
        assert await second.next(theirs) == row(
            "notes", "create", 201, note.pk, {"id": str(note.pk), "title": "passed on", "body": ""}
        )
    # The note once (no get_queryset: one row scope), both viewers checked once.
    assert len(queries) == 2, queries.statements
    await first.disconnect()
    await second.disconnect()


async def test_a_list_subscription_that_ends_leaves_nothing_behind(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_users(client, LIVE)
    hub = live.hub()
    family = model_group("gqlobs", "auth.user")
    assert family in hub.groups and family in hub.joined
    await client.complete(op)
    await wait_until(lambda: family not in hub.joined, 5, "the model's group left")
    assert hub.stats()["subscriptions"] == 0
    assert hub.groups == {}
    # The connection goes on serving.
    assert (await list_users(client, LIVE))["data"] == []


async def test_subscribers_of_one_filter_share_one_watch_and_a_late_one_gets_later_changes(
    application: Any, users: list[User]
) -> None:
    early, late, other = [await connect(application) for _ in range(3)]
    first = await subscribe_users(early, LIVE, rid="early")
    pk = await make_user("live-shared")
    assert await early.next(first) == row(
        "users", "create", 201, pk, user(pk, "live-shared", ""), "early"
    )
    second = await subscribe_users(late, LIVE, rid="late")
    third = await subscribe_users(other, {"username": {"startsWith": "x"}}, rid="other")
    assert len(live.list_watches()) == 2
    # The late subscriber joined a set that holds the row: its change is an update.
    await save_user(pk, email="shared@x.org")
    expected = user(pk, "live-shared", "shared@x.org")
    assert await early.next(first) == row("users", "update", 200, pk, expected, "early")
    assert await late.next(second) == row("users", "update", 200, pk, expected, "late")
    await save_user(pk, username="x-shared")
    assert await other.next(third) == row(
        "users", "create", 201, pk, user(pk, "x-shared", "shared@x.org"), "other"
    )
    for client in (early, late, other):
        await client.disconnect()
    await wait_until(lambda: not live.list_watches(), 5, "the watches closed")


async def test_legacy_graphql_ws_clients_get_the_same_list_events(
    application: Any, users: list[User]
) -> None:
    legacy = GraphQLTransportWSCommunicator(application, subprotocols=["graphql-ws"])
    await legacy.connect()
    await legacy.send({"type": "connection_init"})
    assert (await legacy.receive())["type"] == "connection_ack"
    variables = {"filters": LIVE, "rid": "old"}
    start = {
        "type": "start",
        "id": "1",
        "payload": {"query": SUBSCRIBE_USERS, "variables": variables},
    }
    await legacy.send(start)
    first = await legacy.receive()
    assert first == {
        "type": "data",
        "id": "1",
        "payload": {"data": row("users", "subscribe_list", 201, None, None, "old")},
    }
    pk = await make_user("live-legacy")
    entered = await legacy.receive()
    assert entered["payload"]["data"] == row(
        "users", "create", 201, pk, user(pk, "live-legacy", ""), "old"
    )
    await legacy.disconnect()
