"""Matching a change against many live-list filters: the Python verdicts
(graphql/lookups.py) against the database's own, the compiled filters kept
once (graphql/conditions.py), and one query for a hundred filters through the
protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import strawberry
import strawberry_django
from django.contrib.auth.models import User
from django.db import DatabaseError, connection, models
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from strawberry_django.fields.filter_types import FilterLookup, StrFilterLookup
from strawberry_django.filters import apply

from gql_observer.graphql.conditions import Conditions, reusable
from gql_observer.graphql.filter_index import FilterIndex
from gql_observer.graphql.lookups import EVERYTHING, NOTHING, hint, verdict
from gql_observer.graphql.matching import _flags, filter_key
from gql_observer.testing import GraphQLTransportWSCommunicator
from schema_examples.users.schema import UserFilter
from tests.support.clients import connect, library_queries
from tests.support.lists import list_users, row, subscribe_users
from tests.support.users import save_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db_matrix]


class Sample(models.Model):
    """Rows with a NULL wherever a column may hold one (a table of this test's own)."""

    name = models.CharField(max_length=40, null=True)
    code = models.CharField(max_length=40, default="")
    n = models.IntegerField(null=True)
    flag = models.BooleanField(null=True)

    class Meta:
        app_label = "notes"
        db_table = "gqlobs_test_matching_sample"
        managed = False


@pytest.fixture
def samples(transactional_db: None) -> Iterator[type[Sample]]:
    with connection.schema_editor() as editor:
        editor.create_model(Sample)
    try:
        yield Sample
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(Sample)


# -- Python verdicts equal the database's ---------------------------------------

# Case, non-ASCII letters whose case mappings differ between SQLite, PostgreSQL
# and Python (e and E acute, sharp s, dotless i, dotted I, the Kelvin sign),
# LIKE's wildcards and escape.
LETTERS = "aAbBkKzZ%_\\ -\u00e9\u00c9\u00df\u0131\u0130\u212a"
if connection.vendor == "sqlite":
    LETTERS += "\0"  # SQLite's LIKE reads to the first NUL; PostgreSQL has no NUL in text
texts = st.text(LETTERS, max_size=4)
ints = st.one_of(st.integers(-3, 3), st.sampled_from([2**31, -(2**31) - 1, 2**70, -(2**70)]))
TEXT_LOOKUPS = [
    "exact",
    "iexact",
    "contains",
    "icontains",
    "startswith",
    "istartswith",
    "endswith",
    "iendswith",
    "gt",
    "gte",
    "lt",
    "lte",
]
INT_LOOKUPS = ["exact", "gt", "gte", "lt", "lte"]


@st.composite
def leaves(draw: st.DrawFn) -> Q:
    field = draw(st.sampled_from(["name", "code", "n", "flag", "id"]))
    if field == "flag":
        lookup = draw(st.sampled_from(["exact", "in", "isnull"]))
        if lookup == "in":
            return Q(flag__in=draw(st.lists(st.booleans(), max_size=2)))
        if lookup == "isnull":
            return Q(flag__isnull=draw(st.booleans()))
        return Q(flag=draw(st.one_of(st.none(), st.booleans())))
    values = texts if field in ("name", "code") else ints
    lookup = draw(st.sampled_from([*TEXT_LOOKUPS, "in", "range", "isnull"]))
    if field not in ("name", "code") and lookup not in (*INT_LOOKUPS, "in", "range", "isnull"):
        lookup = "exact"
    if lookup == "in":
        value: Any = draw(st.lists(st.one_of(st.none(), values), max_size=3))
    elif lookup == "range":
        value = (draw(values), draw(values))
    elif lookup == "isnull":
        value = draw(st.booleans())
    elif lookup in ("exact", "iexact"):
        value = draw(st.one_of(st.none(), values))
    else:
        value = draw(values)
    return Q(**{f"{field}__{lookup}": value})


def _combine(children: st.SearchStrategy[Q]) -> st.SearchStrategy[Q]:
    return st.one_of(
        st.tuples(children, children).map(lambda p: p[0] & p[1]),
        st.tuples(children, children).map(lambda p: p[0] | p[1]),
        children.map(lambda q: ~q),
    )


filters = st.recursive(st.one_of(leaves(), st.just(Q()), st.just(~Q())), _combine, max_leaves=6)
rows = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.one_of(st.none(), texts),
            "code": texts,
            "n": st.one_of(st.none(), st.integers(-3, 3)),
            "flag": st.one_of(st.none(), st.booleans()),
        }
    ),
    min_size=1,
    max_size=6,
)


