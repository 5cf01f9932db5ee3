"""Django signal receivers for observed models only: a change becomes an event
that leaves on commit."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Model
from django.db.models.signals import post_delete, post_save

from . import registry
from .definition import ObservedDefinition
from .events import CHANGE, Action, ChangeEvent, LastValues
from .groups import instance_group
from .publish import publish
from .settings import get_settings

__all__ = ["connect", "connect_all", "last_values"]

logger = logging.getLogger(__name__)
_connected: set[type[Model]] = set()


def last_values(instance: Model) -> LastValues:
    """The values of every field an observed type of the instance's model exposes."""
    values: LastValues = {}
    for definition in registry.for_model(type(instance)):
        for field in definition.exposed:
            value = field.value_from_object(instance)
            values[field.attname] = None if value is None else field.value_to_string(instance)
    return values


def _event(instance: Model, action: Action) -> ChangeEvent:
    label = instance._meta.label_lower
    pk = str(instance.pk)
    return {
        "type": CHANGE,
        "group": instance_group(get_settings()["GROUP_PREFIX"], label, pk),
        "model": label,
        "pk": pk,
        "action": action,
        "last": last_values(instance) if action == "delete" else None,
    }


def _on_commit(event: ChangeEvent, using: str) -> None:
    # One callback per save: Django drops those of a rolled-back savepoint, so
    # nothing a rollback undid is ever announced. robust: a failing publish is
    # logged by Django, never raised into the writer's commit.
    transaction.on_commit(partial(publish, event), using=using, robust=True)


def _saved(sender: type[Model], instance: Model, created: bool, raw: bool, using: str,
           **kwargs: Any) -> None:
    # Nobody can be subscribed to a row that did not exist; fixtures (raw) are
    # not changes.
    if created or raw:
        return
    _on_commit(_event(instance, "update"), using)


def _deleted(sender: type[Model], instance: Model, using: str, **kwargs: Any) -> None:
    _on_commit(_event(instance, "delete"), using)


def connect(definition: ObservedDefinition) -> None:
    """Connect the receivers for ``definition``'s model, once per model."""
    model = definition.model
    if model in _connected:
        return
    uid = f"gql_observer.{model._meta.label_lower}"
    post_save.connect(_saved, sender=model, dispatch_uid=uid, weak=False)
    post_delete.connect(_deleted, sender=model, dispatch_uid=uid, weak=False)
    _connected.add(model)


def connect_all() -> None:
    """Connect every registered model, and every one registered later."""
    for definition in registry.definitions():
        connect(definition)
    registry.on_register(connect)
