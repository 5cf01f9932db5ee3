"""The registry of observed types, by GraphQL field name and by model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from django.db.models import Model

    from gql_observer.observe.definition import ObservedDefinition

__all__ = ["by_field", "definitions", "for_model", "has_lists", "on_register", "register"]

_by_name: dict[str, ObservedDefinition] = {}
_listeners: list[Callable[[ObservedDefinition], None]] = []


def register(definition: ObservedDefinition) -> None:
    """Add ``definition``; a second type under the same field name is an error."""
    names = [definition.field_name, *([definition.list_name] if definition.list_name else [])]
    if len(set(names)) < len(names):
        raise ImproperlyConfigured(
            f"{definition.type_.__qualname__}: the list fields and the instance fields "
            f"are both named {definition.field_name!r}; give observe(..., list_name=...)."
        )
    for other in _by_name.values():
        if other.type_ is definition.type_ or other.field_name == definition.field_name:
            continue
        taken = {other.field_name, other.list_name} - {None}
        clash = next((n for n in names if n in taken), None)
        if clash is not None:
            raise ImproperlyConfigured(
                f"Two observed types want the GraphQL field {clash!r}: "
                f"{other.type_.__qualname__} and {definition.type_.__qualname__}. "
                "Give one of them observe(..., name='otherName') or list_name=."
            )
    existing = _by_name.get(definition.field_name)
    if existing is not None and existing.type_ is not definition.type_:
        raise ImproperlyConfigured(
            f"Two observed types want the GraphQL field {definition.field_name!r}: "
            f"{existing.type_.__qualname__} and {definition.type_.__qualname__}. "
            "Give one of them observe(..., name='otherName')."
        )
    _by_name[definition.field_name] = definition
    for listener in _listeners:
        listener(definition)


def on_register(listener: Callable[[ObservedDefinition], None]) -> None:
    """Call ``listener`` for every definition registered from now on."""
    _listeners.append(listener)


def definitions() -> Iterator[ObservedDefinition]:
    """Every registered definition, in registration order."""
    return iter(list(_by_name.values()))


def by_field(field_name: str) -> ObservedDefinition | None:
    """The definition behind the GraphQL field ``field_name``, if one is observed."""
    return _by_name.get(field_name)


def has_lists(model_label: str) -> bool:
    """Whether the model ``app_label.model_name`` has list fields (its changes
    then go to the model's group, where list subscribers listen)."""
    return any(d.list_name is not None and d.model_label == model_label for d in _by_name.values())


def for_model(model: type[Model]) -> list[ObservedDefinition]:
    """The definitions observing ``model``."""
    return [d for d in _by_name.values() if d.model is model]
