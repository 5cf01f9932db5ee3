"""The rows of a list: a page for the list Query, a subscriber's set, and what
a batch of changes does to that set (:func:`changes`).

A row is in a viewer's list when the type's ``get_queryset`` holds it, the
filter matches it and the ``permission`` hook of ``observe`` allows it: the
instance Query's rule, plus the filter. Everything here is synchronous and
runs on Django's sync thread (:func:`run`), one query per call; the changed
rows of a batch are read for every subscriber of the loop at once
(:mod:`gql_observer.graphql.matching`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import strawberry_django
from asgiref.sync import sync_to_async
from django.core.exceptions import FieldError, ValidationError
from django.db import DataError, connections, router
from django.db.models import Model, QuerySet
from strawberry import Info

from gql_observer.core.conf import Settings
from gql_observer.core.db import retrying, unit_of_work
from gql_observer.fanout.rowsets import Rows
from gql_observer.graphql.conditions import regexes
from gql_observer.graphql.envelope import CREATED, DELETED, OK
from gql_observer.graphql.reads import Reads
from gql_observer.graphql.rows import deleted_instance, queryset
from gql_observer.graphql.viewers import Viewer
from gql_observer.graphql.visibility import allowed, deleted_verdict
from gql_observer.observe.definition import ObservedDefinition

__all__ = [
    "REGEX_REFUSED",
    "STATUS",
    "BadFilter",
    "Change",
    "checked",
    "decide",
    "members",
    "page",
    "refused",
    "resynced",
    "run",
]

R = TypeVar("R")

#: Rows a permission hook is asked about per query while a page is filled.
CHUNK: Final = 500


class BadFilter(Exception):
    """The database refused the filter (a value its field cannot hold, text
    PostgreSQL cannot hold such as a NUL, a regular expression that does not
    compile), or it is not served (:func:`refused`)."""


#: Why a filter with a regular expression is refused (see :func:`refused`).
REGEX_REFUSED = "regular expressions are not served here."


def refused(settings: Settings, definition: ObservedDefinition, filters: Any) -> str | None:
    """Why ``filters`` is refused before any read, or ``None``: a regular
    expression where Django runs it in the server process (SQLite's ``REGEXP``
    is Python's ``re``, under the interpreter lock: one backtracking pattern
    holds every connection), unless ``LIST_REGEX_ON_SQLITE``; with it, one that
    does not compile (SQLite would report it as an ``OperationalError``, which
    reads retry as an unreachable database)."""
    patterns = regexes(filters)
    if not patterns or connections[router.db_for_read(definition.model)].vendor != "sqlite":
        return None
    if not settings.list_regex_on_sqlite:
        return REGEX_REFUSED
    for pattern in patterns:
        try:
            re.compile(str(pattern))
        except re.error as error:
            return f"the regular expression {str(pattern)!r} does not compile: {error}."
    return None


#: A list message's ``responseStatus``, by action.
STATUS: Final = {"create": CREATED, "update": OK, "delete": DELETED}


@dataclass(frozen=True, slots=True)
class Change:
    """One message of a list subscription: ``pk`` entered (create), changed in
    (update) or left (delete) the set; ``row`` is what the client gets as
    ``data`` (``None``: nothing of it)."""

    action: Literal["create", "update", "delete"]
    pk: str
    row: Model | None


async def checked(reads: Reads, definition: ObservedDefinition, viewer: Viewer) -> tuple[bool, Any]:
    """Whether the viewer may use the list fields (not when no longer who they
    were, nor anonymous where login is required), and their user as the
    database has it now (one coalesced check, as for instances)."""
    if not definition.scoped:
        return True, viewer.user
    user = await reads.check(viewer)
    return allowed(definition, user), user


async def run(reads: Reads, definition: ObservedDefinition, work: Callable[[], R]) -> R:
    """``work()`` on Django's sync thread, retried while the database is unreachable."""
    call = sync_to_async(unit_of_work(work), thread_sensitive=True)
    return await retrying(call, reads.retry_window, "read", definition.model._meta.label)


def _filtered(definition: ObservedDefinition, info: Info | None, filters: Any) -> QuerySet[Any]:
    rows = queryset(definition, info)
    return strawberry_django.filters.apply(filters, rows, info).order_by("pk")


def _permitted(definition: ObservedDefinition, user: Any, rows: Iterable[Model]) -> list[Model]:
    if definition.permission is None:
        return list(rows)
    return [row for row in rows if definition.permission(user, row)]


def page(
    definition: ObservedDefinition,
    info: Info | None,
    user: Any,
    filters: Any,
    offset: int,
    limit: int,
) -> list[Model]:
    """Rows ``offset`` to ``offset + limit`` of the viewer's list, by primary key.
    With a ``permission`` hook the offset counts the rows the viewer may see,
    so the rows are read in chunks until the page is full."""
    try:
        rows = _filtered(definition, info, filters)
        if definition.permission is None:
            return list(rows[offset : offset + limit]) if limit else []
        found: list[Model] = []
        seen = 0
        for row in rows.iterator(chunk_size=CHUNK):
            if len(found) >= limit:
                break
            if not definition.permission(user, row):
                continue
            if seen >= offset:
                found.append(row)
            seen += 1
        return found
    except (ValidationError, ValueError, TypeError, FieldError, DataError) as error:
        raise BadFilter(str(error)) from error


