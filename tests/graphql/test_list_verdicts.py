"""Owner-only lists through a ``permission`` hook, one list group per viewer:
the hook's verdicts of a change are made for every viewer in one hop to
Django's thread, each viewer's still its own (a hook that fails for one viewer
ends that viewer's list alone), and a verdict the database interrupts is made
again from where it was, so no change is lost."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.db import transaction

from gql_observer.testing import GraphQLTransportWSCommunicator, settle
from schema_examples.notes.models import Note
from tests.support import schema as support
from tests.support.clients import PONG, connect, next_after_ping
from tests.support.hops import count_hops
from tests.support.lists import apply
from tests.support.notes import change_notes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db_matrix]

LEDGER = (
    "subscription ($filters: NoteFilter) { ledger(filters: $filters, requestId: 1) {"
    " action errors responseStatus requestId pk data { id title } } }"
)
PAGE = "query { ledger(requestId: 1, pagination: {limit: -1}) { data { id title } } }"


def frame(action: str, status: int, pk: Any, data: Any) -> dict[str, Any]:
    return {
        "ledger": {
            "action": action,
            "errors": [],
            "responseStatus": status,
            "requestId": 1,
            "pk": None if pk is None else str(pk),
            "data": data,
        }
    }


@pytest.fixture
def app() -> Iterator[Any]:
    support.Hook.reset()
    yield support.application()
    support.Hook.reset()


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many calls each hop of coalesced calls to Django's thread made."""
    return count_hops(monkeypatch)


async def _viewers(app: Any, n: int) -> list[tuple[User, GraphQLTransportWSCommunicator, str]]:
    """``n`` signed-in viewers, each subscribed to their ledger (empty so far)."""
    made = await database_sync_to_async(
        lambda: [User.objects.create(username=f"viewer-{i}") for i in range(n)]
    )()
    out = []
    for user in made:
        client = await connect(app, user)
        op = await client.subscribe(LEDGER, {"filters": None})
        assert await client.next(op) == frame("subscribe_list", 201, None, None)
        out.append((user, client, op))
    return out


async def test_a_change_is_decided_for_every_viewer_in_one_hop_and_each_sees_its_own(
    app: Any, hops: list[int]
) -> None:
    viewers = await _viewers(app, 12)
    (giver, give_client, give_op), (taker, take_client, take_op) = viewers[3], viewers[7]
    note = await database_sync_to_async(Note.objects.create)(owner=giver, title="t")
    assert await give_client.next(give_op) == frame(
        "create", 201, note.pk, {"id": str(note.pk), "title": "t"}
    )
    assert sum(hops) == 12 and len(hops) < 12, hops  # every viewer's verdict, coalesced

    hops.clear()
    note.owner = taker
    await database_sync_to_async(note.save)()
    assert await give_client.next(give_op) == frame("delete", 204, note.pk, None)
    assert await take_client.next(take_op) == frame(
        "create", 201, note.pk, {"id": str(note.pk), "title": "t"}
    )
    assert sum(hops) == 12 and len(hops) < 12, hops
    for _, client, _ in viewers:
        assert await next_after_ping(client) == PONG  # nobody else heard of it
        await client.disconnect()


async def test_a_hook_that_fails_for_one_viewer_ends_that_list_alone(app: Any) -> None:
    viewers = await _viewers(app, 3)
    (owner, owner_client, owner_op), (broken, broken_client, broken_op) = viewers[0], viewers[1]
    support.Hook.broken_for = broken.username
    note = await database_sync_to_async(Note.objects.create)(owner=owner, title="mine")
    assert await owner_client.next(owner_op) == frame(
        "create", 201, note.pk, {"id": str(note.pk), "title": "mine"}
    )
    await broken_client.expect_complete(broken_op)
    support.Hook.broken_for = None
    note.title = "again"
    await database_sync_to_async(note.save)()
    assert await owner_client.next(owner_op) == frame(
        "update", 200, note.pk, {"id": str(note.pk), "title": "again"}
    )
    for _, client, _ in viewers:
        assert await next_after_ping(client) == PONG
        await client.disconnect()


async def test_a_verdict_the_database_interrupts_is_made_again_and_no_change_is_lost(
    app: Any,
) -> None:
    viewers = await _viewers(app, 2)
    owner, client, op = viewers[0]
    gone, kept = await database_sync_to_async(
        lambda: [Note.objects.create(owner=owner, title=t) for t in ("gone", "kept")]
    )()
    assert await client.next(op) == frame(
        "create", 201, gone.pk, {"id": str(gone.pk), "title": "gone"}
    )
    assert await client.next(op) == frame(
        "create", 201, kept.pk, {"id": str(kept.pk), "title": "kept"}
    )
    # One commit: a held row deleted, then another held row changed, whose
    # verdict fails once as a database out of reach for a moment does.
    support.Hook.blips = {kept.pk}

    def both() -> None:
        with transaction.atomic():
            Note.objects.get(pk=gone.pk).delete()
            kept.title = "kept, changed"
            kept.save()

    gone_pk = gone.pk
    await database_sync_to_async(both)()
    assert await client.next(op) == frame(
        "delete", 204, gone_pk, {"id": str(gone_pk), "title": "gone"}
    )
    assert await client.next(op) == frame(
        "update", 200, kept.pk, {"id": str(kept.pk), "title": "kept, changed"}
    )
    assert support.Hook.blips == set()  # the hook did fail once
    for _, other, _ in viewers:
        assert await next_after_ping(other) == PONG
        await other.disconnect()


async def _page(client: GraphQLTransportWSCommunicator) -> dict[str, Any]:
    op = await client.subscribe(PAGE)
    page = await client.next(op)
    await client.expect_complete(op)
    return {row["id"]: row for row in page["ledger"]["data"]}


@pytest.mark.parametrize("seed", range(4))
async def test_transactions_of_transfers_with_interrupted_verdicts_converge(
    app: Any, seed: int
) -> None:
    """Random transactions of creates, transfers, edits and deletes among four
    viewers' notes, some verdicts interrupted as by a database out of reach:
    each viewer who applies every event holds exactly what its Query returns."""
    draw = random.Random(seed)
    viewers = await _viewers(app, 4)
    owners = [user for user, _, _ in viewers]
    held: list[dict[str, Any]] = [{} for _ in viewers]
    alive: list[Note] = []

    for _ in range(25):
        await database_sync_to_async(change_notes)(draw, owners, alive, [], support.Hook.blips)
    await settle()
    for (_, client, op), view in zip(viewers, held, strict=True):
        await client.send({"type": "ping"})
        while (message := await client.receive()) != PONG:
            assert message["type"] == "next" and message["id"] == op, message
            apply(view, message["payload"]["data"]["ledger"])
    assert support.Hook.blipped > 0  # some verdicts were interrupted
    for (_, client, _), view in zip(viewers, held, strict=True):
        assert view == await _page(client)
        await client.disconnect()
