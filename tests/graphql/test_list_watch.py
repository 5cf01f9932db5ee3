"""A list watch member's buffer: the latest change per row while the
subscriber is busy, merged so that what it finally takes tells it the same
as every change one by one would have."""

from __future__ import annotations

from typing import Any

from gql_observer.core.conf import get_settings
from gql_observer.graphql.list_watch import CLOSED, ListMember, ListWatch
from gql_observer.graphql.listing import Change
from gql_observer.graphql.runtime import Runtime


def member() -> ListMember:
    # A watch that is never started (nor left): the buffer is what is tested.
    watch = ListWatch(Runtime(get_settings()), "test", "test", None, None, None, None)  # type: ignore[arg-type]
    return ListMember(watch)


async def taken(changes: list[Change]) -> list[tuple[str, str, Any]]:
    buffer = member()
    for change in changes:
        buffer.push([change])
    got = await buffer.next()
    assert isinstance(got, list)
    return [(c.action, c.pk, c.row) for c in got]


async def test_a_row_that_entered_and_changed_is_one_create_with_the_last_state() -> None:
    assert await taken([Change("create", "1", "a"), Change("update", "1", "b")]) == [
        ("create", "1", "b")
    ]


async def test_a_row_that_entered_and_left_unseen_is_nothing() -> None:
    changes = [Change("create", "1", "a"), Change("delete", "1", None), Change("update", "2", "x")]
    assert await taken(changes) == [("update", "2", "x")]


async def test_a_row_that_changed_and_left_is_a_delete_with_its_data() -> None:
    assert await taken([Change("update", "1", "a"), Change("delete", "1", "last")]) == [
        ("delete", "1", "last")
    ]


async def test_a_row_that_left_and_came_back_is_an_update() -> None:
    assert await taken([Change("delete", "1", None), Change("create", "1", "back")]) == [
        ("update", "1", "back")
    ]


async def test_the_end_comes_after_what_is_pending() -> None:
    buffer = member()
    buffer.push([Change("update", "1", "a")])
    buffer.end(CLOSED)
    assert [c.pk for c in await buffer.next()] == ["1"]  # type: ignore[union-attr]
    assert await buffer.next() == CLOSED