def members(
    definition: ObservedDefinition,
    info: Info | None,
    user: Any,
    filters: Any,
    pks: list[str] | None = None,
) -> dict[str, Model | None]:
    """The rows of the viewer's list (among ``pks``, or all), by ``str(pk)``.
    Without a ``permission`` hook only the keys are read (values ``None``)."""
    try:
        rows = _filtered(definition, info, filters)
        if pks is not None:
            rows = rows.filter(pk__in=pks)
        if definition.permission is None and pks is None:
            return {str(pk): None for pk in rows.values_list("pk", flat=True)}
        # With a hook every row the filter matches is asked about, a chunk at a
        # time: only those the viewer may see are held (a viewer who may see
        # few rows of a big table must not hold the table).
        read = rows if definition.permission is None else rows.iterator(chunk_size=CHUNK)
        return {str(row.pk): row for row in _permitted(definition, user, read)}
    except (ValidationError, ValueError, TypeError, FieldError, DataError) as error:
        raise BadFilter(str(error)) from error


def _last(definition: ObservedDefinition, user: Any, rows: Rows, pk: str) -> Model | None:
    """What a delete of ``pk`` in ``rows`` shows: the row's last values, as far
    as the viewer may see them."""
    values = rows.changed[pk].last
    assert values is not None
    return deleted_verdict(definition, user, deleted_instance(definition, values)).instance


def _left(definition: ObservedDefinition, user: Any, held: set[str], rows: Rows) -> list[Change]:
    """The deletes of ``rows`` that take a row out of ``held`` (updated in place),
    with the last values the viewer may see."""
    out: list[Change] = []
    for pk, delivery in rows.changed.items():
        if delivery.action == "delete" and pk in held:
            held.discard(pk)
            out.append(Change("delete", pk, _last(definition, user, rows, pk)))
    return out


def decide(
    definition: ObservedDefinition,
    user: Any,
    rows: Rows,
    read: dict[str, Model],
    sets: Sequence[tuple[set[str], Collection[str]]],
) -> list[list[Change]]:
    """What a batch of changes (``rows``) does to each of ``sets``: pairs of the
    keys a list holds (updated in place) and the keys of the changed rows its
    filter matched among those read (``read``: each re-read row that exists
    and is in the type's queryset). The ``permission`` hook is asked here, once
    per row for all the sets (they have one viewer). A row that was not and is
    not in a set yields nothing for it; deletes come first, then the rest, each
    in the order the rows changed. The work is the size of what each list
    holds of the changed rows and what its filter matched, not of the batch
    times the lists.

    The sets are updated only once every decision is made: when the hook (or
    reading a deleted row's last values through it) raises, nothing changed,
    and the same call may be made again (a database out of reach is retried)."""
    order = {pk: n for n, pk in enumerate(rows.changed)}
    deleted = {pk for pk, delivery in rows.changed.items() if delivery.action == "delete"}
    kept = order.keys() - deleted
    rank = order.__getitem__
    last: dict[str, Model | None] = {}
    allowed: dict[str, bool] = {}
    out: list[list[Change]] = []
    # Per set: the keys it takes in and the keys it lets go, applied at the end.
    journal: list[tuple[set[str], list[str], list[str]]] = []
    for held, matched in sets:
        changes: list[Change] = []
        taken: list[str] = []
        gone = sorted(held & deleted, key=rank) if deleted else []
        for pk in gone:
            if pk not in last:
                last[pk] = _last(definition, user, rows, pk)
            changes.append(Change("delete", pk, last[pk]))
        entered = kept.intersection(matched)
        for pk in sorted(entered.union(held.intersection(kept)), key=rank):
            row = read.get(pk) if pk in entered else None
            if row is not None and definition.permission is not None:
                if pk not in allowed:
                    allowed[pk] = bool(definition.permission(user, row))
                row = row if allowed[pk] else None
            if row is not None:
                changes.append(Change("update" if pk in held else "create", pk, row))
                taken.append(pk)
            elif pk in held:
                gone.append(pk)
                changes.append(Change("delete", pk, None))
        journal.append((held, taken, gone))
        out.append(changes)
    for held, taken, gone in journal:
        held.difference_update(gone)
        held.update(taken)
    return out


def resynced(
    definition: ObservedDefinition,
    info: Info | None,
    user: Any,
    filters: Any,
    before: set[str],
    rows: Rows,
) -> tuple[list[Change], set[str]]:
    """After a resync (the layer was lost, or the subscriber fell far behind):
    the whole set read again and compared with ``before``; every row in it is
    sent (``update``, or ``create`` when it entered), every row that left is a
    ``delete``."""
    held = set(before)
    out = _left(definition, user, held, rows)
    now = members(definition, info, user, filters)
    for pk in sorted(held - set(now), key=_order):
        out.append(Change("delete", pk, None))
    entered = {pk for pk in now if pk not in held}
    if now and definition.permission is None:
        # Only the keys were read: read the rows to send.
        now = members(definition, info, user, filters, list(now))
    for pk, row in now.items():
        out.append(Change("create" if pk in entered else "update", pk, row))
    return out, set(now)


def _order(pk: str) -> tuple[int, str]:
    return (0, f"{int(pk):020d}") if pk.isdigit() else (1, pk)
