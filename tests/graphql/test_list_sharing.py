"""Live list subscribers of one set share their frames' work, never what could
differ: each one gets, byte for byte, the frames strawberry sends it when it
runs alone (``COHORTS`` off: its own list watch, strawberry's own execution),
with its own ``requestId`` (a variable or a literal), its own selection, and
only the fields its own viewer may see."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.db import connection, transaction

from gql_observer.changes.groups import model_group
from gql_observer.graphql import completion
from gql_observer.graphql.list_member import ListSubscriber
from gql_observer.graphql.list_watch import ListMember
from gql_observer.testing import GraphQLTransportWSCommunicator, settle
from schema_examples.notes.models import Note
from tests.support import runtime as live
from tests.support import schema as support
from tests.support.clients import PONG, connect, next_after_ping
from tests.support.lists import SUBSCRIBE_USERS, row, subscribe_notes, subscribe_users
from tests.support.users import save_user
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db_matrix]

S = {"username": {"startsWith": "s-"}}
MEMBERS = (
    "subscription ($filters: MemberFilter, $rid: JSON) {"
    " members(filters: $filters, requestId: $rid) {"
    " action errors responseStatus requestId pk data { id username email viewer } } }"
)
#: The same list with a literal requestId, and another selection (aliases, a fragment).
LITERAL = (
    "subscription ($filters: MemberFilter) {"
    ' members(filters: $filters, requestId: {at: [1, "two"]}) {'
    " action requestId pk data { id username } } }"
)
OTHER = (
    "subscription ($filters: MemberFilter, $rid: JSON) {"
    " members(filters: $filters, requestId: $rid) { kind: action pk requestId ...Row } }"
    " fragment Row on MemberTypeRowEnvelope { data { name: username id } }"
)
SHARED = {"COHORTS": True, "PLANNED_RESULTS": True}
ALONE = {"COHORTS": False, "PLANNED_RESULTS": False}

#: (who: an index into ``users`` or None for anonymous, document, variables)
Subscriber = tuple[int | None, str, dict[str, Any]]


@pytest.fixture
def app() -> Any:
    return support.application()


async def _raw(client: GraphQLTransportWSCommunicator) -> str:
    output = await client.communicator.receive_output(client.timeout)
    assert output["type"] == "websocket.send", output
    text: str = output["text"]
    return text


async def _serve(
    app: Any,
    users: list[User],
    subscribers: list[Subscriber],
    observer_settings: Callable[..., Any],
    settings: dict[str, Any],
) -> list[list[str]]:
    """Each subscriber's frames, as sent, over a row's life in the set: it
    enters (created), changes, leaves (renamed out), comes back and is deleted;
    a barrier row that every set takes in ends each subscriber's frames. Row
    keys are named, so that two runs compare."""
    observer_settings(SUBSCRIBE_RATE=10_000, **settings)
    clients = []
    for who, document, variables in subscribers:
        client = await connect(app, None if who is None else users[who])
        await client.subscribe(document, variables)
        clients.append(client)
    frames = [[await _raw(client)] for client in clients]
    if settings["COHORTS"]:
        kinds = {type(m) for w in live.list_watches().values() for m in w.members}
        assert kinds == {ListSubscriber}
    else:
        assert len(live.list_watches()) == len(subscribers)  # each alone
    row = await database_sync_to_async(User.objects.create)(username="s-row", email="r@x.org")
    await settle()
    await save_user(row.pk, email="changed@x.org")
    await settle()
    await save_user(row.pk, username="out")
    await settle()
    await save_user(row.pk, username="s-back")
    await settle()
    await database_sync_to_async(User.objects.filter(pk=row.pk).delete)()
    await settle()
    barrier = await database_sync_to_async(User.objects.create)(username="s-zz", email="z@x.org")
    for client, sent in zip(clients, frames, strict=True):
        while f'"pk":"{barrier.pk}"' not in sent[-1]:
            sent.append(await _raw(client))
        await client.disconnect()
    await wait_until(lambda: not live.list_watches(), 5, "every list watch closed")
    await database_sync_to_async(User.objects.filter(pk=barrier.pk).delete)()
    names = {str(row.pk): "row", str(barrier.pk): "barrier"}
    key = re.compile(r'"(pk|id)":"(\d+)"')
    return [
        [key.sub(lambda m: f'"{m[1]}":"{names.get(m[2], m[2])}"', frame) for frame in sent]
        for sent in frames
    ]


async def _differential(
    app: Any,
    users: list[User],
    subscribers: list[Subscriber],
    observer_settings: Callable[..., Any],
) -> list[list[str]]:
    shared = await _serve(app, users, subscribers, observer_settings, SHARED)
    alone = await _serve(app, users, subscribers, observer_settings, ALONE)
    assert shared == alone
    return shared


async def test_members_of_one_filter_get_their_own_request_ids_variable_or_literal(
    app: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    subscribers: list[Subscriber] = [
        (0, MEMBERS, {"filters": S, "rid": 1700000000001}),
        (0, MEMBERS, {"filters": S, "rid": "second"}),
        (0, LITERAL, {"filters": S}),
        (0, MEMBERS, {"filters": S, "rid": None}),
    ]
    frames = await _differential(app, users, subscribers, observer_settings)
    assert [len(f) for f in frames] == [
        7
    ] * 4  # 201, create, update, delete, create, delete, barrier
    assert frames[0][1].startswith('{"id":"1","type":"next","payload":{"data":{"members":')
    rids = ("1700000000001", '"second"', '{"at":[1,"two"]}', "null")
    for sent, rid in zip(frames, rids, strict=True):
        assert all(f'"requestId":{rid}' in frame for frame in sent), sent
    assert '"action":"delete","errors":[],"responseStatus":204' in frames[0][3]
    assert '"pk":"row","data":null' in frames[0][3]  # left the filter: nothing of it


async def test_members_with_different_selections_each_get_their_own(
    app: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    subscribers: list[Subscriber] = [
        (1, OTHER, {"filters": S, "rid": "other"}),
        (1, MEMBERS, {"filters": S, "rid": "members"}),
        (1, LITERAL, {"filters": S}),
    ]
    frames = await _differential(app, users, subscribers, observer_settings)
    assert '"kind":"create","pk":"row","requestId":"other"' in frames[0][1]
    assert '"data":{"name":"s-row","id":"row"}' in frames[0][1]
    assert (
        '"data":{"id":"row","username":"s-row","email":"r@x.org","viewer":"test 2"}'
        in (frames[1][1])
    )


@pytest.mark.parametrize("anonymous_first", [True, False], ids=["anonymous first", "signed first"])
async def test_an_anonymous_and_a_signed_in_member_never_see_each_others_fields(
    app: Any, users: list[User], observer_settings: Callable[..., Any], anonymous_first: bool
) -> None:
    anonymous: Subscriber = (None, MEMBERS, {"filters": S, "rid": 1})
    signed: Subscriber = (0, MEMBERS, {"filters": S, "rid": 1})
    subscribers = [anonymous, signed] if anonymous_first else [signed, anonymous]
    frames = await _differential(app, users, subscribers, observer_settings)
    theirs, mine = (frames[0], frames[1]) if anonymous_first else (frames[1], frames[0])
    # The anonymous member gets the permission class's error and no data (email
    # is non-null); nothing of the signed-in member's view.
    assert '"errors":[{"message":"User is not authenticated"' in theirs[1]
    assert '"data":null' in theirs[1]
    for frame in theirs:
        assert "r@x.org" not in frame and "changed@x.org" not in frame
        assert "test 1" not in frame
    assert '"email":"r@x.org","viewer":"test 1"' in mine[1]
    # A delete carries the last values, and the same rules.
    assert '"email":"changed@x.org","viewer":"test 1"' in mine[5]


async def _builds_for_a_create(clients: list[Any], ops: list[str], username: str) -> int:
    """Create a user every client's subscription ``n`` (its ``requestId``) gets as
    ``create``; how many frames were built for them all."""
    before = completion.counts["planned"]
    pk = (await database_sync_to_async(User.objects.create)(username=username)).pk
    for n, (client, op) in enumerate(zip(clients, ops, strict=True)):
        data = {"id": str(pk), "username": username, "email": ""}
        assert await client.next(op) == row("users", "create", 201, pk, data, n)
    return int(completion.counts["planned"] - before)


async def test_one_frame_is_built_for_every_member_of_a_shape(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(SUBSCRIBE_RATE=10_000)
    clients = [await connect(application) for _ in range(5)]
    ops = []
    for n, client in enumerate(clients):
        ops.append(await client.subscribe(SUBSCRIBE_USERS, {"filters": S, "rid": n}))
        assert await client.next(ops[-1]) == row("users", "subscribe_list", 201, None, None, n)
    (watch,) = live.list_watches().values()
    assert {type(m) for m in watch.members} == {ListSubscriber}
    assert await _builds_for_a_create(clients, ops, "s-one") == 1  # five requestIds
    for client in clients:
        await client.disconnect()


async def test_a_row_that_enters_several_sets_of_one_group_is_built_once_for_all(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(SUBSCRIBE_RATE=10_000)
    filters = [S, {"username": {"contains": "-both"}}, {"email": {"exact": ""}}]
    clients = [await connect(application) for _ in filters]
    ops = [await subscribe_users(clients[n], f, rid=n) for n, f in enumerate(filters)]
    assert len(live.list_watches()) == 3 and len(live.list_groups()) == 1
    assert await _builds_for_a_create(clients, ops, "s-both") == 1  # three sets
    for client in clients:
        await client.disconnect()


async def test_with_cohorts_off_each_list_subscription_runs_alone_through_strawberry(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(COHORTS=False)
    clients = [await connect(application) for _ in range(2)]
    ops = [
        await c.subscribe(SUBSCRIBE_USERS, {"filters": S, "rid": n}) for n, c in enumerate(clients)
    ]
    for n, (client, op) in enumerate(zip(clients, ops, strict=True)):
        assert await client.next(op) == row("users", "subscribe_list", 201, None, None, n)
    watches = list(live.list_watches().values())
    assert len(watches) == 2
    assert all(type(m) is ListMember for w in watches for m in w.members)
    for client in clients:
        await client.disconnect()


@pytest.mark.parametrize("cohorts", [True, False], ids=["shared", "alone"])
async def test_a_member_no_longer_who_they_were_gets_401_and_complete(
    application: Any, users: list[User], observer_settings: Callable[..., Any], cohorts: bool
) -> None:
    observer_settings(COHORTS=cohorts)
    note = await database_sync_to_async(Note.objects.create)(owner=users[0], title="n", body="")
    client = await connect(application, users[0])
    op = await subscribe_notes(client)
    await database_sync_to_async(User.objects.filter(pk=users[0].pk).update)(is_active=False)
    await database_sync_to_async(lambda: Note.objects.get(pk=note.pk).save())()
    assert await client.next(op) == row(
        "notes", "update", 401, None, None, errors=["Authentication required."]
    )
    await client.expect_complete(op)
    await wait_until(lambda: not live.list_watches(), 5, "the list watch closed")
    await client.disconnect()


async def test_the_filters_of_one_list_share_one_group_one_viewers_notes_another(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    # One group per type and (for a type that depends on the viewer) viewer:
    # it takes each change once for all its filters.
    observer_settings(SUBSCRIBE_RATE=10_000)
    clients = [await connect(application) for _ in range(6)]
    for n, client in enumerate(clients):
        await subscribe_users(client, {"username": {"startsWith": f"g{n % 3}-"}}, rid=n)
    owners = [await connect(application, users[n]) for n in (0, 1)]
    for client in owners:
        await subscribe_notes(client)
        await subscribe_notes(client, {"title": {"exact": "t"}})
    groups = live.list_groups()
    assert sorted(len(g.watches) for g in groups.values()) == [2, 2, 3]
    (everybody,) = [g for g in groups.values() if g.definition.list_name == "users"]
    assert everybody.key == ("users", None, False)
    hub = live.hub()
    family = model_group("gqlobs", "auth.user")
    assert len(hub.groups[family]) == 1  # one hub subscription for three filters
    for client in [*clients, *owners]:
        await client.disconnect()
    await wait_until(lambda: not live.list_groups(), 5, "every list group closed")


async def test_with_cohorts_off_each_list_subscription_has_a_group_of_its_own(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(COHORTS=False)
    clients = [await connect(application) for _ in range(2)]
    for n, client in enumerate(clients):
        await subscribe_users(client, S, rid=n)
    assert len(live.list_groups()) == 2
    assert all(len(g.watches) == 1 for g in live.list_groups().values())
    for client in clients:
        await client.disconnect()
    await wait_until(lambda: not live.list_groups(), 5, "every list group closed")


async def test_a_watch_that_starts_while_its_group_takes_changes_decides_them_after_its_read(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    # The group takes a change while a new watch of it still waits to read its
    # set: the change waits in the watch's backlog and is decided for it once
    # the set is read. Django's sync thread is held so that the order is sure.
    observer_settings(SUBSCRIBE_RATE=10_000)
    early, late = await connect(application), await connect(application)
    first = await subscribe_users(early, S, rid="early")
    (early_watch,) = live.list_watches().values()
    gate = threading.Event()
    held = asyncio.ensure_future(sync_to_async(gate.wait, thread_sensitive=True)())
    try:
        second = await late.subscribe(SUBSCRIBE_USERS, {"filters": T, "rid": "late"})
        await wait_until(lambda: len(live.list_watches()) == 2, 5, "the late watch joined")
        (watch,) = [w for w in live.list_watches().values() if w is not early_watch]
        assert not watch.following
        writer = threading.Thread(target=_create, args=("t-during", "s-during"))
        writer.start()
        await asyncio.get_running_loop().run_in_executor(None, writer.join)
        await wait_until(lambda: bool(watch.backlog), 5, "the change waits for the late watch")
    finally:
        gate.set()
        await held
    pks = await database_sync_to_async(
        lambda: dict(
            User.objects.filter(username__contains="-during").values_list("username", "pk")
        )
    )()
    # Its set was read after the commit: the row is in it, so the change is an update.
    assert await late.next(second) == row("users", "subscribe_list", 201, None, None, "late")
    t_row = {"id": str(pks["t-during"]), "username": "t-during", "email": ""}
    assert await late.next(second) == row("users", "update", 200, pks["t-during"], t_row, "late")
    s_row = {"id": str(pks["s-during"]), "username": "s-during", "email": ""}
    assert await early.next(first) == row("users", "create", 201, pks["s-during"], s_row, "early")
    assert watch.following and not watch.backlog
    # From now on the group decides for it with the others.
    await save_user(pks["t-during"], email="after@x.org")
    assert await late.next(second) == row(
        "users", "update", 200, pks["t-during"], {**t_row, "email": "after@x.org"}, "late"
    )
    assert await next_after_ping(late) == PONG and await next_after_ping(early) == PONG
    for client in (early, late):
        await client.disconnect()


T = {"username": {"startsWith": "t-"}}


def _create(*usernames: str) -> None:
    # A writer thread of its own: Django's sync thread is held.
    with transaction.atomic():
        for username in usernames:
            User.objects.create(username=username)
    connection.close()


ME = {"me": True}


async def test_a_filter_that_reads_who_asks_is_decided_for_each_viewer(
    app: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    """``members(filters: {me: true})`` is the same filter input for everyone, but a
    filter method that reads ``info`` may mean another set for each viewer: each
    viewer's list is what the Query gives that viewer (their own row), and is
    told of their own saves only. An input that leaves the method out is
    shared by every viewer, as before."""
    observer_settings(SUBSCRIBE_RATE=10_000)
    alice, bob = await connect(app, users[0]), await connect(app, users[1])
    query = "query ($f: MemberFilter) { members(filters: $f) { data { id } } }"
    ops = []
    for n, client in enumerate((alice, bob)):
        page = await client.subscribe(query, {"f": ME})
        assert (await client.next(page))["members"]["data"] == [{"id": str(users[n].pk)}]
        await client.expect_complete(page)
        ops.append(await client.subscribe(MEMBERS, {"filters": ME, "rid": "me"}))
        assert (await client.next(ops[-1]))["members"]["action"] == "subscribe_list"
        shared = await client.subscribe(MEMBERS, {"filters": S, "rid": "s"})
        assert (await client.next(shared))["members"]["action"] == "subscribe_list"
    keys = sorted((k[0], k[1] is None, k[2]) for k in live.list_groups())
    assert keys == [("members", False, True), ("members", False, True), ("members", True, False)]
    for n, (client, op) in enumerate(zip((alice, bob), ops, strict=True)):
        await save_user(users[n].pk, email=f"me-{n}@x.org")
        got = (await client.next(op))["members"]
        assert (got["action"], got["pk"], got["data"]["email"]) == (
            "update",
            str(users[n].pk),
            f"me-{n}@x.org",
        )
        for other in (alice, bob):
            assert await next_after_ping(other) == PONG  # nobody else's row, to no one
    for client in (alice, bob):
        await client.disconnect()
