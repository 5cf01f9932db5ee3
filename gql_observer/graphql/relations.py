"""The relations a selection reads, fetched with the instance: strawberry-django's
optimizer planning (``strawberry_django.optimizer.optimize``) applied to the read
of an observed instance, so that ``data { author { books { title } } }`` costs
the read and one query per prefetched list, not one query per relation.

A :class:`ReadPlan` is worked out once per operation (per document, for the
subscribers a watch serves), never per event, from the selection under the
envelope's ``data``: the ``select_related`` paths and the ``prefetch_related``
lookups the optimizer would apply to a list Query of the same selection. Only
what cannot change a frame is planned, because the row (and its caches) is
shared between every viewer of an event:

- ``select_related`` always (a JOIN gives the same related rows the lazy
  access would have read);
- ``prefetch_related`` only when every relation of the selection is a plain
  strawberry-django field (no resolver, extension, permission class or
  argument) of a type without ``get_queryset``: a prefetched list is then the
  same for every viewer. Otherwise each viewer's own execution reads its lists,
  as it does without a plan;
- never ``only`` (other code reads the shared row: permission hooks, deletes)
  nor ``annotate`` (annotations may read the context), as strawberry-django's
  own extension leaves out ``only`` for anything but a Query.

A selection the plan cannot describe (``@include``/``@skip``, interfaces) gets
no plan, and the instance is read as it was before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from django.db.models import Prefetch, QuerySet
from graphql import (
    FieldNode,
    GraphQLObjectType,
    GraphQLResolveInfo,
    get_named_type,
)
from strawberry import Info
from strawberry_django.fields.field import StrawberryDjangoField
from strawberry_django.optimizer import OptimizerConfig, optimize

from gql_observer.graphql.completion import BACKREF, Unplannable, collect
from gql_observer.observe.definition import ObservedDefinition

__all__ = ["NOT_PLANNED", "ReadPlan", "merge", "plan_read"]

logger = logging.getLogger(__name__)

#: An operation whose plan was not worked out yet (``None`` is "nothing to plan").
NOT_PLANNED: Final[Any] = object()


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """The relations to read with an instance."""

    select_related: frozenset[str]
    prefetch_related: tuple[str | Prefetch[Any], ...]

    def apply(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """``queryset`` reading these relations too."""
        if self.select_related:
            queryset = queryset.select_related(*sorted(self.select_related))
        if self.prefetch_related:
            queryset = queryset.prefetch_related(*self.prefetch_related)
        return queryset


def _path(lookup: str | Prefetch[Any]) -> str:
    return lookup if isinstance(lookup, str) else lookup.prefetch_to


def merge(plans: Iterable[ReadPlan | None]) -> ReadPlan | None:
    """One plan reading what each of ``plans`` reads (one read serves them all).
    Two prefetches of one path differ only in the relations they read further
    down (every prefetched list is the same for every viewer): the first one
    is kept, and what it does not read is read lazily, as without a plan."""
    select: set[str] = set()
    prefetch: dict[str, str | Prefetch[Any]] = {}
    for plan in plans:
        if plan is None:
            continue
        select |= plan.select_related
        for lookup in plan.prefetch_related:
            prefetch.setdefault(_path(lookup), lookup)
    if not select and not prefetch:
        return None
    return ReadPlan(frozenset(select), tuple(prefetch.values()))


def plan_read(
    definition: ObservedDefinition, info: Info | GraphQLResolveInfo[Any]
) -> ReadPlan | None:
    """The plan of the operation whose observed root field ``info`` resolves (the
    Query's or the Subscription's field, whose type is the envelope)."""
    raw: GraphQLResolveInfo[Any] = info._raw_info if isinstance(info, Info) else info
    try:
        data = _data_info(raw)
        if data is None:
            return None
        data_type = get_named_type(data.return_type)
        assert isinstance(data_type, GraphQLObjectType)
        config = OptimizerConfig(
            enable_only=False,
            enable_annotate=False,
            enable_prefetch_related=_same_for_everyone(data_type, data.field_nodes, raw),
        )
        planned = optimize(definition.model._default_manager.all(), data, config=config)
    except Unplannable:
        return None
    except Exception:
        logger.debug("Could not plan the relations of a read; read lazily", exc_info=True)
        return None
    related = planned.query.select_related
    select = frozenset(_paths(related) if isinstance(related, dict) else ())
    prefetch = tuple(planned._prefetch_related_lookups)  # type: ignore[attr-defined]
    if not select and not prefetch:
        return None
    return ReadPlan(select, prefetch)


def _paths(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """``{"author": {"city": {}}}`` -> ``["author", "author__city"]``."""
    found = []
    for name, below in tree.items():
        path = f"{prefix}{name}"
        found.append(path)
        if below:
            found += _paths(below, f"{path}__")
    return found


def _data_info(raw: GraphQLResolveInfo[Any]) -> GraphQLResolveInfo[Any] | None:
    """The resolve info of the envelope's ``data`` (every alias of it merged)."""
    envelope = get_named_type(raw.return_type)
    if not isinstance(envelope, GraphQLObjectType) or "data" not in envelope.fields:
        return None
    selections = [n.selection_set for n in raw.field_nodes if n.selection_set]
    grouped = collect(envelope, selections, raw.fragments)
    nodes = [node for group in grouped.values() for node in group if node.name.value == "data"]
    if not nodes:
        return None
    data_type = envelope.fields["data"].type
    return raw._replace(
        field_name="data",
        field_nodes=nodes,
        return_type=data_type,
        parent_type=envelope,
        path=raw.path.add_key("data", envelope.name),
    )


def _same_for_everyone(
    parent: GraphQLObjectType, nodes: list[FieldNode], raw: GraphQLResolveInfo[Any]
) -> bool:
    """Whether every relation selected below ``nodes`` reads the same rows for
    every viewer (so that a prefetched list may be shared)."""
    grouped = collect(parent, [n.selection_set for n in nodes if n.selection_set], raw.fragments)
    for group in grouped.values():
        name = group[0].name.value
        if name.startswith("__"):
            continue
        field = parent.fields[name]
        target = get_named_type(field.type)
        if not isinstance(target, GraphQLObjectType):
            continue  # a leaf
        own = field.extensions.get(BACKREF)
        if (
            not isinstance(own, StrawberryDjangoField)
            or own.base_resolver is not None
            or own.extensions
            or own.permission_classes
            or any(node.arguments for node in group)
            or callable(getattr(own.django_type, "get_queryset", None))
            or not _same_for_everyone(target, group, raw)
        ):
            return False
    return True
