"""Who may see what: one rule for the Query, the subscribe and every event.

An instance is visible to a viewer when the viewer is still who they were
(active user, session not logged out, token neither expired nor revoked), the
type's ``get_queryset`` contains it, and the ``permission`` hook of ``observe``
allows it. Every event re-checks all of it.

The work is split so that it can be shared without sharing a verdict that
could differ: the *rows* (one query per type, window and row scope: everybody
for a type without ``get_queryset``, else each distinct viewer), the *viewer
checks* (one query for every viewer asked about in a window, whatever their
number), and the verdict itself, decided per viewer in Python from those two
(:class:`~gql_observer.graphql.reads.Reads` coalesces the queries).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import Model
from strawberry import Info

from gql_observer.core.db import unit_of_work
from gql_observer.graphql.envelope import NOT_FOUND, OK, UNAUTHORIZED
from gql_observer.graphql.reads import Reads
from gql_observer.graphql.relations import ReadPlan
from gql_observer.graphql.rows import has_get_queryset
from gql_observer.graphql.viewers import Viewer
from gql_observer.observe.definition import ObservedDefinition

__all__ = [
    "Verdict",
    "allowed",
    "deleted_verdict",
    "deleted_verdicts",
    "may_see_deleted",
    "read",
    "verdicts",
]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one read: a status and, when it is 200, the instance."""

    status: int
    instance: Model | None = None


def _allowed(definition: ObservedDefinition, user: Any) -> bool:
    return not definition.login_required or bool(getattr(user, "is_authenticated", False))


#: The refusals, one object each: the verdicts of one event share them.
_UNAUTHORIZED = Verdict(UNAUTHORIZED)
_NOT_FOUND = Verdict(NOT_FOUND)
#: What a deleted instance's viewer sees when its type has a ``get_queryset``.
_GONE = Verdict(OK, None)


def _decide_each(
    definition: ObservedDefinition, cases: list[tuple[Any, Model | None]]
) -> list[Verdict]:
    """The verdict on each row for a viewer whose check gave its user (scoped
    types), in one pass: viewers with the same outcome share one verdict (and so
    one envelope, encoded once)."""
    permission = definition.permission
    shown: dict[int, Verdict] = {}
    decided: list[Verdict] = []
    for user, row in cases:
        if user is None or not _allowed(definition, user):
            decided.append(_UNAUTHORIZED)
        # Existence is secret: not allowed answers as not found does.
        elif row is None or (permission is not None and not permission(user, row)):
            decided.append(_NOT_FOUND)
        else:
            verdict = shown.get(id(row))
            if verdict is None:
                verdict = shown[id(row)] = Verdict(OK, row)
            decided.append(verdict)
    return decided


_decide_each_async = sync_to_async(unit_of_work(_decide_each), thread_sensitive=True)


async def _decided(
    definition: ObservedDefinition, cases: list[tuple[Any, Model | None]]
) -> list[Verdict]:
    """The verdicts on ``cases`` (checked user, row); a ``permission`` hook runs on
    Django's sync thread (it may query: ``user.has_perm`` does), all in one call."""
    if definition.permission is None:
        return _decide_each(definition, cases)
    return await _decide_each_async(definition, cases)


def _public(row: Model | None) -> Verdict:
    return Verdict(NOT_FOUND) if row is None else Verdict(OK, row)


async def read(
    reads: Reads,
    definition: ObservedDefinition,
    info: Info | None,
    viewer: Viewer,
    value: object,
    *,
    by_pk: bool = False,
    plan: ReadPlan | None = None,
) -> Verdict:
    """Read the instance whose lookup field (or pk, ``by_pk``) equals ``value``,
    as ``viewer`` may see it, with the relations ``plan`` reads."""
    lookup = "pk" if by_pk else definition.lookup
    if not definition.scoped:
        return _public(await reads.rows(definition, info, viewer, lookup, value, plan))
    if has_get_queryset(definition):
        user, row = await asyncio.gather(
            reads.check(viewer), reads.rows(definition, info, viewer, lookup, value, plan)
        )
    else:
        row, users = await reads.row_and_checks(definition, info, lookup, value, plan, [viewer])
        user = users[viewer]
    (verdict,) = await _decided(definition, [(user, row)])
    return verdict


