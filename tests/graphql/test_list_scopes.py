"""Lists of a type whose rows depend on the viewer (``get_queryset``): the
changed rows are read once for every viewer whose queryset only narrows the
model's rows (an ``EXISTS`` column per viewer), and each viewer gets, frame
for frame, what a read of its own gives it (``COMBINE_SCOPES`` off)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.db.models import Exists, Value
from django.db.models.expressions import RawSQL

from gql_observer.graphql import matching
from gql_observer.testing import GraphQLTransportWSCommunicator, settle
from schema_examples.notes.models import Note
from tests.support import schema as support
from tests.support.clients import PONG, connect, library_queries
from tests.support.notes import change_notes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db_matrix]

#: A viewer's own notes: ``ownNotes``'s ``get_queryset`` names the owner's key
#: (its condition becomes a column), ``penNotes``'s the owner's username (a join:
#: an ``EXISTS`` column).
FIELDS = ("ownNotes", "penNotes")
OWN = (
    "subscription ($filters: NoteFilter) { %s(filters: $filters, requestId: 1) {"
    " action pk data { id title body } } }"
)
#: What each viewer asks for: every own note, or those whose title starts with "a".
FILTERS = (None, {"title": {"startsWith": "a"}})


async def _frames(
    client: GraphQLTransportWSCommunicator, op: str, field: str
) -> list[dict[str, Any]]:
    """The frames ``op`` got since the last call (every change handled first)."""
    await settle()
    await client.send({"type": "ping"})
    out = []
    while (message := await client.receive()) != PONG:
        assert message["type"] == "next" and message["id"] == op, message
        out.append(message["payload"]["data"][field])
    return out


async def _run(seed: int, viewers: int, name: str, field: str) -> tuple[list[list[Any]], list[int]]:
    """A random script of transactions (creates, transfers, retitles, deletes)
    among ``viewers`` viewers' notes: each viewer's frames after each
    transaction (a note's pk as its index among the notes made, so that two
    runs compare), and the statements each transaction's reads took."""
    draw = random.Random(seed)
    app = support.application()
    users = await database_sync_to_async(
        lambda: [User.objects.create(username=f"{name}-{seed}-{n}") for n in range(viewers)]
    )()
    clients = []
    for n, user in enumerate(users):
        client = await connect(app, user)
        op = await client.subscribe(OWN % field, {"filters": FILTERS[n % 2]})
        assert (await client.next(op))[field]["action"] == "subscribe_list"
        clients.append((client, op))
    made: list[int] = []
    alive: list[Note] = []

    def index(frame: dict[str, Any]) -> dict[str, Any]:
        out = dict(frame)
        if out["pk"] is not None:
            out["pk"] = made.index(int(out["pk"]))
        if out["data"] is not None:
            out["data"] = {**out["data"], "id": made.index(int(out["data"]["id"]))}
        return out

    seen: list[list[Any]] = [[] for _ in clients]
    statements = []
    for _ in range(20):
        with library_queries() as queries:
            await database_sync_to_async(change_notes)(draw, users, alive, made)
            for n, (client, op) in enumerate(clients):
                seen[n].append([index(frame) for frame in await _frames(client, op, field)])
        statements.append(sum(1 for sql in queries.statements if "notes_note" in sql))
    for client, _ in clients:
        await client.disconnect()
    return seen, statements


def _states(frames: list[list[dict[str, Any]]]) -> list[dict[Any, Any]]:
    """What a client that applies every frame holds after each transaction."""
    held: dict[Any, Any] = {}
    out = []
    for step in frames:
        for frame in step:
            if frame["action"] == "delete":
                held.pop(frame["pk"], None)
            else:
                held[frame["pk"]] = frame["data"]
        out.append(dict(held))
    return out


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("seed", range(3))
async def test_viewers_read_together_get_what_each_read_alone_gets(
    seed: int, field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After every transaction each viewer holds the same rows, with the same
    values, whether its changes were read together with the other viewers'
    or alone; and no frame names a row the viewer did not hold before or
    after it, nor got a frame of when read alone. (Frame for frame the runs
    may differ: a row changed twice in a transaction may come as one change
    or two, as batches of changes fall.)"""
    alone, alone_statements = await _run_with(monkeypatch, False, seed, field)
    together, together_statements = await _run_with(monkeypatch, True, seed, field)
    for mine, theirs in zip(together, alone, strict=True):
        assert _states(mine) == _states(theirs)
        before: dict[Any, Any] = {}
        for step, (frames, after) in enumerate(zip(mine, _states(mine), strict=True)):
            known = before.keys() | after.keys() | {f["pk"] for f in theirs[step]}
            assert {frame["pk"] for frame in frames} <= known, (step, frames)
            before = after
    assert any(frames for viewer in together for frames in viewer)  # something happened
    # Twelve viewers: a read per viewer and batch of changes alone, one for all
    # of them together (a transaction's changes may come in two batches).
    assert max(together_statements) <= 2
    assert sum(together_statements) * 6 < sum(alone_statements)


async def _run_with(
    monkeypatch: pytest.MonkeyPatch, combine: bool, seed: int, field: str
) -> tuple[list[list[Any]], list[int]]:
    monkeypatch.setattr(matching, "COMBINE_SCOPES", combine)
    await database_sync_to_async(lambda: Note.objects.all().delete())()
    return await _run(seed, 12, "together" if combine else "alone", field)


def test_a_viewers_condition_is_a_column_unless_it_names_another_table() -> None:
    notes = Note.objects.all()
    assert isinstance(matching._holds(notes.filter(owner_id=1)), RawSQL)
    assert isinstance(matching._holds(notes.filter(owner__username="x")), Exists)
    assert matching._holds(notes.none()) is None
    assert matching._holds(notes) is not None  # every row


def test_only_a_queryset_that_narrows_the_rows_is_read_with_others() -> None:
    notes = Note.objects.all()
    assert matching._narrows(notes, notes)
    assert matching._narrows(notes.filter(owner__username="x").exclude(title="y"), notes)
    assert matching._narrows(notes.distinct().order_by("-pk"), notes)
    others = [
        notes.annotate(mine=Value(True)),
        notes.select_related("owner"),
        notes.only("title"),
        notes.defer("body"),
        notes.values("pk"),
        notes.prefetch_related("owner"),
        notes.extra(tables=["auth_user"]),
        notes.extra(select={"one": "1"}),
        notes[:5],
        notes.union(notes),
        notes.using("elsewhere"),  # another database (never queried here)
    ]
    assert not any(matching._narrows(queryset, notes) for queryset in others)
