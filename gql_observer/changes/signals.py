"""Django signal receivers for observed models only: a change becomes an event
that leaves on commit."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Model
from django.db.models.signals import post_delete, post_save

from gql_observer.changes.events import (
    CHANGE,
    Action,
    ChangeEvent,
    LastValues,
    next_version,
    next_versions,
)
from gql_observer.changes.groups import instance_group
from gql_observer.changes.outbox import publish, publish_many
from gql_observer.core.conf import get_settings
from gql_observer.observe import registry
from gql_observer.observe.definition import ObservedDefinition

__all__ = ["announce", "change", "changes", "connect", "connect_all", "last_values"]

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


def change(model: type[Model], pk: object, action: Action) -> ChangeEvent:
    """The event of ``action`` on the instance ``pk`` of ``model`` (not a delete:
    that one carries the row's last values, see :func:`last_values`)."""
    return changes(model, (pk,), action)[0]


def changes(model: type[Model], pks: Iterable[object], action: Action) -> list[ChangeEvent]:
    """The events of ``action`` on the instances ``pks`` of ``model``, each pk once."""
    label = model._meta.label_lower
    prefix = get_settings().group_prefix
    events: list[ChangeEvent] = []
    for key in dict.fromkeys(str(pk) for pk in pks):
        events.append(
            {
                "type": CHANGE,
                "group": instance_group(prefix, label, key),
                "model": label,
                "pk": key,
                "action": action,
                "last": None,
                "version": 0,  # stamped when the commit is announced
            }
        )
    return events


def _event(instance: Model, action: Action) -> ChangeEvent:
    event = change(type(instance), instance.pk, action)
    if action == "delete":
        event["last"] = last_values(instance)
    return event


def _announce(events: list[ChangeEvent]) -> None:
    # Versions are taken after the commit, so one writer's versions follow its
    # commit order.
    # The events are the callback's own (built for it, announced once): stamped in place.
    if len(events) == 1:
        events[0]["version"] = next_version()
        publish(events[0])
    else:
        first = next_versions(len(events))
        for n, event in enumerate(events):
            event["version"] = first + n
        publish_many(events)


class _Announce:
    """The on_commit callback of the events one write registered, remembering
    the savepoints it was registered in: Django drops it if any of them rolls back."""

    __slots__ = ("events", "savepoints")

    def __init__(self, savepoints: frozenset[str]) -> None:
        self.events: list[ChangeEvent] = []
        self.savepoints = savepoints

    def __call__(self) -> None:
        _announce(self.events)


#: What a connection's transaction has pending, per group: (callback, action).
_Pending = dict[str, tuple[_Announce, Action]]


def announce(events: list[ChangeEvent], using: str) -> None:
    """Publish ``events`` once the transaction on ``using`` commits (at once in
    autocommit mode); nothing if it rolls back. One instance's change is
    announced once per transaction: an event the transaction already holds a
    callback for, one that runs whenever a new one would, is left out.

    Every way a change is announced goes through here: saves and deletes,
    many-to-many changes, the bulk writes of an ``ObservedQuerySet`` and
    ``notify``."""
    if not events:
        return
    # Django drops the callbacks of a rolled-back savepoint, so nothing a
    # rollback undid is ever announced. robust: a failing publish is logged by
    # Django, never raised into the writer's commit.
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:
        _announce(events)
        return
    pending: _Pending | None = getattr(connection, "_gqlobs_pending", None)
    if pending is None or not connection.run_on_commit:
        # No callback is pending: whatever the dict holds ran or was rolled back.
        pending = connection._gqlobs_pending = {}
    savepoints = frozenset(connection.savepoint_ids)
    callback = _Announce(savepoints)
    live: set[int] | None = None  # the callbacks still registered, looked up once
    for event in events:
        earlier = pending.get(event["group"])
        if earlier is not None and earlier[1] == event["action"]:
            if earlier[0] is callback:
                continue
            # It runs whenever a new one would: registered in no savepoint
            # that the current position could survive without.
            if earlier[0].savepoints <= savepoints:
                if live is None:
                    live = {id(func) for _, func, _ in connection.run_on_commit}
                if id(earlier[0]) in live:
                    continue
        callback.events.append(event)
        pending[event["group"]] = (callback, event["action"])
    if callback.events:
        transaction.on_commit(callback, using=using, robust=True)


def _saved(
    sender: type[Model], instance: Model, created: bool, raw: bool, using: str, **kwargs: Any
) -> None:
    # Fixtures (raw) are not changes. A created row may enter list subscribers'
    # sets; an instance subscriber treats it as an update.
    if raw:
        return
    announce([_event(instance, "create" if created else "update")], using)


def _deleted(sender: type[Model], instance: Model, using: str, **kwargs: Any) -> None:
    announce([_event(instance, "delete")], using)


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
