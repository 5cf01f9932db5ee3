"""What the bulk writes of an ``ObservedQuerySet`` and ``notify`` cost the
writer, and what they refuse: one query more for an update, a few channel-layer
messages (to the model's group, on real Redis) for many rows, clear answers to
arguments that name no rows."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Permission, User
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

import gql_observer
from gql_observer.changes.publisher import BATCH_LIMIT
from gql_observer.testing import GraphQLTransportWSCommunicator
from schema_examples.notes.models import Note
from tests.support import runtime as live
from tests.support.notes import subscribe_note

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db_matrix]

ROWS = 1000


def make_notes(count: int) -> list[Note]:
    owner = User.objects.create(username="owner")
    return Note.objects.bulk_create(Note(owner=owner, title=str(n)) for n in range(count))


def queries(write: Any) -> int:
    with CaptureQueriesContext(connection) as captured:
        write()
    return len(captured)


def statements(write: Any) -> list[str]:
    """The SQL ``write`` runs, transaction control left out."""
    with CaptureQueriesContext(connection) as captured:
        write()
    control = {"BEGIN", "COMMIT", "ROLLBACK"}
    return [query["sql"] for query in captured if query["sql"].split()[0] not in control]


def test_an_update_reads_the_pks_it_matches_with_one_query_more() -> None:
    make_notes(20)

    def in_transaction(update: Any) -> Any:
        return lambda: transaction.atomic()(update)()

    plain = queries(
        in_transaction(lambda: Note._base_manager.filter(title__startswith="1").update(body="a"))
    )
    observed = queries(
        in_transaction(lambda: Note.objects.filter(title__startswith="1").update(body="b"))
    )
    assert observed == plain + 1
    # Outside a transaction it opens one, so that the pks it reads are the rows
    # it updates: one SELECT more, and the transaction's BEGIN and COMMIT.
    extra = statements(lambda: Note.objects.filter(title__startswith="1").update(body="c"))
    assert [sql.split()[0] for sql in extra] == ["SELECT", "UPDATE"]


def test_bulk_update_and_bulk_create_cost_no_query_more() -> None:
    notes = make_notes(5)
    for note in notes:
        note.title = "changed"
    plain = queries(lambda: Note._base_manager.bulk_update(notes, ["title"]))
    observed = queries(lambda: Note.objects.bulk_update(notes, ["title"]))
    assert observed == plain
    owner = notes[0].owner
    plain = queries(lambda: Note._base_manager.bulk_create([Note(owner=owner, title="p")]))
    observed = queries(lambda: Note.objects.bulk_create([Note(owner=owner, title="o")]))
    assert observed == plain


def test_the_writes_answer_what_djangos_do() -> None:
    notes = make_notes(4)
    assert Note.objects.filter(pk__in=[n.pk for n in notes[:3]]).update(body="x") == 3
    assert Note.objects.filter(pk=-1).update(body="x") == 0
    assert Note.objects.bulk_update(notes, ["title"], batch_size=3) == 4
    assert set(Note.objects.values_list("body", flat=True)) == {"x", ""}


@pytest.mark.redis
def test_an_update_of_many_rows_goes_out_as_a_few_messages(redis_layer: str) -> None:
    make_notes(ROWS)  # announced as creates: out of the way first
    assert gql_observer.flush(10), "the publisher did not send everything"
    before = live.published()
    with transaction.atomic():
        assert Note.objects.all().update(title="all") == ROWS
    assert gql_observer.flush(10), "the publisher did not send everything"
    sent = live.published() - before
    # ChangeBatch messages to the model's group, at most BATCH_LIMIT events each
    # (and the first change alone when a batch starts after a quiet spell).
    assert 0 < sent <= ROWS // BATCH_LIMIT + 2, sent


@pytest.mark.redis
def test_a_write_of_a_model_nobody_observes_publishes_nothing(redis_layer: str) -> None:
    before = live.published()
    gql_observer.notify(Permission, [1, 2])
    gql_observer.notify(Permission.objects.all())
    assert gql_observer.flush(10)
    assert live.published() == before


@pytest.mark.parametrize(
    ("target", "pks", "message"),
    [
        ("auth.User", None, "name the rows that changed"),
        ("auth.User", "12", "not a string"),
        ("queryset", [1], "takes no pks"),
        (42, [1], "takes a model and pks, or a queryset"),
    ],
)
def test_notify_refuses_arguments_that_name_no_rows(target: Any, pks: Any, message: str) -> None:
    if target == "auth.User":
        target = User
    elif target == "queryset":
        target = User.objects.all()
    with pytest.raises(TypeError, match=message):
        gql_observer.notify(target, pks)


def test_notify_refuses_a_pk_the_model_cannot_hold() -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        gql_observer.notify(User, ["not a number"])


async def test_an_update_reaches_subscribers_in_the_writers_process_on_the_in_memory_layer(
    application: Any, users: list[User]
) -> None:
    owner = users[0]
    notes = [await Note.objects.acreate(owner=owner, title=str(n)) for n in range(3)]
    token = await database_sync_to_async(gql_observer.issue_token)(owner)
    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    await client.init({"token": token})
    try:
        ops = {await subscribe_note(client, note): note.pk for note in notes}
        assert await Note.objects.filter(owner=owner).aupdate(title="in memory") == 3
        seen = {}
        for _ in ops:
            message = await client.receive(timeout=10)
            assert message["type"] == "next", message
            seen[ops[message["id"]]] = message["payload"]["data"]["note"]["data"]["title"]
        assert seen == {note.pk: "in memory" for note in notes}
    finally:
        await client.disconnect()