def test_python_verdicts_equal_the_databases_for_random_rows_and_filters(
    samples: type[Sample],
) -> None:
    """Each verdict against the database's own filter; and the filter index
    (which verdicts a row is asked) against asking every verdict: it may skip a
    filter only where that filter's verdict is not true."""
    decided: list[Q] = []
    skipped = 0

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(rows, st.lists(filters, min_size=1, max_size=4))
    # Rows the index must not skip, whatever the draws: a value after the
    # start (contains, endsWith), escaped and unescaped wildcards in a prefix,
    # case (SQLite's LIKE folds it), AND/OR/NOT around hinted parts.
    @example(
        [
            {"name": "ax", "code": "bxa", "n": 1, "flag": True},
            {"name": "x%y", "code": "A_b", "n": None, "flag": None},
            {"name": "kx", "code": "K", "n": 2, "flag": False},
        ],
        [Q(name__contains="x"), Q(code__endswith="a"), Q(name__startswith="x%")],
    )
    @example(
        [
            {"name": "A_b", "code": "azb", "n": 1, "flag": True},
            {"name": "kx", "code": "K", "n": 2, "flag": False},
        ],
        [
            Q(code__startswith="a") & Q(code__contains="z"),
            Q(name__in=["kx", "z"]) | Q(code__contains="K"),
            Q(name__startswith="a_") | ~Q(code="K"),
            Q(name__iexact="KX") | Q(n=2),
        ],
    )
    def check(values: list[dict[str, Any]], qs: list[Q]) -> None:
        verdicts: list[tuple[int, Any, Any]] = []
        samples._default_manager.all().delete()
        samples._default_manager.bulk_create([samples(**v) for v in values])
        read = list(samples._default_manager.all())  # the rows as the matching query reads them
        for q in qs:
            try:
                expected = set(samples._default_manager.filter(q).values_list("pk", flat=True))
            except (ValueError, TypeError, OverflowError, DatabaseError):
                continue  # refused (None where a lookup takes none, a number too large)
            decide = verdict(samples, q, connection.alias)
            if decide is None:
                continue
            decided.append(q)
            assert {r.pk for r in read if decide(r) is True} == expected, (q, values)
            verdicts.append((len(verdicts), decide, hint(decide)))
        index = FilterIndex(verdicts)
        for r in read:
            asked = {key for key, _ in index.candidates(r)}
            every = {key for key, decide, _ in verdicts if decide(r) is True}
            indexed = {key for key, decide in index.candidates(r) if decide(r) is True}
            assert indexed == every, (values, qs, r.__dict__)
            nonlocal skipped
            skipped += len(verdicts) - len(asked)

    check()
    # The differential proves something only where Python decided, and the
    # index's only where it skipped filters.
    assert len(decided) > 300, len(decided)
    assert skipped > 0, skipped  # 57 to 233 in runs of 300 examples


