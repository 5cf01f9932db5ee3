"""The filters of live lists, compiled once: each distinct filter's ``Q`` and
its Python verdict (:mod:`gql_observer.graphql.lookups`) in an LRU; per set of
filters, how they are decided (:class:`FilterSet`: in Python through one
:class:`~gql_observer.graphql.filter_index.FilterIndex`, as columns, or alone)
and the matching query of those only SQL can decide, each built once per set.

strawberry-django turns a filter input into a ``Q`` (``process_filters``);
resolving it against the model and compiling it to SQL cost more than reading
the rows it is asked about. A filter whose input uses no filter method of its
own (only strawberry-django's lookups, ``AND``/``OR``/``NOT``, ``DISTINCT``)
gives the same ``Q`` for every viewer, request and read: it is compiled once,
by its key, and kept while it is among the :data:`FILTERS` most recently used.
A filter with a method of its own (which may read ``info`` or the queryset) is
compiled again for every read, as strawberry-django applies it to a page.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Final

from django.core.exceptions import EmptyResultSet
from django.db.models import BooleanField, Case, Model, Q, QuerySet, Value, When
from django.db.models.expressions import RawSQL
from strawberry import UNSET, Info
from strawberry.types import has_object_definition
from strawberry_django.fields.filter_order import FilterOrderField
from strawberry_django.filters import process_filters
from strawberry_django.settings import strawberry_django_settings

from gql_observer.graphql.documents import BoundedCache
from gql_observer.graphql.filter_index import FilterIndex, Hint
from gql_observer.graphql.lookups import EVERYTHING, Verdict, hint, verdict

__all__ = ["FILTERS", "FILTER_TEXT", "QUERIES", "SETS", "Condition", "Conditions", "FilterSet"]

#: Compiled filters kept (least recently used first out).
FILTERS: Final = 4_096
#: Matching queries kept, one per set of filters SQL decides.
QUERIES: Final = 256
#: Sets of filters kept (:class:`FilterSet`).
SETS: Final = 64
#: Characters the filters kept may print to, in all (and, apart, the filters of
#: the sets kept): a compiled filter takes some 25 times its text (an ``inList``
#: of 9,000 ids prints to 99 KB and takes 2.6 MB), and a client chooses the
#: text, so the caches are bounded in it, not only in entries.
FILTER_TEXT: Final = 4 * 1024 * 1024


class Condition:
    """One filter, compiled for one database.

    ``alone``: the filter changes the queryset itself (``DISTINCT``, a method
    that returns a queryset): it is applied on its own query. Otherwise ``q``
    is its condition, ``column`` the same as a boolean SQL expression, and
    ``verdict`` decides it in Python on a row read whole (``None``: only SQL
    can), ``hint`` says which rows it may match
    (:mod:`gql_observer.graphql.filter_index`)."""

    __slots__ = ("alone", "column", "hint", "kept", "q", "verdict")

    #: Where it is kept (:class:`Conditions`: its model, database, filter type
    #: and key), the same for every read; ``None``: compiled for one read.
    kept: Hashable | None

    def __init__(self, q: Q | None, verdict: Verdict | None) -> None:
        self.alone = q is None
        self.q = q
        self.verdict = verdict
        self.hint: Hint = None if verdict is None else hint(verdict)
        self.kept = None
        self.column: Any = None
        if q is not None:
            # filter(Q()) and filter(~Q()) both match every row (Django compiles
            # no condition); When() refuses an empty Q.
            self.column = (
                Value(True)
                if not q
                else Case(
                    When(q, then=Value(True)), default=Value(False), output_field=BooleanField()
                )
            )


#: The condition of "no filter".
UNFILTERED: Final = Condition(Q(), EVERYTHING)
UNFILTERED.kept = "unfiltered"


def reusable(filters: Any) -> bool:
    """Whether ``filters`` gives the same ``Q`` whatever the request: no filter
    method of the application's own that strawberry-django would call anywhere
    in it (an object ``filter`` method always; a field's method when the input
    sets the field), since such a method may read ``info`` or the queryset.
    strawberry-django's own lookups, such as ``range``, only read their values."""
    if isinstance(filters, list):
        return all(reusable(value) for value in filters)
    if not has_object_definition(filters):
        return True
    definition = filters.__strawberry_definition__
    if not _library(type(filters)):
        if callable(getattr(filters, "filter", None)):
            return False
        for field in definition.fields:
            if (
                isinstance(field, FilterOrderField)
                and field.filter_order_resolver is not None
                and getattr(filters, field.name, UNSET) is not UNSET
            ):
                return False
    for field in definition.fields:
        value = getattr(filters, field.name, UNSET)
        if value is not UNSET and value is not None and not reusable(value):
            return False
    return True


