"""Which changed rows match which filters, for every list subscriber of a loop
at once: one query per type and row scope (everybody, or each viewer for a
type with ``get_queryset``) reads the changed rows; each distinct filter is
decided in Python on the rows read where its lookups allow it exactly
(:mod:`gql_observer.graphql.lookups`; only those the row's own values may
match are asked, :mod:`gql_observer.graphql.filter_index`), else by a
``CASE WHEN <filter> THEN true ELSE false END`` column of that query, at most
:data:`FILTERS_PER_QUERY` per query. Filters are compiled once
(:mod:`gql_observer.graphql.conditions`).

The asks of a window are coalesced by :class:`~gql_observer.graphql.reads.Reads`
(the query starts after every ask it answers, so a subscriber never adopts an
older read than its previous one). A filter that changes the queryset itself
(a custom filter method, ``DISTINCT``) cannot be a column: it gets a query of
its own. The ``permission`` hook is per viewer, decided afterwards in Python
on the rows read here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from functools import partial
from typing import Any, Final

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db.models import BooleanField, Exists, Model, OuterRef, QuerySet, Value
from django.db.models.expressions import RawSQL
from django.db.models.query import ModelIterable
from strawberry import UNSET, Info
from strawberry_django.filters import apply

from gql_observer.graphql.conditions import Conditions, FilterSet
from gql_observer.graphql.reads import Reads
from gql_observer.graphql.rows import has_get_queryset, queryset
from gql_observer.graphql.viewers import Viewer
from gql_observer.observe.definition import ObservedDefinition

__all__ = ["FILTERS_PER_QUERY", "Asked", "Matches", "filter_key", "matching"]

#: Filters evaluated as columns of one query.
FILTERS_PER_QUERY: Final = 500


def filter_key(filters: Any) -> Hashable:
    """Equal for equal filter inputs (strawberry inputs are not hashable)."""
    if filters is None or filters is UNSET:
        return None
    return (type(filters).__qualname__, repr(filters))


#: Viewers' row scopes (``get_queryset``) decided by one query, one column each.
SCOPES_PER_QUERY: Final = 500
#: Whether the row scopes of many viewers are read together (off: one query per
#: viewer, the plain path the differential tests compare with).
COMBINE_SCOPES = True


class Asked:
    """One ask: which of the rows ``pks`` match each of ``filters`` (by filter
    key)? One per list group and batch of changes; asks are told apart by
    identity (two groups that ask alike still get an answer each). For a type
    whose rows depend on the viewer, ``info`` and ``scope`` are the viewer's."""

    __slots__ = ("filters", "info", "pks", "scope")

    def __init__(
        self,
        filters: dict[Hashable, Any],
        pks: list[str],
        info: Info | None = None,
        scope: Hashable = None,
    ) -> None:
        self.filters, self.pks, self.info, self.scope = filters, pks, info, scope


#: What an ask is answered: the rows read (those that exist and are in the
#: type's queryset), and per filter key the keys of those its filter matches.
#: Both may hold rows another ask of the same read asked for.
Matches = tuple[dict[str, Model], dict[Hashable, set[str]]]


def _flags(
    conditions: Conditions,
    model: type[Model],
    base: QuerySet[Any],
    groups: dict[Hashable, Any],
    info: Info | None,
    pks: list[str],
) -> tuple[dict[str, Model], dict[Hashable, set[str]]]:
    """The rows of ``base`` among ``pks`` and, per filter key, the keys of the
    rows it matches: one query for every filter but those that change the
    queryset (up to :data:`FILTERS_PER_QUERY` decided in SQL per query)."""
    found = conditions.filter_set(model, groups, info, base)
    columns, index = found.columns, found.index
    matched: dict[Hashable, set[str]] = {key: set() for key in groups}
    rows: dict[str, Model] = {}
    if found.decided or columns:
        for start in range(0, max(len(columns), 1), FILTERS_PER_QUERY):
            chunk = columns[start : start + FILTERS_PER_QUERY]
            names = [(f"gqlobs_f{i}", key) for i, (key, _) in enumerate(chunk)]
            for row in conditions.columns(base, chunk).filter(pk__in=pks):
                pk = str(row.pk)
                if pk not in rows:
                    rows[pk] = row
                    # Decided on the row as read (a join's repeats are the same row),
                    # by the filters it may match.
                    for key, verdict in index.candidates(row):
                        if verdict(row) is True:
                            matched[key].add(pk)
                for name, key in names:
                    if getattr(row, name):
                        matched[key].add(pk)
    for key in found.alone:
        for row in apply(groups[key], base.filter(pk__in=pks), info):
            pk = str(row.pk)
            rows.setdefault(pk, row)
            matched[key].add(pk)
    return rows, matched


