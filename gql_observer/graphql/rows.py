"""The rows of an observed type: its queryset (``get_queryset``), the lookup of
one pk, and what a deleted row leaves behind."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import connections, router
from django.db.models import Field, IntegerField, Model, QuerySet
from strawberry import Info

from gql_observer.graphql.relations import ReadPlan
from gql_observer.observe.definition import ObservedDefinition

__all__ = [
    "by_lookup",
    "deleted_instance",
    "has_get_queryset",
    "normalize_pk",
    "queryset",
    "rows",
    "rows_queryset",
]


def queryset(definition: ObservedDefinition, info: Info | None) -> QuerySet[Any]:
    base: QuerySet[Any] = definition.model._default_manager.all()
    get_queryset = getattr(definition.type_, "get_queryset", None)
    if callable(get_queryset):
        base = get_queryset(base, info)
    return base


def normalize_pk(definition: ObservedDefinition, value: object) -> object | None:
    """``value`` as the lookup field's Python value; ``None`` when malformed."""
    meta = definition.model._meta
    field = meta.pk if definition.lookup == "pk" else meta.get_field(definition.lookup)
    assert isinstance(field, Field), "observe() checked the lookup field"
    try:
        python_value: object = field.to_python(value)
    except (ValidationError, ValueError, TypeError):
        return None
    if isinstance(field, IntegerField) and isinstance(python_value, int):
        # A number no row can hold names nothing (the database would refuse it).
        alias = router.db_for_read(definition.model)
        low, high = connections[alias].ops.integer_field_range(field.get_internal_type())
        if (low is not None and python_value < low) or (high is not None and python_value > high):
            return None
    # Nor does text PostgreSQL cannot hold: it would refuse the whole read, and
    # the reads of one kind are coalesced (everybody else's with it).
    if (
        isinstance(python_value, str)
        and "\0" in python_value
        and connections[router.db_for_read(definition.model)].vendor == "postgresql"
    ):
        return None
    return python_value


def rows(
    definition: ObservedDefinition,
    info: Info | None,
    lookup: str,
    values: list[object],
    plan: ReadPlan | None = None,
) -> dict[object, Model | None]:
    """The instances whose ``lookup`` field is one of ``values``, as the type's
    queryset holds them: one query (and one per list ``plan`` prefetches)."""
    try:
        found = list(rows_queryset(definition, info, lookup, values, plan))
    except (ValidationError, ValueError, TypeError):
        found = []
    return by_lookup(lookup, values, found)


def rows_queryset(
    definition: ObservedDefinition,
    info: Info | None,
    lookup: str,
    values: list[object],
    plan: ReadPlan | None = None,
) -> QuerySet[Any]:
    """What :func:`rows` reads (a value the lookup field cannot hold raises
    ``ValidationError``, ``ValueError`` or ``TypeError``, here or when read)."""
    found_rows = queryset(definition, info).filter(**{f"{lookup}__in": values})
    if plan is not None:
        found_rows = plan.apply(found_rows)
    return found_rows


def by_lookup(lookup: str, values: list[object], found: list[Model]) -> dict[object, Model | None]:
    """Each of ``values`` with the instance of ``found`` it names (``None``: none)."""
    rows: dict[object, Model | None] = dict.fromkeys(values)
    for obj in found:
        rows[getattr(obj, lookup)] = obj
    return rows


def has_get_queryset(definition: ObservedDefinition) -> bool:
    """Whether which rows exist depends on the viewer (the type's ``get_queryset``)."""
    return callable(getattr(definition.type_, "get_queryset", None))


def deleted_instance(definition: ObservedDefinition, last: dict[str, str | None]) -> Model:
    """An unsaved instance holding a deleted row's last values."""
    values: dict[str, Any] = {}
    for field in definition.model._meta.concrete_fields:
        if field.attname in last:
            raw = last[field.attname]
            values[field.attname] = None if raw is None else field.to_python(raw)
    instance = definition.model(**values)
    instance._state.adding = False
    return instance
