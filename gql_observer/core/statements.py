"""Two querysets read by one statement.

An event on a type with a ``permission`` hook needs the instance and every
viewer's user as the database has them now. Sent as two queries, that is two
round trips on the one thread that does the process's reads; :func:`read_both`
sends them as one ``UNION ALL`` of the two SELECTs Django compiles, each
branch padded with ``NULL``\\s to the other's width and tagged with its
number, and turns each branch's rows back into what the queryset would have
given: model instances (then its prefetches) or ``values_list`` tuples,
through Django's own converters.

Nothing is rewritten: each branch is Django's SQL for its queryset, inside a
derived table. A queryset whose rows Django builds from more than its own
columns (``select_related`` objects, annotations, ``distinct`` with ordering
columns, known related objects), another iterable, a combined query, or two
querysets on different databases, are not combined:
``read_both`` returns ``None`` and the caller reads each as usual. With exactly
two branches PostgreSQL types each padding ``NULL`` from the other branch's
column, and SQLite's columns have no type to agree on.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any, Final

from django.db import connections
from django.db.models import Model, QuerySet, prefetch_related_objects
from django.db.models.query import ModelIterable, ValuesListIterable
from django.db.models.sql.compiler import SQLCompiler

__all__ = ["read_both"]

#: PostgreSQL's ``timestamptz`` type.
_TIMESTAMPTZ_OID: Final = 1184
#: Timestamps a loader remembers before it forgets them all.
_REMEMBERED: Final = 65_536


#: The remembering loader of each kind of loader (Django makes a class per time
#: zone, and may make it anew for a cursor): by module, name and time zone.
_REMEMBERING: dict[tuple[str, str, Any], type[Any]] = {}


def _remembering(loader: type[Any]) -> type[Any]:
    """``loader`` (psycopg's, or the one Django registered for the connection's
    time zone) remembering the value of each text it loaded: a datetime is
    immutable, and the same text gives the same datetime."""
    kind = (loader.__module__, loader.__qualname__, getattr(loader, "timezone", None))
    found = _REMEMBERING.get(kind)
    if found is not None:
        return found
    seen: dict[bytes, Any] = {}

    class Remembering(loader):  # type: ignore[misc]
        _gql_observer_remembers = True

        def load(self, data: Any) -> Any:
            key = bytes(data)
            value = seen.get(key)
            if value is None:
                value = super().load(data)
                if len(seen) >= _REMEMBERED:
                    seen.clear()
                seen[key] = value
            return value

    _REMEMBERING[kind] = Remembering
    return Remembering


def _remembered_timestamps(cursor: Any) -> None:
    """On a psycopg 3 cursor, load ``timestamptz`` columns through
    :func:`_remembering`: re-reading a thousand unchanged users on every event
    parsed two thousand timestamps, a quarter of the read's time."""
    adapters = getattr(cursor, "adapters", None)
    if adapters is None:
        return  # not psycopg 3 (SQLite: Django's converters parse)
    try:
        from psycopg.pq import Format

        loader = adapters.get_loader(_TIMESTAMPTZ_OID, Format.TEXT)
    except (ImportError, LookupError):
        return
    if loader is not None and not getattr(loader, "_gql_observer_remembers", False):
        adapters.register_loader(_TIMESTAMPTZ_OID, _remembering(loader))


#: What :func:`_compiled` gave for a queryset still in use (a query asked for
#: again, such as the same viewers' users, is compiled once).
_COMPILED: weakref.WeakKeyDictionary[QuerySet[Any], tuple[SQLCompiler, str, tuple[Any, ...]]] = (
    weakref.WeakKeyDictionary()
)


def _compiled(queryset: QuerySet[Any]) -> tuple[SQLCompiler, str, tuple[Any, ...]] | None:
    """Django's SQL for ``queryset``; ``None`` unless its rows are built from
    its own columns alone (model instances without ``select_related`` objects or
    annotations, or ``values_list`` tuples)."""
    found = _COMPILED.get(queryset)
    if found is not None:
        return found
    iterable = queryset._iterable_class
    if iterable not in (ModelIterable, ValuesListIterable) or queryset.query.combinator:
        return None
    if getattr(queryset, "_known_related_objects", None):
        return None
    compiler = queryset.query.get_compiler(using=queryset.db)
    sql, params = compiler.as_sql()
    if compiler.has_extra_select or not compiler.select:
        return None
    if iterable is ModelIterable:
        klass_info = compiler.klass_info
        if klass_info is None or klass_info.get("related_klass_infos"):
            return None
        if compiler.annotation_col_map:
            return None
    compiled = compiler, sql, tuple(params)
    _COMPILED[queryset] = compiled
    return compiled


def _built(queryset: QuerySet[Any], compiler: SQLCompiler, rows: list[Sequence[Any]]) -> list[Any]:
    """What iterating ``queryset`` gives for ``rows`` (its compiled columns)."""
    converted = compiler.results_iter([rows], tuple_expected=True)
    if queryset._iterable_class is ValuesListIterable:
        return list(converted)
    # ModelIterable's building, for rows of the model's own columns.
    assert compiler.klass_info is not None
    model: type[Model] = compiler.klass_info["model"]
    names = [column[0].target.attname for column in compiler.select]
    objects = [model.from_db(queryset.db, names, row) for row in converted]
    lookups = getattr(queryset, "_prefetch_related_lookups", ())
    if lookups and objects:
        prefetch_related_objects(objects, *lookups)
    return objects


def read_both(first: QuerySet[Any], second: QuerySet[Any]) -> tuple[list[Any], list[Any]] | None:
    """``(list(first), list(second))`` from one statement; ``None`` when the two
    cannot share one (the caller then reads each)."""
    if first.db != second.db:
        return None
    one, two = _compiled(first), _compiled(second)
    if one is None or two is None:
        return None
    (c1, sql1, params1), (c2, sql2, params2) = one, two
    w1, w2 = len(c1.select), len(c2.select)
    connection = connections[first.db]
    quote = connection.ops.quote_name
    pad1 = ", ".join(["NULL"] * w2)
    pad2 = ", ".join(["NULL"] * w1)
    sql = (
        f"SELECT 0, {quote('gqlo_1')}.*, {pad1} FROM ({sql1}) {quote('gqlo_1')}"
        f" UNION ALL "
        f"SELECT 1, {pad2}, {quote('gqlo_2')}.* FROM ({sql2}) {quote('gqlo_2')}"
    )
    rows1: list[Sequence[Any]] = []
    rows2: list[Sequence[Any]] = []
    with connection.cursor() as cursor:
        _remembered_timestamps(cursor.cursor)
        cursor.execute(sql, params1 + params2)
        for row in cursor.fetchall():
            if row[0] == 0:
                rows1.append(row[1 : 1 + w1])
            else:
                rows2.append(row[1 + w1 :])
    return _built(first, c1, rows1), _built(second, c2, rows2)
