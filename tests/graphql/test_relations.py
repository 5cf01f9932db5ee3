"""Events read the relations their selection asks for with the instance
(strawberry-django's optimizer planning, :mod:`gql_observer.graphql.relations`):
a book with its author and the author's books costs two queries per event, not
one per relation, through graphql-transport-ws on the real ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from gql_observer.testing import GraphQLTransportWSCommunicator
from schema_examples.notes.models import Note
from tests.support import runtime as live
from tests.support import schema as support
from tests.support.clients import connect, library_queries

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db_matrix]

SHELF = "data { id title owner { username notes { title owner { username } } } }"
BOOK = f"subscription ($pk: ID!) {{ book(pk: $pk) {{ action {SHELF} }} }}"


def shelf(title: str) -> dict[str, Any]:
    """``data`` of :data:`SHELF` for book 1 (of user 1, who wrote books 1 to 3)."""
    titles = [title, "book 2", "book 3"]
    return {
        "id": "1",
        "title": title,
        "owner": {
            "username": "test 1",
            "notes": [{"title": t, "owner": {"username": "test 1"}} for t in titles],
        },
    }


@pytest.fixture
def books(users: list[User]) -> list[Note]:
    """Books 1 to 3 by user 1, book 4 by user 2."""
    return [
        Note.objects.create(pk=n, owner=users[0 if n < 4 else 1], title=f"book {n}")
        for n in (1, 2, 3, 4)
    ]


@pytest.fixture
async def client(books: list[Note]) -> AsyncIterator[GraphQLTransportWSCommunicator]:
    async with GraphQLTransportWSCommunicator(support.application()) as communicator:
        yield communicator


@database_sync_to_async
def retitle(pk: int, title: str) -> None:
    """Save book ``pk`` with ``title``: an UPDATE and nothing else (no SELECT)."""
    Note(pk=pk, owner_id=1 if pk < 4 else 2, title=title).save()


def selects(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith("SELECT")]


async def test_an_event_reads_a_book_its_author_and_the_authors_books_in_two_queries(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await client.subscribe(BOOK, {"pk": 1})
    assert (await client.next(op))["book"]["action"] == "subscribe_instance"
    assert len(live.watches()) == 1  # served by a watch (the shared path)
    with library_queries(everyone=True) as queries:
        await retitle(1, "edited")
        frame = await client.next(op)
    assert frame == {"book": {"action": "update", "data": shelf("edited")}}
    read, prefetch = selects(queries.statements)
    # The book joined with its author, then the author's books joined with theirs.
    assert "JOIN" in read and '"auth_user"' in read, read
    assert "JOIN" in prefetch and '"notes_note"."owner_id" IN' in prefetch, prefetch


async def test_every_event_is_planned_the_same(client: GraphQLTransportWSCommunicator) -> None:
    op = await client.subscribe(BOOK, {"pk": 1})
    await client.next(op)
    for title in ("first", "second", "third"):
        with library_queries(everyone=True) as queries:
            await retitle(1, title)
            assert await client.next(op) == {"book": {"action": "update", "data": shelf(title)}}
        assert len(selects(queries.statements)) == 2, queries.statements


async def test_a_subscription_served_on_its_own_is_planned_too(
    books: list[Note], observer_settings: Any
) -> None:
    observer_settings(COHORTS=False)
    client = await connect(support.application())
    op = await client.subscribe(BOOK, {"pk": 1})
    await client.next(op)
    assert live.watches() == {}
    with library_queries(everyone=True) as queries:
        await retitle(1, "alone")
        assert await client.next(op) == {"book": {"action": "update", "data": shelf("alone")}}
    assert len(selects(queries.statements)) == 2, queries.statements
    await client.disconnect()


async def test_the_query_reads_the_relations_with_the_instance(
    client: GraphQLTransportWSCommunicator,
) -> None:
    with library_queries(everyone=True) as queries:
        op = await client.subscribe(f"query {{ book(pk: 1) {{ action {SHELF} }} }}")
        assert await client.next(op) == {"book": {"action": "retrieve", "data": shelf("book 1")}}
    assert len(selects(queries.statements)) == 2, queries.statements


async def test_subscribers_with_different_selections_share_one_read(
    client: GraphQLTransportWSCommunicator, books: list[Note]
) -> None:
    other = await connect(support.application())
    op = await client.subscribe(BOOK, {"pk": 1})
    await client.next(op)
    plain = "subscription { book(pk: 1) { action data { title owner { username } } } }"
    other_op = await other.subscribe(plain)
    await other.next(other_op)
    assert len(live.watches()) == 1
    with library_queries(everyone=True) as queries:
        await retitle(1, "shared")
        assert await client.next(op) == {"book": {"action": "update", "data": shelf("shared")}}
        assert await other.next(other_op) == {
            "book": {
                "action": "update",
                "data": {"title": "shared", "owner": {"username": "test 1"}},
            }
        }
    # One read of the book and its author for both, one of the author's books.
    assert len(selects(queries.statements)) == 2, queries.statements
    await other.disconnect()


async def test_a_list_that_depends_on_the_viewer_is_read_by_each_viewer(
    books: list[Note], users: list[User]
) -> None:
    """``ownNotes`` goes through ``get_queryset`` (each viewer's own notes): a
    prefetched list would be one viewer's, so it is read per viewer, as before."""
    query = "subscription { book(pk: 1) { data { title owner { ownNotes { title } } } } }"
    author = await connect(support.application(), users[0])
    stranger = await connect(support.application(), users[1])
    ops = [await c.subscribe(query) for c in (author, stranger)]
    for c, op in zip((author, stranger), ops, strict=True):
        await c.next(op)
    await retitle(1, "mine")
    assert await author.next(ops[0]) == {
        "book": {
            "data": {
                "title": "mine",
                "owner": {
                    "ownNotes": [{"title": "mine"}, {"title": "book 2"}, {"title": "book 3"}]
                },
            }
        }
    }
    assert await stranger.next(ops[1]) == {
        "book": {"data": {"title": "mine", "owner": {"ownNotes": []}}}
    }
    for c in (author, stranger):
        await c.disconnect()


@database_sync_to_async
def _titles() -> list[str]:
    return list(Note.objects.order_by("pk").values_list("title", flat=True))


async def test_a_save_of_another_book_of_the_author_is_not_an_event_of_this_one(
    client: GraphQLTransportWSCommunicator,
) -> None:
    """The plan reads relations, it subscribes to nothing more: a save of book 2
    sends nothing; the next frame is the later save of book 1 (a barrier)."""
    op = await client.subscribe(BOOK, {"pk": 1})
    await client.next(op)
    await retitle(2, "renamed 2")
    await retitle(1, "after")
    frame = await client.next(op)
    assert frame["book"]["data"]["title"] == "after"
    assert [n["title"] for n in frame["book"]["data"]["owner"]["notes"]] == [
        "after",
        "renamed 2",
        "book 3",
    ]
    assert await _titles() == ["after", "renamed 2", "book 3", "book 4"]