async def verdicts(
    reads: Reads,
    definition: ObservedDefinition,
    viewers: Mapping[Viewer, Info | None],
    pk: object,
    plan: ReadPlan | None = None,
) -> dict[Viewer, Verdict]:
    """The verdict of each of ``viewers`` (with an ``Info`` of one of its operations,
    for ``get_queryset``) on the instance ``pk``: one statement for the row and
    every viewer's user (one read per distinct viewer and one check of them all
    for a type with ``get_queryset``); each read with the relations ``plan``
    reads."""
    if not viewers:
        return {}
    if not definition.scoped:
        viewer, info = next(iter(viewers.items()))
        verdict = _public(await reads.rows(definition, info, viewer, "pk", pk, plan))
        return dict.fromkeys(viewers, verdict)
    order = list(viewers)
    if not has_get_queryset(definition):
        # One row for everybody: it and every viewer's user in one statement.
        info = next(iter(viewers.values()))
        row, users = await reads.row_and_checks(definition, info, "pk", pk, plan, order)
        decided = await _decided(definition, [(users[v], row) for v in order])
        return dict(zip(order, decided, strict=True))
    checks = reads.checks(viewers)
    rows = {
        viewer: reads.rows(definition, info, viewer, "pk", pk, plan)
        for viewer, info in viewers.items()
    }
    await asyncio.gather(checks, *rows.values())
    users = checks.result()
    decided = await _decided(definition, [(users[v], rows[v].result()) for v in order])
    return dict(zip(order, decided, strict=True))


def _decide_deleted_each(
    definition: ObservedDefinition, users: list[Any], instance: Model
) -> list[Verdict]:
    shown = Verdict(OK, instance)
    return [_decide_deleted(definition, user, instance, shown) for user in users]


_decide_deleted_each_async = sync_to_async(
    unit_of_work(_decide_deleted_each), thread_sensitive=True
)


def deleted_verdict(definition: ObservedDefinition, user: Any, instance: Model) -> Verdict:
    """Whether the checked ``user`` may see a deleted instance's last values
    (``Verdict(OK, None)``: that it is gone, nothing of it)."""
    return _decide_deleted(definition, user, instance, Verdict(OK, instance))


def allowed(definition: ObservedDefinition, user: Any) -> bool:
    """Whether the checked ``user`` may use ``definition``'s fields at all
    (``None``: no longer who they were; anonymous where login is required)."""
    return user is not None and _allowed(definition, user)


def _decide_deleted(
    definition: ObservedDefinition, user: Any, instance: Model, shown: Verdict
) -> Verdict:
    """``shown``: ``Verdict(OK, instance)``, one for every viewer who may see it."""
    if user is None or not _allowed(definition, user):
        return _UNAUTHORIZED
    if definition.permission is not None:
        return shown if definition.permission(user, instance) else _NOT_FOUND
    if has_get_queryset(definition):
        # A queryset cannot be asked about a row that is gone: say that it is
        # gone, show nothing of it.
        return _GONE
    return shown


async def may_see_deleted(
    reads: Reads, definition: ObservedDefinition, viewer: Viewer, instance: Model
) -> Verdict:
    """Whether ``viewer`` may see a deleted instance's last values."""
    return (await deleted_verdicts(reads, definition, [viewer], instance))[viewer]


async def deleted_verdicts(
    reads: Reads, definition: ObservedDefinition, viewers: Iterable[Viewer], instance: Model
) -> dict[Viewer, Verdict]:
    """Whether each of ``viewers`` may see a deleted instance's last values: one
    check of them all (none for a type that does not depend on the viewer)."""
    viewers = list(viewers)
    if not definition.scoped:
        return dict.fromkeys(viewers, Verdict(OK, instance))
    checked = await reads.checks(viewers)
    users = [checked[viewer] for viewer in viewers]
    if definition.permission is None:
        decided = _decide_deleted_each(definition, users, instance)
    else:
        decided = await _decide_deleted_each_async(definition, users, instance)
    return dict(zip(viewers, decided, strict=True))