#: strawberry-django's regular-expression lookups (Python names).
REGEX_LOOKUPS: Final = frozenset({"regex", "i_regex"})


def regexes(filters: Any) -> list[Any]:
    """The values of strawberry-django's regular-expression lookups (``regex``,
    ``iRegex``) anywhere in ``filters``."""
    if isinstance(filters, list):
        return [found for value in filters for found in regexes(value)]
    if not has_object_definition(filters):
        return []
    library = _library(type(filters))
    found: list[Any] = []
    for field in filters.__strawberry_definition__.fields:
        value = getattr(filters, field.python_name, UNSET)
        if value is UNSET or value is None:
            continue
        if library and field.python_name in REGEX_LOOKUPS:
            found.append(value)
        else:
            found += regexes(value)
    return found


def _compiled(base: QuerySet[Any], annotations: dict[str, Any]) -> dict[str, Any]:
    """``annotations`` as the SQL they compile to on ``base``, so that a read
    compiles none of them again; the same expressions where one needs a join
    (its SQL names a table the plain read does not have)."""
    query = base.annotate(**annotations).query
    if len(query.alias_map) > 1 or base.model._meta.parents:
        return annotations
    compiler = query.get_compiler(using=base.db)
    compiled: dict[str, Any] = {}
    for name in annotations:
        sql, params = compiler.compile(query.annotations[name])
        compiled[name] = RawSQL(sql, params, output_field=BooleanField())
    return compiled


def _library(cls: type) -> bool:
    """Whether ``cls`` is one of strawberry-django's lookup types (or strawberry's
    specialisation of one, such as ``BaseFilterLookup[ID]``)."""
    if cls.__module__.startswith("strawberry_django."):
        return True
    return cls.__module__.startswith("strawberry.") and any(
        base.__module__.startswith("strawberry_django.") for base in cls.__bases__
    )


def compile_filter(
    model: type[Model], filters: Any, info: Info | None, base: QuerySet[Any], using: str
) -> Condition:
    """``filters`` compiled against ``base`` (the queryset the rows are read from)."""
    if filters is None or filters is UNSET:
        return UNFILTERED
    changed, q = process_filters(filters, base, info)
    if changed is not base:
        return Condition(None, None)
    return Condition(q, verdict(model, q, using))


#: What is kept for a filter with a method of its own: it is compiled per read.
_PER_READ: Final = "per read"


def _text(key: Hashable) -> int:
    """What a filter's key (``matching.filter_key``: its type's name and how its
    value prints) weighs in the caches: the characters it prints to."""
    return len(key[1]) if isinstance(key, tuple) and len(key) == 2 else len(repr(key))


def whole(base: QuerySet[Any]) -> bool:
    """Whether ``base`` reads every column of its rows (no ``only``/``defer``):
    a Python verdict must never load a field on its own."""
    return base.query.deferred_loading == (frozenset(), True)


class FilterSet:
    """How the filters of one read (by key) are decided on rows read from one
    kind of base queryset: ``decided`` in Python on the row read (and asked
    only where ``index`` finds them), ``columns`` as boolean columns of the
    query, ``alone`` each on a query of its own."""

    __slots__ = ("alone", "columns", "decided", "index", "kept")

    def __init__(self, conditions: dict[Hashable, Condition], whole: bool) -> None:
        self.decided: list[tuple[Hashable, Verdict, Hint]] = []
        self.columns: list[tuple[Hashable, Condition]] = []
        self.alone: list[Hashable] = []
        for key, condition in conditions.items():
            if condition.alone:
                self.alone.append(key)
            elif condition.verdict is not None and whole:
                self.decided.append((key, condition.verdict, condition.hint))
            else:
                self.columns.append((key, condition))
        self.index = FilterIndex(self.decided)
        #: Whether every filter is compiled once for every read (none per read).
        self.kept = all(c.kept is not None for c in conditions.values())


