"""Which changed rows match which filters, for every list subscriber of a loop
at once: one query per type and row scope (everybody, or each viewer for a
type with ``get_queryset``) for the changed rows, with one
``CASE WHEN <filter> THEN true ELSE false END`` column per distinct filter,
at most :data:`FILTERS_PER_QUERY` per query.

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

from django.db.models import BooleanField, Case, Model, Q, QuerySet, Value, When
from strawberry import UNSET, Info
from strawberry_django.filters import apply, process_filters

from gql_observer.graphql.reads import Reads
from gql_observer.graphql.rows import has_get_queryset, queryset
from gql_observer.graphql.viewers import Viewer
from gql_observer.observe.definition import ObservedDefinition

__all__ = ["FILTERS_PER_QUERY", "Wanted", "filter_key", "matching"]

#: Filters evaluated as columns of one query.
FILTERS_PER_QUERY: Final = 500


def filter_key(filters: Any) -> Hashable:
    """Equal for equal filter inputs (strawberry inputs are not hashable)."""
    if filters is None or filters is UNSET:
        return None
    return (type(filters).__qualname__, repr(filters))


class Wanted:
    """One ask: which of the rows ``pks`` match ``filters`` (known by ``key``)?
    Subscribers of one filter that handle the same changes ask the same."""

    __slots__ = ("_hash", "filters", "key", "pks")

    def __init__(self, key: Hashable, filters: Any, pks: tuple[str, ...]) -> None:
        self.key, self.filters, self.pks = key, filters, pks
        self._hash = hash((key, pks))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Wanted) and (self.key, self.pks) == (other.key, other.pks)


def _flags(
    base: QuerySet[Any], groups: dict[Hashable, Any], info: Info | None
) -> tuple[dict[str, Model], dict[Hashable, set[str]]]:
    """The rows of ``base`` and, per filter key, the keys of the rows it matches."""
    columns: dict[str, Any] = {}
    names: dict[str, Hashable] = {}
    matched: dict[Hashable, set[str]] = {key: set() for key in groups}
    alone: list[Hashable] = []
    for key, filters in groups.items():
        if filters is None:
            condition: Any = Value(True)
        else:
            changed, q = process_filters(filters, base, info)
            if changed is not base:
                alone.append(key)
                continue
            condition = (
                Value(True)
                if q == Q()
                else Case(
                    When(q, then=Value(True)), default=Value(False), output_field=BooleanField()
                )
            )
        name = f"gqlobs_f{len(columns)}"
        columns[name] = condition
        names[name] = key
    rows: dict[str, Model] = {}
    todo = list(columns.items())
    for start in range(0, max(len(todo), 1), FILTERS_PER_QUERY):
        chunk = dict(todo[start : start + FILTERS_PER_QUERY])
        annotated = base.annotate(**chunk) if chunk else base
        for row in annotated:
            pk = str(row.pk)
            rows.setdefault(pk, row)
            for name in chunk:
                if getattr(row, name):
                    matched[names[name]].add(pk)
    for key in alone:
        for row in apply(groups[key], base, info):
            pk = str(row.pk)
            rows.setdefault(pk, row)
            matched[key].add(pk)
    return rows, matched


def _fetch(
    definition: ObservedDefinition,
    info: Info | None,
    wanted: list[Wanted],
    plan: object = None,  # a batch's relation plan: list rows read none
) -> dict[Wanted, dict[str, Model | None]]:
    groups = {w.key: w.filters for w in wanted}
    pks = sorted({pk for w in wanted for pk in w.pks})
    base = queryset(definition, info).filter(pk__in=pks)
    rows, matched = _flags(base, groups, info)
    return {w: {pk: rows[pk] if pk in matched[w.key] else None for pk in w.pks} for w in wanted}


def matching(
    reads: Reads,
    definition: ObservedDefinition,
    info: Info | None,
    viewer: Viewer,
    filters: Any,
    pks: list[str],
) -> asyncio.Future[dict[str, Model | None]]:
    """The rows among ``pks`` that exist, are in the type's queryset (as
    ``viewer`` sees it) and match ``filters``, by pk: ``None`` for the others."""
    scope = viewer.identity if has_get_queryset(definition) else None
    batch = reads.batch(
        ("list rows", definition.field_name, scope),
        lambda: partial(_fetch, definition, info),
        definition.model._meta.label,
    )
    return batch.ask(Wanted(filter_key(filters), filters, tuple(pks)))
