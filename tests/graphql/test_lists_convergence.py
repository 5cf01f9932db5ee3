"""The convergence property of live lists: a client that subscribed, then read
the Query (while writers write), then applied every event holds exactly what
the Query returns once the writers stop. Random creates, renames (into and out
of the filter), deletes and transfers of owner-only notes, on the real ASGI app
through graphql-transport-ws."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from hypothesis import given
from hypothesis import strategies as st

from schema_examples.notes.models import Note
from tests.support.clients import connect
from tests.support.differential import hunt
from tests.support.lists import (
    apply,
    list_notes,
    list_users,
    subscribe_notes,
    subscribe_users,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.db_matrix,
    pytest.mark.timeout(300),
]

LIVE = {"username": {"startsWith": "live-"}}
PLANS = {"title": {"startsWith": "plan"}}
BARRIER_USER = "live-~barrier"
BARRIER_NOTE = "plan ~barrier"
ALL = {"limit": -1}

Step = tuple[Any, ...]
#: Steps on users (slot: which of the rows made so far) and notes (owner 1 or 2).
steps = st.lists(
    st.one_of(
        st.tuples(st.just("create user"), st.sampled_from(["live-", "dead-"])),
        st.tuples(st.just("rename user"), st.integers(0, 7), st.sampled_from(["live-", "dead-"])),
        st.tuples(st.just("delete user"), st.integers(0, 7)),
        st.tuples(st.just("create note"), st.sampled_from([1, 2]), st.sampled_from(["plan", "x"])),
        st.tuples(st.just("retitle note"), st.integers(0, 7), st.sampled_from(["plan", "x"])),
        st.tuples(st.just("transfer note"), st.integers(0, 7), st.sampled_from([1, 2])),
        st.tuples(st.just("delete note"), st.integers(0, 7)),
    ),
    min_size=3,
    max_size=25,
)


def _reset() -> tuple[list[int], list[int]]:
    """Rows for the steps to work on: users in and out of the filter, notes of
    both owners in and out of it."""
    User.objects.filter(pk__gt=3).delete()
    Note.objects.all().delete()
    made_users = [User.objects.create(username=name).pk for name in ("live-a", "dead-b", "live-c")]
    made_notes = [
        Note.objects.create(owner_id=owner, title=title).pk
        for owner, title in ((1, "plan a"), (2, "plan b"), (1, "x c"), (1, "plan d"))
    ]
    return made_users, made_notes


def _write(script: list[Step], made_users: list[int], made_notes: list[int]) -> None:
    """Run ``script`` (each step its own transaction), then the barriers."""
    for n, step in enumerate(script):
        kind = step[0]
        if kind == "create user":
            made_users.append(User.objects.create(username=f"{step[1]}{n}").pk)
        elif kind == "create note":
            note = Note.objects.create(owner_id=step[1], title=f"{step[2]} {n}")
            made_notes.append(note.pk)
        elif kind.endswith("user") and made_users:
            user = User.objects.filter(pk=made_users[step[1] % len(made_users)]).first()
            if user is None:
                continue
            if kind == "rename user":
                user.username = f"{step[2]}{n}"
                user.save()
            else:
                user.delete()
        elif kind.endswith("note") and made_notes:
            note = Note.objects.filter(pk=made_notes[step[1] % len(made_notes)]).first()
            if note is None:
                continue
            if kind == "retitle note":
                note.title = f"{step[2]} {n}"
                note.save()
            elif kind == "transfer note":
                note.owner_id = step[2]
                note.save()
            else:
                note.delete()
    User.objects.create(username=BARRIER_USER)
    Note.objects.create(owner_id=1, title=BARRIER_NOTE)


async def _follow(client: Any, ops: dict[str, str], views: list[dict[str, Any]]) -> None:
    """Apply every event of ``ops`` (operation id -> field) to each of ``views``
    (field -> pk -> row) until each op's barrier row arrived."""
    waiting = set(ops)
    while waiting:
        message = await client.receive(timeout=30)
        assert message["type"] == "next", message
        field = ops[message["id"]]
        envelope = message["payload"]["data"][field]
        for view in views:
            apply(view[field], envelope)
        data = envelope["data"] or {}
        if data.get("username") == BARRIER_USER or data.get("title") == BARRIER_NOTE:
            waiting.discard(message["id"])


async def _fresh(observer_settings: Callable[..., Any]) -> tuple[list[int], list[int]]:
    """Settings for a burst of subscriptions, and the users and notes made anew."""
    observer_settings(SUBSCRIBE_RATE=10_000)
    made: tuple[list[int], list[int]] = await database_sync_to_async(_reset)()
    return made


def _writing(script: list[Step], made: tuple[list[int], list[int]]) -> asyncio.Future[None]:
    """The writer's ``script``, started on Django's thread."""
    return asyncio.ensure_future(database_sync_to_async(_write)(script, *made))


async def _read(reader: Any) -> dict[str, Any]:
    return {
        "users": {u["id"]: u for u in (await list_users(reader, LIVE, ALL))["data"]},
        "notes": {n["id"]: n for n in (await list_notes(reader, PLANS, ALL))["data"]},
    }


@hunt(25, "GQLOBS_LISTS_EXAMPLES")
@given(script=steps)
async def test_events_applied_to_the_query_converge_on_the_final_query(
    application: Any,
    users: list[User],
    observer_settings: Callable[..., Any],
    script: list[Step],
) -> None:
    made = await _fresh(observer_settings)
    subscriber = await connect(application, users[0])
    reader = await connect(application, users[0])
    try:
        ops = {
            await subscribe_users(subscriber, LIVE): "users",
            await subscribe_notes(subscriber, PLANS): "notes",
        }
        # One client read the Query before the writes (everything else must come
        # from the events), one while the writer writes (the contract's case).
        before = await _read(reader)
        writer = _writing(script, made)
        during = await _read(reader)
        await writer
        await _follow(subscriber, ops, [before, during])
        final = await _read(reader)
        assert before == final
        assert during == final
    finally:
        await subscriber.disconnect()
        await reader.disconnect()


#: The same set as LIVE under another filter: a watch of its own in LIVE's group.
ALSO_LIVE = {"username": {"startsWith": "live"}, "NOT": {"username": {"startsWith": "dead-"}}}


@hunt(10, "GQLOBS_LISTS_EXAMPLES")
@given(script=steps)
async def test_a_filter_that_joins_its_group_while_writers_write_converges_too(
    application: Any,
    users: list[User],
    observer_settings: Callable[..., Any],
    script: list[Step],
) -> None:
    # The late watch joins the group while the writer holds Django's thread:
    # the group takes the writer's changes meanwhile and the watch decides them
    # after its set is read (its backlog).
    made = await _fresh(observer_settings)
    early, late, reader = [await connect(application, users[0]) for _ in range(3)]
    try:
        first = await subscribe_users(early, LIVE)
        before = await _read(reader)
        writer = _writing(script, made)
        second = await subscribe_users(late, ALSO_LIVE)
        read = await list_users(reader, ALSO_LIVE, ALL)
        joined = {u["id"]: u for u in read["data"]}
        await writer
        await _follow(early, {first: "users"}, [before])
        view = {"users": joined}
        await _follow(late, {second: "users"}, [view])
        final = await _read(reader)
        assert before["users"] == final["users"]
        assert view["users"] == final["users"]
    finally:
        for client in (early, late, reader):
            await client.disconnect()