def test_the_filter_index_asks_exactly_the_filters_a_row_may_match(
    samples: type[Sample],
) -> None:
    """Which verdicts the index asks, row by row: those whose hint holds one of
    the row's values or prefixes, and those without a hint; no other."""
    filters = {
        "exact": Q(name="ax"),
        "in": Q(name__in=["kx", "zz"]),
        "starts": Q(name__startswith="a"),
        "escaped": Q(name__startswith="x%"),  # the literal start is "x%"
        "contains": Q(name__contains="x"),  # no hint: always asked
        "and": Q(name__startswith="k") & Q(code="K"),
        "or": Q(name="zz") | Q(code__startswith="b"),
        "not": ~Q(name="ax"),  # no hint: always asked
    }
    samples._default_manager.bulk_create(
        [samples(name=name, code=code) for name, code in [("ax", "bxa"), ("x%y", "K"), ("kx", "")]]
    )
    verdicts = [(key, verdict(samples, q, connection.alias)) for key, q in filters.items()]
    index = FilterIndex([(key, decide, hint(decide)) for key, decide in verdicts])
    asked = {
        row.name: {key for key, _ in index.candidates(row)}
        for row in samples._default_manager.all()
    }
    assert asked == {
        "ax": {"exact", "starts", "contains", "or", "not"},
        "x%y": {"escaped", "contains", "not"},
        "kx": {"in", "contains", "and", "not"},
    }


def _decided(q: Q) -> bool:
    return verdict(User, q, connection.alias) is not None


def test_which_lookups_are_decided_in_python_on_each_database(users: list[User]) -> None:
    sqlite = connection.vendor == "sqlite"
    assert _decided(Q(username="a") | Q(email__in=["a", "b"]))
    assert _decided(Q(username__startswith="a%") & ~Q(username__endswith="_"))
    assert _decided(Q(username__contains="x") | Q(id__gt=3) | Q(id__range=(1, 2)))
    assert _decided(Q(is_active=False) | Q(is_staff=True) | Q(email__isnull=True))
    # PostgreSQL's UPPER() follows the database's locale; SQLite folds ASCII only.
    assert _decided(Q(username__iexact="A")) is sqlite
    assert _decided(Q(username__icontains="A")) is sqlite
    # Text order is code point order on SQLite only (PostgreSQL: the collation).
    assert _decided(Q(username__gt="a")) is sqlite
    # Never: a regular expression, a join, a date.
    assert not _decided(Q(username__regex="^a"))
    assert not _decided(Q(groups__name="x"))
    assert not _decided(Q(last_login__year=2020))
    # What Django compiles to nothing, or to no row at all.
    assert verdict(User, ~Q(), connection.alias) is EVERYTHING
    assert verdict(User, Q(id__in=[]), connection.alias) is NOTHING
    assert verdict(User, Q(id__gt=-(2**70)), connection.alias) is EVERYTHING


# -- compiled once ----------------------------------------------------------------


def test_a_filter_is_compiled_once_and_the_least_recently_used_goes_first(
    users: list[User],
) -> None:
    conditions = Conditions(filters=2)
    base = User.objects.all()
    a, b, c = (UserFilter(username={"exact": name}) for name in "abc")  # type: ignore[call-arg]
    first = conditions.conditions(User, {"a": a}, None, base)["a"]
    assert first.verdict is not None and first.kept
    assert conditions.conditions(User, {"a": a}, None, base)["a"] is first
    conditions.conditions(User, {"b": b}, None, base)
    conditions.conditions(User, {"a": a}, None, base)  # a is now the most recent
    conditions.conditions(User, {"c": c}, None, base)  # b goes
    assert len(conditions) == 2
    assert conditions.conditions(User, {"a": a}, None, base)["a"] is first
    assert conditions.conditions(User, {"b": b}, None, base)["b"] is not first


def test_the_filters_kept_are_bounded_in_the_text_clients_send_too(
    users: list[User],
) -> None:
    """A client chooses how big a filter is (an ``inList`` of thousands of ids
    compiles to megabytes): what is kept after its subscription ends is bounded
    in the filters' text, not only in their number."""
    conditions = Conditions(text=20_000)
    base = User.objects.all()
    small = UserFilter(username={"exact": "a"})  # type: ignore[call-arg]
    ids = FilterLookup(in_list=[str(n) for n in range(5_000)])  # type: ignore[call-arg]
    big = UserFilter(id=ids)  # type: ignore[call-arg]
    keys = {name: filter_key(f) for name, f in (("small", small), ("big", big))}
    assert len(keys["big"][1]) > 20_000 > len(keys["small"][1])  # type: ignore[index]
    first = conditions.conditions(User, {keys["small"]: small}, None, base)[keys["small"]]
    heavy = conditions.conditions(User, {keys["big"]: big}, None, base)[keys["big"]]
    assert heavy.verdict is not None  # compiled and served, only not kept
    assert conditions.conditions(User, {keys["big"]: big}, None, base)[keys["big"]] is not heavy
    assert conditions.conditions(User, {keys["small"]: small}, None, base)[keys["small"]] is first
    assert len(conditions) == 1
    # Nor is a set of filters that prints to more than the bound.
    both = {keys["small"]: small, keys["big"]: big}
    assert conditions.filter_set(User, both, None, base) is not conditions.filter_set(
        User, both, None, base
    )


