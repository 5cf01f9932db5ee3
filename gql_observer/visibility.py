"""Reading one instance as one user may see it: the type's own queryset."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import Field, Model, QuerySet
from strawberry import Info

from .definition import ObservedDefinition

__all__ = ["context_key", "deleted_instance", "normalize_pk", "read"]

PUBLIC: tuple[str] = ("public",)


def _user(info: Info) -> Any:
    from strawberry_django.auth.utils import get_current_user

    try:
        return get_current_user(info)
    except (ValueError, KeyError, AttributeError):
        return None


def context_key(definition: ObservedDefinition, info: Info) -> Hashable:
    """Subscribers with the same key see the same rows: one read serves them all."""
    if not definition.scoped:
        return (definition.field_name, PUBLIC)
    user = _user(info)
    user_key = getattr(user, "pk", None) if getattr(user, "is_authenticated", False) else None
    return (definition.field_name, user_key)


def queryset(definition: ObservedDefinition, info: Info) -> QuerySet[Any]:
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
        return python_value
    except (ValidationError, ValueError, TypeError):
        return None


def _read(definition: ObservedDefinition, info: Info, value: object) -> Model | None:
    try:
        obj: Model = queryset(definition, info).get(**{definition.lookup: value})
    except (ObjectDoesNotExist, ValidationError, ValueError, TypeError):
        return None
    return obj


read = sync_to_async(_read, thread_sensitive=True)
"""Read the instance whose lookup field equals ``value``, as ``info``'s user sees it."""


def deleted_instance(definition: ObservedDefinition, last: dict[str, str | None]) -> Model:
    """An unsaved instance holding a deleted row's last exposed values."""
    values: dict[str, Any] = {}
    for field in definition.exposed:
        if field.attname in last:
            raw = last[field.attname]
            values[field.attname] = None if raw is None else field.to_python(raw)
    instance = definition.model(**values)
    instance._state.adding = False
    return instance
