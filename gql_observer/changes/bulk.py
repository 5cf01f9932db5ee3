"""Writes Django sends no signal for: ``QuerySet.update()``, ``bulk_update()``
and ``bulk_create()`` of an observed model through the library's queryset
(:class:`ObservedQuerySet`, :class:`ObservedManager`, or
:class:`ObservedQuerySetMixin` on a queryset of your own), and :func:`notify`
for everything else (models you do not own, raw SQL, other writers).

Each announces its rows like a save would: after the surrounding transaction
commits, nothing on rollback, one change per instance per transaction.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import models, router, transaction
from django.db.models import Model, QuerySet

from gql_observer.changes.events import Action
from gql_observer.changes.signals import announce, changes
from gql_observer.observe import registry

__all__ = ["ObservedManager", "ObservedQuerySet", "ObservedQuerySetMixin", "notify"]

logger = logging.getLogger(__name__)

_M = TypeVar("_M", bound=Model)

# Set while bulk_update runs: Django's bulk_update calls update() once per
# batch, and bulk_update announces its objects itself.
_in_bulk_update: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "gql_observer_in_bulk_update", default=False
)

if TYPE_CHECKING:
    _Base = QuerySet[Any]
else:
    _Base = object


def _observed(model: type[Model]) -> bool:
    return any(issubclass(model, d.model) for d in registry.definitions())


def _announce(model: type[Model], pks: Iterable[Any], action: Action, using: str) -> None:
    announce(changes(model, (pk for pk in pks if pk is not None), action), using)


class ObservedQuerySetMixin(_Base):
    """Makes a QuerySet's ``update()``, ``bulk_update()`` and ``bulk_create()``
    announce the rows they write, for a model an observed type shows.

    Mix it in before ``QuerySet`` on a queryset of your own::

        class NoteQuerySet(gql_observer.ObservedQuerySetMixin, models.QuerySet):
            def mine(self, user): ...

        class Note(models.Model):
            objects = NoteQuerySet.as_manager()

    ``update()`` reads the pks it matches first, in the same transaction (one
    query more), and announces an ``update`` of each. ``bulk_update()``
    announces an ``update`` of each object, ``bulk_create()`` a ``create``
    (an ``update`` with ``update_conflicts=True``: the rows may have existed)
    of each object that has a pk afterwards. All after the commit.
    """

    def update(self, **kwargs: Any) -> int:
        if _in_bulk_update.get() or not _observed(self.model):
            return super().update(**kwargs)
        self._for_write = True
        db = self.db  # the database the write goes to, as Django's own methods pick it
        with transaction.atomic(using=db, savepoint=False):
            pks = list(self.using(db).values_list("pk", flat=True))
            rows = super().update(**kwargs)
            _announce(self.model, pks, "update", db)
        return rows

    def bulk_update(
        self, objs: Iterable[Any], fields: Iterable[str], batch_size: int | None = None
    ) -> int:
        if not _observed(self.model):
            return super().bulk_update(objs, fields, batch_size)
        objs = list(objs)
        self._for_write = True
        db = self.db  # the database the write goes to, as Django's own methods pick it
        token = _in_bulk_update.set(True)
        try:
            with transaction.atomic(using=db, savepoint=False):
                rows = super().bulk_update(objs, fields, batch_size)
                _announce(self.model, (obj.pk for obj in objs), "update", db)
        finally:
            _in_bulk_update.reset(token)
        return rows

    def bulk_create(self, objs: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        if not _observed(self.model):
            return super().bulk_create(objs, *args, **kwargs)
        self._for_write = True
        db = self.db  # the database the write goes to, as Django's own methods pick it
        action: Action = "update" if kwargs.get("update_conflicts") else "create"
        with transaction.atomic(using=db, savepoint=False):
            created = super().bulk_create(objs, *args, **kwargs)
            # Objects whose pk the database did not return (ignore_conflicts,
            # backends without RETURNING) cannot be named: they are left out.
            _announce(self.model, (obj.pk for obj in created), action, db)
        return created


class ObservedQuerySet(ObservedQuerySetMixin, QuerySet[_M]):
    """A QuerySet whose bulk writes reach subscribers (see
    :class:`ObservedQuerySetMixin`); ``ObservedQuerySet.as_manager()`` or
    :class:`ObservedManager` on the model."""


class ObservedManager(models.Manager.from_queryset(ObservedQuerySet)):  # type: ignore[misc]
    """The manager of an observed model whose ``update()``, ``bulk_update()``
    and ``bulk_create()`` reach subscribers::

        class Note(models.Model):
            objects = gql_observer.ObservedManager()
    """


def notify(
    target: type[Model] | QuerySet[Any],
    pks: Iterable[Any] | None = None,
    *,
    using: str | None = None,
) -> None:
    """Announce that rows changed, as a save of each would: published after the
    surrounding transaction commits (at once outside one), dropped on rollback,
    once per instance per transaction.

    ``notify(User, [3])`` names the rows by pk; ``notify(queryset)`` reads the
    pks the queryset matches (one query). For writes no signal tells about: a
    model you do not own updated with ``QuerySet.update()``, raw SQL, another
    program's writes. A model no observed type shows costs nothing; a pk nobody
    subscribed to costs its share of a channel-layer message. A row that is
    gone reaches its subscribers as a re-read that finds nothing.
    """
    if isinstance(target, QuerySet):
        if pks is not None:
            raise TypeError("notify(queryset) takes no pks: the queryset names the rows.")
        model: type[Model] = target.model
        if not _observed(model):
            return
        db = using or getattr(target, "_db", None) or router.db_for_write(model)
        _announce(model, target.values_list("pk", flat=True), "update", db)
        return
    if not (isinstance(target, type) and issubclass(target, Model)):
        raise TypeError(f"notify() takes a model and pks, or a queryset; not {target!r}.")
    if pks is None:
        raise TypeError(f"notify({target.__name__}, pks): name the rows that changed.")
    if isinstance(pks, (str, bytes)):
        raise TypeError(f"notify({target.__name__}, pks) takes an iterable of pks, not a string.")
    if not _observed(target):
        logger.debug("notify(%s): no observed type shows it", target.__name__)
        return
    pk_field = target._meta.pk
    assert pk_field is not None
    to_python = pk_field.to_python
    _announce(target, (to_python(pk) for pk in pks), "update", using or router.db_for_write(target))