def _fetch(
    conditions: Conditions,
    definition: ObservedDefinition,
    info: Info | None,
    asked: list[Asked],
    plan: object = None,  # a batch's relation plan: list rows read none
) -> dict[Asked, Matches]:
    groups = {key: filters for a in asked for key, filters in a.filters.items()}
    pks = sorted({pk for a in asked for pk in a.pks})
    base = queryset(definition, info)
    found = _flags(conditions, definition.model, base, groups, info, pks)
    return dict.fromkeys(asked, found)


def _fetch_scopes(
    conditions: Conditions,
    definition: ObservedDefinition,
    asked: list[Asked],
    plan: object = None,  # a batch's relation plan: list rows read none
) -> dict[Asked, Matches]:
    """The asks of many viewers of a type whose rows depend on the viewer
    (``get_queryset``): each viewer's answer is what :func:`_fetch` gives it
    alone. Viewers whose queryset only narrows the model's rows (no
    annotation, deferral, ``select_related``, ``values``, slice or union:
    :func:`_narrows`) and whose filters are all decided in Python are read
    together: one query of the changed rows with a column per viewer saying
    whether its queryset holds the row (:func:`_holds`; :data:`SCOPES_PER_QUERY`
    per query), each viewer's rows built apart from the values read. The
    others are read one by one."""
    by_scope: dict[Hashable, list[Asked]] = {}
    for ask in asked:
        by_scope.setdefault(ask.scope, []).append(ask)
    model = definition.model
    plain = model._default_manager.all()
    answers: dict[Asked, Matches] = {}
    together: list[tuple[QuerySet[Any], FilterSet, list[Hashable], list[Asked]]] = []
    combine = COMBINE_SCOPES and len(by_scope) > 1 and _narrows(plain, plain)
    for asks in by_scope.values():
        info = asks[0].info
        groups = {key: filters for a in asks for key, filters in a.filters.items()}
        base = queryset(definition, info)
        if combine and _narrows(base, plain):
            found = conditions.filter_set(model, groups, info, base)
            if not found.columns and not found.alone:
                together.append((base, found, list(groups), asks))
                continue
        pks = sorted({pk for a in asks for pk in a.pks})
        answers.update(dict.fromkeys(asks, _flags(conditions, model, base, groups, info, pks)))
    if together:
        answers.update(_together(model, plain, together))
    return answers


def _narrows(base: QuerySet[Any], plain: QuerySet[Any]) -> bool:
    """Whether ``base`` reads the same rows as ``plain`` (the default manager's,
    which must read whole model rows itself), only fewer of them: then a row
    of ``plain`` that ``base`` holds is the row ``base`` reads. (No annotation,
    extra select or table, ``select_related``, ``values``, ``only``/``defer``,
    prefetch, ``distinct`` on fields, slice or union.)"""
    query = base.query
    return (
        base.model is plain.model
        and base.db == plain.db
        and base._iterable_class is ModelIterable
        and getattr(base, "_fields", None) is None
        and not getattr(base, "_prefetch_related_lookups", ())
        and not query.annotations
        and not query.extra
        and not query.extra_tables
        and not query.select_related
        and not query.select
        and not query.distinct_fields
        and not query.combinator
        and not query.is_sliced
        and query.deferred_loading == (frozenset(), True)
    )


