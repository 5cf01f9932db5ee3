"""Django signal receivers for observed models only: a change becomes an event
that leaves on commit."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import Model
from django.db.models.signals import post_delete, post_save

from gql_observer.changes.events import CHANGE, Action, ChangeEvent, LastValues, next_version
from gql_observer.changes.groups import instance_group
from gql_observer.changes.outbox import publish
from gql_observer.core.conf import get_settings
from gql_observer.observe import registry
from gql_observer.observe.definition import ObservedDefinition

__all__ = ["connect", "connect_all", "last_values"]

logger = logging.getLogger(__name__)
_connected: set[type[Model]] = set()


def last_values(instance: Model) -> LastValues:
    """What a delete event carries: the fields an observed type of the model
    exposes, plus foreign keys (permission hooks may need them, e.g. an owner).
    Nothing else: a field the schema hides never crosses the channel layer."""
    values: LastValues = {}
    for definition in registry.for_model(type(instance)):
        fields = [
            *definition.exposed,
            *(f for f in instance._meta.concrete_fields if f.is_relation),
        ]
        for field in fields:
            value = field.value_from_object(instance)
            values[field.attname] = None if value is None else field.value_to_string(instance)
    return values


def _event(instance: Model, action: Action) -> ChangeEvent:
    label = instance._meta.label_lower
    pk = str(instance.pk)
    return {
        "type": CHANGE,
        "group": instance_group(get_settings().group_prefix, label, pk),
        "model": label,
        "pk": pk,
        "action": action,
        "last": last_values(instance) if action == "delete" else None,
        "version": 0,  # stamped when the commit is announced
    }


def _announce(event: ChangeEvent) -> None:
    # The version is taken after the commit, so one writer's versions follow
    # its commit order.
    publish({**event, "version": next_version()})


class _Announce:
    """The on_commit callback of one event, remembering the savepoints it was
    registered in: Django drops it if any of them rolls back."""

    __slots__ = ("event", "savepoints")

    def __init__(self, event: ChangeEvent, savepoints: frozenset[str]) -> None:
        self.event = event
        self.savepoints = savepoints

    def __call__(self) -> None:
        _announce(self.event)


def _announced(connection: Any, event: ChangeEvent) -> bool:
    """Whether this transaction already holds a callback for the same change that
    runs whenever a new one would (registered in no savepoint that the current
    position could survive without)."""
    pending: dict[str, _Announce] | None = getattr(connection, "_gqlobs_pending", None)
    if not pending:
        return False
    earlier = pending.get(event["group"])
    if earlier is None or earlier.event["action"] != event["action"]:
        return False
    if not earlier.savepoints <= set(connection.savepoint_ids):
        return False
    return any(func is earlier for _, func, _ in connection.run_on_commit)


def _on_commit(event: ChangeEvent, using: str) -> None:
    # Django drops the callbacks of a rolled-back savepoint, so nothing a
    # rollback undid is ever announced. Several saves of one instance in one
    # transaction become one event. robust: a failing publish is logged by
    # Django, never raised into the writer's commit.
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:
        _announce(event)
        return
    if _announced(connection, event):
        return
    pending: dict[str, _Announce] | None = getattr(connection, "_gqlobs_pending", None)
    if pending is None or not connection.run_on_commit:
        # No callback is pending: whatever the dict holds ran or was rolled back.
        pending = connection._gqlobs_pending = {}
    callback = _Announce(event, frozenset(connection.savepoint_ids))
    transaction.on_commit(callback, using=using, robust=True)
    pending[event["group"]] = callback


def _saved(
    sender: type[Model], instance: Model, created: bool, raw: bool, using: str, **kwargs: Any
) -> None:
    # Fixtures (raw) are not changes. A created row may enter list subscribers'
    # sets; an instance subscriber treats it as an update.
    if raw:
        return
    _on_commit(_event(instance, "create" if created else "update"), using)


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