@strawberry_django.filter_type(User, lookups=True)
class OwnFilter:
    username: strawberry.auto

    @strawberry_django.filter_field
    def initial(self, value: str, prefix: str) -> Q:
        return Q(**{f"{prefix}username__startswith": value})


def test_a_filter_with_a_method_of_its_own_is_compiled_for_every_read(
    users: list[User],
) -> None:
    own = OwnFilter(initial="t")  # type: ignore[call-arg]
    assert not reusable(own)
    assert reusable(UserFilter(username={"startsWith": "t"}))  # type: ignore[call-arg]
    # The method is strawberry-django's to call only when the input sets its field.
    assert reusable(OwnFilter(username={"exact": "t"}))  # type: ignore[call-arg]
    assert not reusable(UserFilter(OR=own))  # type: ignore[call-arg]
    conditions = Conditions()
    base = User.objects.all()
    first = conditions.conditions(User, {"own": own}, None, base)["own"]
    assert not first.kept
    assert conditions.conditions(User, {"own": own}, None, base)["own"] is not first


def test_a_set_of_filters_is_sorted_and_indexed_once_per_kind_of_base(
    users: list[User],
) -> None:
    conditions = Conditions()
    base = User.objects.all()
    a, b = (UserFilter(username={"exact": name}) for name in "ab")  # type: ignore[call-arg]
    both = conditions.filter_set(User, {"a": a, "b": b}, None, base)
    assert [key for key, _, _ in both.decided] == ["a", "b"] and both.kept
    # The same filters, in another order, on another base that reads whole rows.
    again = conditions.filter_set(User, {"b": b, "a": a}, None, User.objects.filter(id__gt=0))
    assert again is both
    # Another set, or a base that defers a field (no verdict may load it), is another.
    assert conditions.filter_set(User, {"a": a}, None, base) is not both
    deferred = conditions.filter_set(User, {"a": a, "b": b}, None, User.objects.only("id"))
    assert deferred is not both and not deferred.decided
    assert [key for key, _ in deferred.columns] == ["a", "b"]
    # A filter compiled per read makes its whole set built per read.
    own = OwnFilter(initial="t")  # type: ignore[call-arg]
    per_read = conditions.filter_set(User, {"a": a, "own": own}, None, base)
    assert not per_read.kept
    assert conditions.filter_set(User, {"a": a, "own": own}, None, base) is not per_read


# -- through the protocol ----------------------------------------------------------


def hundred(k: int) -> dict[str, Any]:
    """Filter k of the benchmark's hundred: username starts with f<k>-, or the
    e-mail is g<k // 10>@x (shared by ten), or all@x (everybody's)."""
    return {
        "username": {"startsWith": f"f{k}-"},
        "OR": {"email": {"inList": [f"g{k // 10}@x", "all@x"]}},
    }


def member(pk: int, username: str, email: str) -> dict[str, Any]:
    return {"id": str(pk), "username": username, "email": email}