class Conditions:
    """The compiled filters, matching queries and sets of filters of one
    runtime, each in a least-recently-used cache
    (:class:`~gql_observer.graphql.documents.BoundedCache`), bounded in entries
    and, for filters, in the text they print to (``text``)."""

    def __init__(
        self, filters: int = FILTERS, queries: int = QUERIES, text: int = FILTER_TEXT
    ) -> None:
        self._conditions: BoundedCache[Hashable, Condition | str] = BoundedCache(filters, text)
        self._queries: BoundedCache[Hashable, QuerySet[Any]] = BoundedCache(queries, queries)
        self._sets: BoundedCache[Hashable, FilterSet] = BoundedCache(SETS, text)

    def __len__(self) -> int:
        """Filters compiled and kept."""
        return len(self._conditions)

    def filter_set(
        self,
        model: type[Model],
        groups: dict[Hashable, Any],
        info: Info | None,
        base: QuerySet[Any],
    ) -> FilterSet:
        """How each of ``groups``' filters (by key) is decided on rows read from
        ``base``: the same for every read of the same filters on the same model,
        database and kind of base, so built once (unless a filter is compiled
        per read, or strawberry-django's deprecated filters are on)."""
        complete = whole(base)
        key: Hashable = None
        if not strawberry_django_settings()["USE_DEPRECATED_FILTERS"]:
            members = frozenset((k, type(f)) for k, f in groups.items())
            key = (model._meta.label, base.db, complete, members)
            found = self._sets.get(key)
            if found is not None:
                return found
        built = FilterSet(self.conditions(model, groups, info, base), complete)
        if key is not None and built.kept:
            self._sets.put(key, built, sum(map(_text, groups)) or 1)
        return built

    def conditions(
        self,
        model: type[Model],
        groups: dict[Hashable, Any],
        info: Info | None,
        base: QuerySet[Any],
    ) -> dict[Hashable, Condition]:
        """Each of ``groups``' filters (by key) compiled, for rows read from
        ``base``: what every filter shares (the database, the setting) looked
        up once, each filter's condition by one look in the cache."""
        using = base.db
        deprecated = strawberry_django_settings()["USE_DEPRECATED_FILTERS"]
        label = model._meta.label
        out: dict[Hashable, Condition] = {}
        for key, filters in groups.items():
            if filters is None or filters is UNSET:
                out[key] = UNFILTERED
                continue
            if deprecated:
                out[key] = compile_filter(model, filters, info, base, using)
                continue
            # (The filter's type too: the key is its name and how its value prints.)
            cache_key = (label, using, type(filters), key)
            found = self._conditions.get(cache_key)
            if found is None:
                found = _PER_READ  # a filter with a method of its own, remembered as such
                if reusable(filters):
                    # It touches the queryset only for DISTINCT: any base will do.
                    empty: QuerySet[Any] = QuerySet(model=model, using=using)
                    found = compile_filter(model, filters, None, empty, using)
                    found.kept = cache_key
                self._conditions.put(cache_key, found, _text(key))
            out[key] = (
                found
                if isinstance(found, Condition)
                else compile_filter(model, filters, info, base, using)
            )
        return out

    def columns(
        self, base: QuerySet[Any], columns: list[tuple[Hashable, Condition]]
    ) -> QuerySet[Any]:
        """``base`` with one boolean column ``gqlobs_f<i>`` per condition of
        ``columns``; built once per set of filters when every condition is kept
        and ``base`` compiles to the same SQL as the base it was built on."""
        if not columns:
            return base
        annotations: dict[str, Any] = {f"gqlobs_f{i}": c.column for i, (_, c) in enumerate(columns)}
        annotated: QuerySet[Any]
        if not all(c.kept is not None for _, c in columns):
            annotated = base.annotate(**annotations)
            return annotated
        try:
            sql, params = base.query.sql_with_params()
            cache_key: Hashable = (
                base.model,
                base.db,
                sql,
                tuple(params),
                tuple(c.kept for _, c in columns),
            )
            hash(cache_key)
        except (EmptyResultSet, TypeError):
            annotated = base.annotate(**annotations)
            return annotated
        found = self._queries.get(cache_key)
        if found is None:
            found = base.annotate(**_compiled(base, annotations))
            self._queries.put(cache_key, found, 1)
        return found
