"""Many-to-many changes (``m2m_changed``): adding, removing or clearing a
relation an observed type exposes is a change of every instance on the
observed side, announced after the commit like a save."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from typing import Any

from django.db.models import ManyToManyField, Model
from django.db.models.signals import m2m_changed

from gql_observer.changes.signals import announce, change, changes
from gql_observer.observe import registry
from gql_observer.observe.definition import ObservedDefinition

__all__ = ["connect_all", "connect_relations"]

logger = logging.getLogger(__name__)

#: The m2m field behind each through model connected.
_fields: dict[type[Model], ManyToManyField[Any, Any]] = {}
#: Per through model, the observed models and the side they expose it from
#: (True: the model holds the ManyToManyField; False: its reverse relation).
_sides: dict[type[Model], set[tuple[type[Model], bool]]] = {}


def connect_relations(definition: ObservedDefinition) -> None:
    """Connect ``m2m_changed`` for every many-to-many relation ``definition``
    exposes, once per through model."""
    for relation in definition.many_to_many:
        field: ManyToManyField[Any, Any] = relation if relation.concrete else relation.field
        through = field.remote_field.through
        assert isinstance(through, type), f"{field} has an unresolved through model"
        forward = bool(relation.concrete)
        _sides.setdefault(through, set()).add((definition.model, forward))
        if through not in _fields:
            _fields[through] = field
            m2m_changed.connect(
                _changed,
                sender=through,
                dispatch_uid=f"gql_observer.m2m.{through._meta.label_lower}",
                weak=False,
            )


def connect_all() -> None:
    """Connect the relations of every registered type, and of every one registered later."""
    for definition in registry.definitions():
        connect_relations(definition)
    registry.on_register(connect_relations)


def _observed(sides: set[tuple[type[Model], bool]], model: type[Model], forward: bool) -> bool:
    return any(forward == side and issubclass(model, observed) for observed, side in sides)


def _changed(
    sender: type[Model],
    instance: Model,
    action: str,
    reverse: bool,
    model: type[Model],
    pk_set: set[Any] | None,
    using: str,
    **kwargs: Any,
) -> None:
    # After add and remove, Django names the rows it changed; before clear is
    # the last moment the rows being cleared can be read (after it they are gone).
    if action not in {"post_add", "post_remove", "pre_clear"}:
        return
    if action != "pre_clear" and not pk_set:
        return  # nothing was added or removed
    sides = _sides.get(sender, set())
    # ``instance`` is on the field's side unless the change came through the
    # reverse accessor (``group.user_set.add(user)``).
    events = []
    if _observed(sides, type(instance), not reverse):
        events.append(change(type(instance), instance.pk, "update"))
    if _observed(sides, model, reverse):
        values = pk_set if pk_set is not None else _related(sender, instance, reverse, using)
        pks = _pks(sender, model, reverse, values, using)
        events += changes(model, pks, "update")
    announce(events, using)


def _through_keys(through: type[Model], reverse: bool) -> tuple[Any, Any]:
    """The through model's foreign keys to the instance's side and to the other."""
    field = _fields[through]
    source, target = field.m2m_field_name(), field.m2m_reverse_field_name()
    if reverse:
        source, target = target, source
    return through._meta.get_field(source), through._meta.get_field(target)


def _related(through: type[Model], instance: Model, reverse: bool, using: str) -> list[Any]:
    """What the other side's rows related to ``instance`` are keyed by (one query)."""
    source, target = _through_keys(through, reverse)
    key = getattr(instance, source.target_field.attname)
    rows = through._base_manager.using(using).filter(**{source.attname: key})
    return list(rows.values_list(target.attname, flat=True))


def _pks(
    through: type[Model], model: type[Model], reverse: bool, values: Collection[Any], using: str
) -> Iterable[Any]:
    """The pks of ``model`` behind ``values`` (what the through model's key to it
    holds: the pk, unless the key names another field with ``to_field``)."""
    if not values:
        return ()
    target = _through_keys(through, reverse)[1].target_field
    if target.primary_key:
        return values
    rows = model._base_manager.using(using).filter(**{f"{target.attname}__in": values})
    return rows.values_list("pk", flat=True)