def _together(
    model: type[Model],
    plain: QuerySet[Any],
    together: list[tuple[QuerySet[Any], FilterSet, list[Hashable], list[Asked]]],
) -> dict[Asked, Matches]:
    """The rows of ``together``'s viewers' querysets among their pks, read by
    one query per :data:`SCOPES_PER_QUERY` viewers, and their filters decided
    in Python; each viewer gets rows of its own, as a read of its own would."""
    pks = sorted({pk for _, _, _, asks in together for a in asks for pk in a.pks})
    names = [field.attname for field in model._meta.concrete_fields]
    at = names.index(model._meta.pk.attname)
    # Per viewer, its rows' values as the query that found them read them.
    held: list[list[tuple[Any, ...]]] = [[] for _ in together]
    for start in range(0, len(together), SCOPES_PER_QUERY):
        # The viewers of this query that may hold rows, and their columns.
        viewers, columns = [], {}
        for n, (base, _, _, _) in enumerate(together[start : start + SCOPES_PER_QUERY]):
            column = _holds(base)
            if column is not None:
                viewers.append(start + n)
                columns[f"gqlobs_s{n}"] = column
        if not columns:
            continue
        read = plain.filter(pk__in=pks).order_by().annotate(**columns)
        for row in read.values_list(*names, *columns):
            values = row[: len(names)]
            for viewer, holds in zip(viewers, row[len(names) :], strict=True):
                if holds:
                    held[viewer].append(values)
    out: dict[Asked, Matches] = {}
    for (_, found, keys, asks), mine in zip(together, held, strict=True):
        rows = {str(values[at]): model.from_db(plain.db, names, values) for values in mine}
        matched: dict[Hashable, set[str]] = {key: set() for key in keys}
        for pk, row in rows.items():
            for key, verdict in found.index.candidates(row):
                if verdict(row) is True:
                    matched[key].add(pk)
        out.update(dict.fromkeys(asks, (rows, matched)))
    return out


def _holds(base: QuerySet[Any]) -> Any:
    """A boolean column of the model's rows: whether ``base`` holds the row
    (``None``: it holds none). Its own condition compiled once where it names
    no other table (as filters' columns are compiled), else an ``EXISTS``."""
    query = base.query
    if query.is_empty():
        return None
    # (A join the condition does not use stays in the alias map, unreferenced.)
    joined = sum(1 for alias in query.alias_map if query.alias_refcount.get(alias)) > 1
    if joined or base.model._meta.parents:
        return Exists(base.filter(pk=OuterRef("pk")).order_by())
    try:
        sql, params = query.get_compiler(using=base.db).compile(query.where)
    except EmptyResultSet:
        return None
    except FullResultSet:
        return Value(True, output_field=BooleanField())
    return RawSQL(sql, params, output_field=BooleanField())


def matching(
    conditions: Conditions,
    reads: Reads,
    definition: ObservedDefinition,
    info: Info | None,
    viewer: Viewer,
    filters: dict[Hashable, Any],
    pks: list[str],
    personal: bool = False,
) -> asyncio.Future[Matches]:
    """The rows among ``pks`` that exist and are in the type's queryset (as
    ``viewer`` sees it), and per key of ``filters`` (``filter_key`` of each
    filter input, which the caller keeps: printing a filter input costs more
    than the rest of an ask) the keys of those the filter matches. The reads of
    one type and viewer scope are coalesced: a ``personal`` ask (a filter that
    may read who asks) is only ever read with the asks of the same viewer."""
    label = definition.model._meta.label
    if personal or not has_get_queryset(definition):
        scope = viewer.identity if personal else None
        batch = reads.batch(
            ("list rows", definition.field_name, scope),
            lambda: partial(_fetch, conditions, definition, info),
            label,
        )
        return batch.ask(Asked(filters, pks))
    # Rows that depend on the viewer: every viewer's asks in one batch, each
    # read as its own (_fetch_scopes).
    viewers = reads.batch(
        ("list rows", definition.field_name, "viewers"),
        lambda: partial(_fetch_scopes, conditions, definition),
        label,
    )
    return viewers.ask(Asked(filters, pks, info, viewer.identity))