async def _hundred_subscribers(
    application: Any, make: Callable[[int], dict[str, Any]]
) -> list[tuple[GraphQLTransportWSCommunicator, str]]:
    """Ten clients of ten subscriptions each: subscription k has filter ``make(k)``."""
    clients = [await connect(application) for _ in range(10)]
    return [
        (clients[k // 10], await subscribe_users(clients[k // 10], make(k), rid=k))
        for k in range(100)
    ]


async def frames(client: GraphQLTransportWSCommunicator, count: int) -> dict[str, Any]:
    """The next ``count`` frames of ``client`` (of as many subscriptions), by operation."""
    received: dict[str, Any] = {}
    for _ in range(count):
        message = await client.receive()
        assert message["type"] == "next" and message["id"] not in received, message
        received[message["id"]] = message["payload"]["data"]
    return received


async def barrier(subscribers: list[tuple[GraphQLTransportWSCommunicator, str]]) -> None:
    """A change every filter matches is the next frame of every subscription."""
    await save_user(2, email="all@x")
    for n, client in enumerate(dict.fromkeys(c for c, _ in subscribers)):
        expected = {
            op: row("users", "create", 201, 2, member(2, "test 2", "all@x"), k)
            for k, (c, op) in enumerate(subscribers)
            if c is client
        }
        assert await frames(client, 10) == expected, n
        await client.disconnect()


async def test_one_save_against_a_hundred_distinct_filters_costs_one_query(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(SUBSCRIBE_RATE=10_000)
    subscribers = await _hundred_subscribers(application, hundred)
    with library_queries() as queries:
        await save_user(1, email="g3@x")
        assert await frames(subscribers[30][0], 10) == {
            op: row("users", "create", 201, 1, member(1, "test 1", "g3@x"), k)
            for k, (_, op) in enumerate(subscribers)
            if 30 <= k < 40
        }
    # One query for a hundred filters, each decided in Python on the row it read.
    assert len(queries) == 1, queries.statements
    assert "CASE WHEN" not in queries.statements[0]
    # The other ninety never heard of user 1.
    await barrier(subscribers)


def mixed(k: int) -> dict[str, Any]:
    """Filters SQL decides (a regular expression; on PostgreSQL, iExact) among
    those Python decides."""
    if k % 3 == 0:
        return {"username": {"regex": f"^f{k}-"}, "OR": {"email": {"exact": "all@x"}}}
    if k % 3 == 1:
        return {"username": {"iExact": f"F{k}-X"}, "OR": {"email": {"exact": "all@x"}}}
    return hundred(k)


async def test_filters_only_sql_decides_are_columns_of_the_same_one_query(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(SUBSCRIBE_RATE=10_000, LIST_REGEX_ON_SQLITE=True)
    subscribers = await _hundred_subscribers(application, mixed)
    (client, op33), (_, op34) = subscribers[33], subscribers[34]
    with library_queries() as queries:
        await save_user(1, username="f33-x")  # the regular expression of 33
        assert await frames(client, 1) == {
            op33: row("users", "create", 201, 1, member(1, "f33-x", "1@example.com"), 33)
        }
        await save_user(1, username="f34-x")  # iExact "F34-X"
        assert await frames(client, 2) == {
            op33: row("users", "delete", 204, 1, None, 33),
            op34: row("users", "create", 201, 1, member(1, "f34-x", "1@example.com"), 34),
        }
    # 34 regular expressions, and on PostgreSQL 33 iExact, as columns of one query.
    columns = 34 + (33 if connection.vendor == "postgresql" else 0)
    assert len(queries) == 2, queries.statements
    assert [s.count("CASE WHEN") for s in queries.statements] == [columns, columns]
    await barrier(subscribers)


async def test_a_not_of_nothing_matches_every_row_and_the_subscription_goes_on(
    client: GraphQLTransportWSCommunicator,
) -> None:
    everything: dict[str, Any] = {"NOT": {}}
    page = await list_users(client, everything)
    assert [u["id"] for u in page["data"]] == ["1", "2", "3"]
    op = await subscribe_users(client, everything)
    await save_user(1, username="renamed")
    assert await client.next(op) == row(
        "users", "update", 200, 1, member(1, "renamed", "1@example.com")
    )
    await save_user(2, username="again")
    assert await client.next(op) == row(
        "users", "update", 200, 2, member(2, "again", "2@example.com")
    )


# -- strawberry-django's filters, as clients send them ----------------------------

ID_LOOKUP = next(f for f in UserFilter.__strawberry_definition__.fields if f.name == "id").type
STR_LOOKUPS = [
    "exact",
    "i_exact",
    "contains",
    "i_contains",
    "starts_with",
    "i_starts_with",
    "ends_with",
    "i_ends_with",
    "in_list",
    "is_null",
]


@st.composite
def user_filter_leaves(draw: st.DrawFn) -> Any:
    field = draw(st.sampled_from(["id", "username", "email"]))
    if field == "id":
        lookup = draw(st.sampled_from(["exact", "in_list", "is_null"]))
        ids = st.integers(0, 8).map(str)
        value: Any = {
            "exact": ids,
            "in_list": st.lists(ids, max_size=3),
            "is_null": st.booleans(),
        }[lookup]
        return UserFilter(id=ID_LOOKUP.of_type(**{lookup: draw(value)}))  # type: ignore[call-arg]
    lookup = draw(st.sampled_from(STR_LOOKUPS))
    if lookup == "in_list":
        value = draw(st.lists(texts, max_size=3))
    elif lookup == "is_null":
        value = draw(st.booleans())
    else:
        value = draw(texts)
    lookups = {lookup: value}
    return UserFilter(**{field: StrFilterLookup(**lookups)})  # type: ignore[arg-type]


def _user_filters(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda a, b: UserFilter(AND=a, OR=b), children, children),  # type: ignore[call-arg]
        st.builds(lambda a, b: UserFilter(username=a.username, OR=b), children, children),  # type: ignore[call-arg]
        children.map(lambda a: UserFilter(NOT=a)),  # type: ignore[call-arg]
    )


user_filters = st.recursive(
    st.one_of(user_filter_leaves(), st.just(UserFilter())), _user_filters, max_leaves=5
)
user_rows = st.lists(st.tuples(texts, texts), min_size=1, max_size=5)


def test_python_verdicts_of_strawberry_filters_equal_the_pages(transactional_db: None) -> None:
    """The same differential on strawberry-django's filter inputs, against
    ``apply(filters, queryset)``: what the list Query's page runs; and the
    filters' columns (compiled once, then reused as SQL) against it too."""
    conditions = Conditions()
    decided: list[Any] = []

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(user_rows, st.lists(user_filters, min_size=1, max_size=4))
    def check(values: list[tuple[str, str]], inputs: list[Any]) -> None:
        User.objects.all().delete()
        User.objects.bulk_create(
            [User(username=f"{n}{name}", email=email) for n, (name, email) in enumerate(values)]
        )
        base = User.objects.all()
        read = list(base)
        pks = [str(r.pk) for r in read]
        for filters in inputs:
            expected = set(apply(filters, base, None).values_list("pk", flat=True))
            key = filter_key(filters)
            # Its CASE WHEN column (every filter is one on rows read without every field).
            _, matched = _flags(
                conditions, User, User.objects.only("id"), {key: filters}, None, pks
            )
            assert matched[key] == {str(pk) for pk in expected}, filters
            condition = conditions.conditions(User, {key: filters}, None, base)[key]
            if condition.alone or condition.verdict is None:
                continue
            decided.append(filters)
            assert {r.pk for r in read if condition.verdict(r) is True} == expected, filters

    check()
    assert len(decided) > 150, len(decided)


def test_rows_read_without_every_field_are_matched_in_sql_by_the_same_one_query(
    users: list[User],
) -> None:
    """A type's queryset that defers fields: no verdict may load one (a query per
    row); every filter is a column of the one query."""
    filters = {
        filter_key(f): f
        for f in (
            UserFilter(username=StrFilterLookup(starts_with="test")),  # type: ignore[call-arg]
            UserFilter(email=StrFilterLookup(exact="2@example.com")),  # type: ignore[call-arg]
        )
    }
    pks = [str(u.pk) for u in users]
    with CaptureQueriesContext(connection) as queries:
        rows, matched = _flags(Conditions(), User, User.objects.only("id"), filters, None, pks)
    assert len(queries) == 1
    assert queries[0]["sql"].count("CASE WHEN") == 2
    starts, email = filters
    assert matched == {starts: set(pks), email: {str(users[1].pk)}}
    assert set(rows) == set(pks)
