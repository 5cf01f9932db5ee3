"""Two querysets read by one statement give what reading each gives: the same
instances (every field, through the backend's converters), the same tuples, the
same prefetches, on SQLite and PostgreSQL; what cannot be combined says so."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Model, QuerySet
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gql_observer.core.statements import read_both
from gql_observer.graphql.viewers import UserRows
from schema_examples.notes.models import Note

pytestmark = [pytest.mark.django_db, pytest.mark.db_matrix]

USER_COLUMNS = [f.attname for f in User._meta.concrete_fields]


@pytest.fixture
def rows() -> list[User]:
    people = [
        User.objects.create(
            username=f"ü-{n}'%_",
            email="" if n else "x@example.com",
            is_staff=bool(n % 2),
            last_login=None if n == 1 else timezone.now() - datetime.timedelta(days=n),
        )
        for n in range(4)
    ]
    for person in people[:3]:
        Note.objects.create(owner=person, title=f"note of {person.username}", body="b" * person.pk)
    return people


def _fields(objects: list[Model]) -> list[dict[str, Any]]:
    return [{k: v for k, v in o.__dict__.items() if k != "_state"} for o in objects]


def _both(first: QuerySet[Any], second: QuerySet[Any]) -> tuple[list[Any], list[Any]]:
    with CaptureQueriesContext(connection) as queries:
        both = read_both(first, second)
    assert both is not None
    assert len(queries) == 1, queries.captured_queries
    return both


def test_instances_and_tuples_are_what_reading_each_gives(rows: list[User]) -> None:
    notes = Note.objects.filter(pk__in=[n.pk for n in Note.objects.all()][:2]).order_by("pk")
    users = User.objects.filter(pk__in=[u.pk for u in rows]).values_list(*USER_COLUMNS)
    found_notes, found_users = _both(notes, users)
    assert _fields(found_notes) == _fields(list(notes))
    assert all(isinstance(n, Note) and not n._state.adding for n in found_notes)
    assert found_notes[0]._state.db == "default"
    assert sorted(found_users) == sorted(users)
    # Datetimes, booleans and NULLs came through the converters.
    by_pk = {row[0]: row for row in found_users}
    assert by_pk[rows[1].pk][USER_COLUMNS.index("last_login")] is None
    assert isinstance(by_pk[rows[2].pk][USER_COLUMNS.index("last_login")], datetime.datetime)
    assert by_pk[rows[1].pk][USER_COLUMNS.index("is_staff")] is True


def test_one_table_on_both_sides_and_empty_sides(rows: list[User]) -> None:
    some = User.objects.filter(pk__in=[rows[0].pk, rows[3].pk])
    others = User.objects.filter(pk__in=[rows[1].pk]).values_list(*USER_COLUMNS)
    found, tuples = _both(some, others)
    assert sorted(_fields(found), key=lambda f: f["id"]) == _fields(list(some.order_by("pk")))
    assert tuples == list(others)
    nothing = User.objects.filter(pk__in=[-1])
    assert _both(nothing, others) == ([], list(others))
    assert _both(some.order_by("pk"), nothing.values_list(*USER_COLUMNS))[1] == []
    assert _both(nothing, nothing.values_list("pk")) == ([], [])


def test_prefetches_are_read_after(rows: list[User]) -> None:
    people = User.objects.filter(pk=rows[0].pk).prefetch_related("notes")
    with CaptureQueriesContext(connection) as queries:
        both = read_both(people, User.objects.filter(pk=rows[1].pk).values_list("pk", "username"))
    assert both is not None
    (person,), pairs = both
    assert pairs == [(rows[1].pk, rows[1].username)]
    assert len(queries) == 2  # the statement, then the prefetch
    with CaptureQueriesContext(connection) as after:
        assert [n.title for n in person.notes.all()] == [f"note of {rows[0].username}"]
    assert len(after) == 0


def test_what_is_built_from_more_than_its_own_columns_is_not_combined(rows: list[User]) -> None:
    plain = User.objects.filter(pk=rows[0].pk).values_list("pk")
    joined = Note.objects.select_related("owner").filter(pk__in=[1, 2, 3])
    assert read_both(joined, plain) is None
    assert read_both(Note.objects.annotate(n=Note.objects.none().values("pk")[:1]), plain) is None
    assert read_both(User.objects.values_list("pk", flat=True), plain) is None
    assert read_both(User.objects.values("pk"), plain) is None
    assert read_both(User.objects.filter(pk=1).union(User.objects.filter(pk=2)), plain) is None


def test_timestamps_read_again_are_the_same_and_a_changed_one_is_new(rows: list[User]) -> None:
    """On PostgreSQL a read remembers the timestamps it parsed (keyed by their
    text): the same rows give equal values, aware in the connection's time
    zone, and a timestamp that changed is parsed anew."""
    users = User.objects.filter(pk__in=[u.pk for u in rows]).values_list("pk", "last_login")
    plain = dict(users)
    notes = Note.objects.filter(pk=-1)
    for _ in range(2):
        _, found = _both(notes, users)
        assert dict(found) == plain
    later = timezone.now() + datetime.timedelta(days=3, microseconds=7)
    User.objects.filter(pk=rows[0].pk).update(last_login=later)
    _, found = _both(notes, users)
    assert dict(found)[rows[0].pk] == later
    assert dict(found)[rows[0].pk].utcoffset() == datetime.timedelta(0)


def test_the_same_viewers_users_are_read_anew_each_time(rows: list[User]) -> None:
    """UserRows keeps the query of the last users it was asked for; every call
    still reads them (a kept queryset must never answer from its cache), alone
    or in one statement with another read."""
    users = UserRows()
    pks = [u.pk for u in rows]
    assert users(pks)[rows[0].pk].is_active is True
    User.objects.filter(pk=rows[0].pk).update(is_active=False, first_name="changed")
    fresh = users(pks)[rows[0].pk]
    assert (fresh.is_active, fresh.first_name) == (False, "changed")
    User.objects.filter(pk=rows[0].pk).update(is_active=True)
    asked = users.queryset(pks)
    assert users.queryset(list(pks)) is asked
    _, found = _both(Note.objects.filter(pk=-1), asked)
    assert users.build(asked.db, found)[rows[0].pk].is_active is True
