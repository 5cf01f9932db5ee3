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

from django.db.models import Model, QuerySet
from strawberry import UNSET, Info
from strawberry_django.filters import apply

from gql_observer.graphql.conditions import Conditions
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


class Asked:
    """One ask: which of the rows ``pks`` match each of ``filters`` (by filter
    key)? One per list group and batch of changes; asks are told apart by
    identity (two groups that ask alike still get an answer each)."""

    __slots__ = ("filters", "pks")

    def __init__(self, filters: dict[Hashable, Any], pks: list[str]) -> None:
        self.filters, self.pks = filters, pks


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
    scope = viewer.identity if has_get_queryset(definition) or personal else None
    batch = reads.batch(
        ("list rows", definition.field_name, scope),
        lambda: partial(_fetch, conditions, definition, info),
        definition.model._meta.label,
    )
    return batch.ask(Asked(filters, pks))
