"""Work per change, on the traffic real clients send (each subscriber its own
``requestId``, many viewers): one read of the instance, one check of the viewers
where the type depends on them, one shared result per distinct selection, one
channel-layer message per process."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

import gql_observer
from gql_observer.core.collector import collector
from gql_observer.graphql import completion, reads, results, watch
from gql_observer.graphql.member import Member
from gql_observer.testing import GraphQLTransportWSCommunicator, settle
from schema_examples.notes.models import Note
from tests.support import runtime as live
from tests.support import schema as support
from tests.support.clients import barrier_value, connect, library_queries, next_is_update
from tests.support.users import (
    SUBSCRIBE_USER,
    barrier,
    save_user,
    subscribe_user,
    username_seen,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


class Work:
    """What the watch did: shared results built, per-subscriber executions."""

    def __init__(self) -> None:
        self.executed = 0

    @property
    def shared(self) -> int:
        return completion.counts["planned"]


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> Work:
    seen = Work()
    real = results.execute

    def counting(member: Member, item: Any) -> Any:
        seen.executed += 1
        return real(member, item)

    monkeypatch.setattr(results, "execute", counting)
    return seen


async def clients(application: Any, n: int) -> list[GraphQLTransportWSCommunicator]:
    return [await connect(application) for _ in range(n)]


@pytest.fixture
def many_users(transactional_db: None) -> list[User]:
    return [User.objects.create(username=f"viewer {n}") for n in range(20)]


@pytest.mark.parametrize("n", [1, 50])
async def test_one_save_costs_one_read_one_shared_result_and_one_layer_message(
    application: Any, users: list[User], work: Work, n: int, observer_settings: Callable[..., Any]
) -> None:
    observer_settings(SUBSCRIBE_RATE=10_000)
    subscribers = await clients(application, n)
    for number, client in enumerate(subscribers):
        op = await client.subscribe(SUBSCRIBE_USER, {"pk": 1, "rid": 1_700_000_000_000 + number})
        assert (await client.next(op))["user"]["responseStatus"] == 201
    assert len(live.watches()) == 1
    hub = live.hub()
    assert set(hub.layer.groups["gqlobs.auth.user.1"]) == {hub.channel}
    shared = work.shared
    with library_queries() as queries:
        await save_user(1, username="once")
        frames = [await client.receive() for client in subscribers]
    assert len(queries) == 1, queries.statements
    assert work.shared - shared == 1
    assert work.executed == 0
    for number, frame in enumerate(frames):
        user = frame["payload"]["data"]["user"]
        assert (user["requestId"], user["data"]["username"]) == (1_700_000_000_000 + number, "once")
    for client in subscribers:
        await client.disconnect()


@pytest.mark.redis
@pytest.mark.parametrize("n", [1, 50])
async def test_on_redis_a_save_in_the_server_process_is_handed_over_directly_once(
    application: Any,
    users: list[User],
    work: Work,
    n: int,
    redis_layer: str,
    observer_settings: Callable[..., Any],
) -> None:
    observer_settings(DELIVER_IN_PROCESS=True, SUBSCRIBE_RATE=10_000)
    subscribers = await clients(application, n)
    ops = []
    for number, client in enumerate(subscribers):
        op = await client.subscribe(SUBSCRIBE_USER, {"pk": 1, "rid": number})
        assert (await client.next(op))["user"]["responseStatus"] == 201
        ops.append(op)
    hub = live.hub()
    before, shared = hub.stats(), work.shared
    sent = live.published()
    with library_queries() as queries:
        for done, name in enumerate(("once", "twice"), start=1):
            await save_user(1, username=name)
            for client in subscribers:
                message = await client.receive()
                assert message["payload"]["data"]["user"]["data"]["username"] == name
            # The change also went to Redis once, for the other processes; its copy
            # came back to this process's hub, which skipped it. (Waited for before
            # the next save: a save while the first is queued would merge with it.)
            await wait_until(
                lambda done=done: hub.stats()["echoes_skipped"] - before["echoes_skipped"] == done,
                10,
                f"change {done} came back through Redis",
            )
    assert hub.stats()["delivered_here"] - before["delivered_here"] == 2
    # The publisher counts a message once Redis took it, which may be after its
    # copy came back: wait until it has sent everything.
    assert await asyncio.to_thread(gql_observer.flush, 10)
    assert live.published() - sent == 2
    assert len(queries) == 2
    assert work.shared - shared == 2
    # No second frame of either change: each subscriber's next frame is a later one.
    email = barrier_value("@example.com")
    await settle()
    await save_user(1, email=email)
    for client, op in zip(subscribers, ops, strict=True):
        await next_is_update(client, op, "user", "email", email)
        await client.disconnect()


async def test_many_token_viewers_of_a_public_type_cost_one_query(
    application: Any, many_users: list[User], work: Work
) -> None:
    subscribers = [await connect(application, user) for user in many_users]
    target = many_users[0].pk
    for number, client in enumerate(subscribers):
        op = await client.subscribe(SUBSCRIBE_USER, {"pk": target, "rid": f"r{number}"})
        await client.next(op)
    with library_queries() as queries:
        await save_user(target, email="seen@example.com")
        for client in subscribers:
            assert (await client.next("1"))["user"]["data"]["email"] == "seen@example.com"
    assert len(queries) == 1, queries.statements
    assert work.executed == 0
    for client in subscribers:
        await client.disconnect()


@database_sync_to_async
def retitle(pk: int, title: str) -> None:
    note = Note.objects.get(pk=pk)
    note.title = title
    note.save()


NOTE = (
    "subscription ($pk: ID!, $rid: JSON) {{ {field}(pk: $pk, requestId: $rid) {{ {selection} }} }}"
)


async def _open_note_subscribers(
    users: list[User],
) -> tuple[Note, list[GraphQLTransportWSCommunicator]]:
    """A note of the ``openNote`` type (a ``permission`` hook that allows
    everybody), and one subscriber of it per user, each its own requestId."""
    application = support.application()
    note = await Note.objects.acreate(owner=users[0], title="t")
    subscribers = [await connect(application, user) for user in users]
    query = NOTE.format(field="openNote", selection="responseStatus requestId data { title }")
    for number, client in enumerate(subscribers):
        await client.subscribe(query, {"pk": note.pk, "rid": number})
        assert (await client.next("1"))["openNote"]["responseStatus"] == 201
    return note, subscribers


@pytest.mark.db_matrix
async def test_a_permission_hook_costs_one_statement_for_the_row_and_every_viewer(
    many_users: list[User], work: Work
) -> None:
    note, subscribers = await _open_note_subscribers(many_users)
    with library_queries() as queries:
        await retitle(note.pk, "new")
        for client in subscribers:
            assert (await client.next("1"))["openNote"]["data"] == {"title": "new"}
    # The note, and every viewer's user (still active, same password): one
    # statement whatever the number of viewers.
    assert len(queries) == 1, queries.statements
    (statement,) = queries.statements
    assert "auth_user" in statement and "notes_note" in statement, statement
    assert "UNION ALL" in statement
    assert work.executed == 0
    for client in subscribers:
        await client.disconnect()


async def test_viewers_with_the_same_outcome_share_one_envelope(
    many_users: list[User], monkeypatch: pytest.MonkeyPatch
) -> None:
    handed: list[list[tuple[Member, Any]]] = []
    real = watch.fan_out

    async def fan_out(targets: list[tuple[Member, Any]]) -> None:
        handed.append(list(targets))
        await real(targets)

    monkeypatch.setattr(watch, "fan_out", fan_out)
    note, subscribers = await _open_note_subscribers(many_users)
    await retitle(note.pk, "seen by all")
    for client in subscribers:
        assert (await client.next("1"))["openNote"]["data"] == {"title": "seen by all"}
    gone = [user.pk for user in many_users[::2]]
    await User.objects.filter(pk__in=gone).aupdate(is_active=False)
    await retitle(note.pk, "seen by half")
    for user, client in zip(many_users, subscribers, strict=True):
        frame = (await client.next("1"))["openNote"]
        assert frame["responseStatus"] == (401 if user.pk in gone else 200)
    await settle()
    first, second = handed
    # 20 viewers, one envelope for all; then one for the 401s and one for the rest.
    assert len({member.viewer for member, _ in first}) == len(many_users)
    assert len({id(item) for _, item in first}) == 1
    by_status = {item.status: id(item) for _, item in second}
    assert len({id(item) for _, item in second}) == len(by_status) == 2
    for client in subscribers:
        await client.disconnect()


async def test_a_viewer_dependent_queryset_is_read_once_per_viewer(
    many_users: list[User], work: Work
) -> None:
    application = support.application()
    owner, others = many_users[0], many_users[1:6]
    note = await Note.objects.acreate(owner=owner, title="mine")
    query = NOTE.format(field="ownNote", selection="responseStatus data { title }")
    mine = [await connect(application, owner) for _ in range(3)]
    theirs = [await connect(application, user) for user in others]
    for client in mine:
        await client.subscribe(query, {"pk": note.pk})
        assert (await client.next("1"))["ownNote"]["responseStatus"] == 201
    for client in theirs:
        await client.subscribe(query, {"pk": note.pk})
        assert (await client.next("1"))["ownNote"]["responseStatus"] == 404
        await client.expect_complete("1")
    for client in theirs:
        await client.subscribe(query, {"pk": note.pk}, id="2")
        await client.receive()
        await client.receive()
    with library_queries() as queries:
        await retitle(note.pk, "mine")
        for client in mine:
            assert (await client.next("1"))["ownNote"]["data"] == {"title": "mine"}
    # Three connections of one viewer: one read of the note, one check of the viewer.
    assert len(queries) == 2, queries.statements
    for client in mine + theirs:
        await client.disconnect()


async def test_distinct_selections_get_one_shared_result_each(
    application: Any, users: list[User], work: Work
) -> None:
    selections = [
        "action data { id }",
        "action data { username }",
        "requestId data { email }",
        "responseStatus requestId data { id username }",
        "x: requestId y: requestId data { id }",
    ]
    subscribers = await clients(application, 10)
    for number, client in enumerate(subscribers):
        selection = selections[number % 5]
        query = f"subscription ($rid: JSON) {{ user(pk: 1, requestId: $rid) {{ {selection} }} }}"
        await client.subscribe(query, {"rid": number})
        await client.next("1")
    shared = work.shared
    with library_queries() as queries:
        await save_user(1, username="five ways")
        frames = [(await client.next("1"))["user"] for client in subscribers]
    assert work.shared - shared == 5
    assert len(queries) == 1
    assert frames[4] == {"x": 4, "y": 4, "data": {"id": "1"}}
    assert frames[9] == {"x": 9, "y": 9, "data": {"id": "1"}}
    assert frames[2] == {"requestId": 2, "data": {"email": "1@example.com"}}
    for client in subscribers:
        await client.disconnect()


async def test_documents_that_differ_only_in_a_literal_request_id_share_one_result(
    application: Any, users: list[User], work: Work
) -> None:
    subscribers = await clients(application, 6)
    for number, client in enumerate(subscribers):
        # GraphiQL's way (the seed writes requestId: 1550050 into the document).
        query = (
            f"subscription {{ user(pk: 1, requestId: {1550050 + number}) "
            "{ action requestId data { username } } }"
        )
        await client.subscribe(query)
        assert (await client.next("1"))["user"]["requestId"] == 1550050 + number
    shared = work.shared
    await save_user(1, username="literal")
    for number, client in enumerate(subscribers):
        assert await client.next("1") == {
            "user": {
                "action": "update",
                "requestId": 1550050 + number,
                "data": {"username": "literal"},
            }
        }
    assert work.shared - shared == 1
    for client in subscribers:
        await client.disconnect()


async def test_a_late_member_gets_its_own_201_then_the_changes(
    application: Any, users: list[User]
) -> None:
    first, late = await clients(application, 2)
    op = await first.subscribe(SUBSCRIBE_USER, {"pk": 1, "rid": 1})
    await first.next(op)
    op_late = await late.subscribe(SUBSCRIBE_USER, {"pk": 1, "rid": 2})
    assert (await late.next(op_late))["user"]["action"] == "subscribe_instance"
    await save_user(1, username="both")
    assert (await first.next(op))["user"]["data"]["username"] == "both"
    assert (await late.next(op_late))["user"]["data"]["username"] == "both"
    await first.disconnect()
    await save_user(1, username="late only")
    assert (await late.next(op_late))["user"]["data"]["username"] == "late only"
    await late.disconnect()


async def test_the_last_member_leaving_ends_the_watch_and_its_group(
    application: Any, users: list[User]
) -> None:
    (client,) = await clients(application, 1)
    op = await client.subscribe(SUBSCRIBE_USER, {"pk": 1})
    await client.next(op)
    assert len(live.watches()) == 1
    await client.complete(op)
    hub = live.hub()
    await wait_until(lambda: live.watches() == {}, 5, "the watch ended")
    assert hub.groups == {}
    await save_user(1, username="nobody")
    # A new subscription's 201, then its first change, are the next frames: the
    # completed one was sent nothing.
    again = await subscribe_user(client, 1, rid="again")
    await barrier(client, again, 1)
    await client.disconnect()


@pytest.mark.parametrize("pause", [True, False])
async def test_the_garbage_collector_is_paused_while_a_change_is_delivered_then_runs(
    application: Any,
    users: list[User],
    monkeypatch: pytest.MonkeyPatch,
    observer_settings: Callable[..., Any],
    pause: bool,
) -> None:
    observer_settings(GC_PAUSE=pause)
    assert gc.isenabled()
    enabled: list[bool] = []
    real = watch.fan_out

    async def fan_out(targets: list[Any]) -> None:
        enabled.append(gc.isenabled())
        await real(targets)

    monkeypatch.setattr(watch, "fan_out", fan_out)
    pauses = collector.pauses
    subscribers = await clients(application, 2)
    ops = [await subscribe_user(client, 1, rid=n) for n, client in enumerate(subscribers)]
    await save_user(1, username="collected")
    for client, op in zip(subscribers, ops, strict=True):
        assert await username_seen(client, op) == "collected"
    await settle()
    # One delivery, both members in it; GC_PAUSE off: never paused.
    assert enabled == [not pause]
    assert collector.pauses - pauses == (1 if pause else 0)
    assert gc.isenabled()
    assert not collector.pausing
    for client in subscribers:
        await client.disconnect()


async def test_a_delete_completes_every_member(application: Any, users: list[User]) -> None:
    subscribers = await clients(application, 3)
    for number, client in enumerate(subscribers):
        await client.next(await client.subscribe(SUBSCRIBE_USER, {"pk": 3, "rid": number}))
    await database_sync_to_async(User.objects.filter(pk=3).delete)()
    for number, client in enumerate(subscribers):
        user = (await client.next("1"))["user"]
        assert (user["action"], user["responseStatus"], user["requestId"]) == (
            "delete",
            204,
            number,
        )
        await client.expect_complete("1")
        await client.disconnect()
    assert live.watches() == {}


async def test_a_burst_of_changes_to_many_instances_is_read_in_a_few_queries(
    application: Any,
    users: list[User],
    monkeypatch: pytest.MonkeyPatch,
    observer_settings: Callable[..., Any],
) -> None:
    # A window far longer than the burst: the first change is read at once,
    # every change within the window after it by one more query.
    observer_settings(READ_BATCH_WINDOW=3.0, SUBSCRIBE_RATE=10_000)
    batches: list[list[object]] = []
    real_rows = reads.rows

    def counting_rows(
        definition: Any, info: Any, lookup: str, values: list[object], plan: Any = None
    ) -> Any:
        batches.append(list(values))  # the instances one query reads
        return real_rows(definition, info, lookup, values, plan)

    monkeypatch.setattr(reads, "rows", counting_rows)
    pks = list(range(10, 30))
    await database_sync_to_async(User.objects.bulk_create)(
        [User(pk=pk, username=f"u{pk}") for pk in pks]
    )
    (client,) = await clients(application, 1)
    # Subscribed together: their own reads are coalesced too.
    ops = [await client.subscribe(SUBSCRIBE_USER, {"pk": pk, "rid": pk}) for pk in pks]
    for _ in ops:
        message = await client.receive(timeout=10.0)
        assert message["payload"]["data"]["user"]["responseStatus"] == 201
    # The subscriptions' own reads linger one window after the last of them;
    # the burst's reads start after that.
    await wait_until(lambda: live.reading() == 0, 10, "the subscriptions' reads end")
    # The first change after a quiet spell does not wait for the window: its
    # frame comes long before the window (3 s) is over.
    batches.clear()
    await save_user(pks[0], username="first")
    first = await client.receive(timeout=2.0)
    assert first["payload"]["data"]["user"]["data"]["username"] == "first"
    assert batches == [[pks[0]]]
    # The rest of the burst, saved one by one (20 commits) within the window.
    await database_sync_to_async(_rename_each)(pks[1:], "burst")
    names = {}
    for _ in pks[1:]:
        message = await client.receive(timeout=10.0)
        user = message["payload"]["data"]["user"]
        names[user["requestId"]] = user["data"]["username"]
    assert names == {pk: f"burst-{pk}" for pk in pks[1:]}
    # 19 changes, one query (two if the loop took the first ones before the
    # window's read began), where every change used to cost a query of its own.
    assert sorted(pk for batch in batches[1:] for pk in batch) == pks[1:]
    assert len(batches) - 1 <= 2, [len(batch) for batch in batches]
    await client.disconnect()


def _rename_each(pks: list[int], prefix: str) -> None:
    for pk in pks:
        user = User.objects.get(pk=pk)
        user.username = f"{prefix}-{pk}"
        user.save()


async def test_subscriptions_of_one_instance_hold_no_task_once_started(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(SUBSCRIBE_RATE=10_000)
    subscribers = await clients(application, 20)
    for number, client in enumerate(subscribers):
        await client.next(await client.subscribe(SUBSCRIBE_USER, {"pk": 1, "rid": number}))
    (one,) = live.watches().values()
    assert len(one.members) == 20
    await wait_until(
        lambda: all(m.operation.task is None for m in one.members.values()),
        5,
        "the starting tasks end and are let go",
    )
    assert not any(t.get_name() == "gql_observer.admit" for t in asyncio.all_tasks())
    assert [(m.operation.task, m.busy) for m in one.members.values()] == [(None, False)] * 20
    for client in subscribers:
        await client.disconnect()
