"""Completing a result without graphql-core, as graphql-core would complete it:
the building blocks of plans (:mod:`gql_observer.graphql.plan`) and shapes
(:mod:`gql_observer.graphql.shapes`).

A value is read as strawberry reads a field without a resolver
(``StrawberryField.get_result``), or, for a strawberry-django field of a
concrete model column, as strawberry-django reads one already loaded
(``getattr`` of the column's ``attname``); leaves are serialised by their own
GraphQL type's ``serialize``, objects are checked with their type's
``is_type_of``, ``__typename`` is the type's name, response keys come in the
order graphql-core collects them (aliases, fragments and repeated fields
merged as it merges them). Anything else on the way — a null where the schema
says non-null, a value its scalar refuses, a column not loaded (deferred), an
object of another type, an error of any kind — raises :class:`Miss`, and the
event is executed by graphql-core as usual, errors and all. A selection these
cannot describe raises :class:`Unplannable` when it is compiled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

from django.db.models.query_utils import DeferredAttribute
from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    InlineFragmentNode,
    OperationType,
    SelectionSetNode,
    Undefined,
)
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField
from strawberry_django.fields.field import StrawberryDjangoField

from gql_observer.observe.definition import ObservedDefinition

__all__ = [
    "BACKREF",
    "LISTED",
    "NO_INFO",
    "OBSERVED",
    "Complete",
    "HoleSink",
    "Miss",
    "Unplannable",
    "collect",
    "completer",
    "counts",
    "getter",
    "listed_definition",
    "object_field",
    "observed_definition",
    "root",
]

#: The attribute of a Subscription field (a strawberry field) naming its observed type.
OBSERVED: Final = "__gql_observer_definition__"
#: The same, on the live list field of a type observed with ``filters=``.
LISTED: Final = "__gql_observer_list_definition__"

#: Completes one resolved value, or raises :class:`Miss`.
Complete = Callable[[Any], Any]
#: Where graphql-core keeps a field's strawberry definition.
BACKREF: Final = GraphQLCoreConverter.DEFINITION_BACKREF
#: What a plan passes for graphql-core's resolve info: plain fields never read it.
NO_INFO: Any = None


#: Events whose result came from a plan, and events a plan handed back to
#: graphql-core, in this process.
counts: Counter[str] = Counter(planned=0, missed=0)


class Miss(Exception):
    """This event needs graphql-core's execution (the plan cannot vouch for it)."""


class Unplannable(Exception):
    """The operation is outside what a plan describes."""


class HoleSink(Protocol):
    """Where a field no plan can build is left to each subscriber: ``add(key)``
    gives what stands in its place."""

    def add(self, key: str) -> Any: ...


def root(executor: Any) -> tuple[str, list[FieldNode], Any, dict[str, Any]]:
    """The one observed field (an instance's or a live list's) a subscription
    selects: its response key, its nodes,
    its graphql-core field, and the document's fragments."""
    operation = executor.operation
    if (
        operation.operation != OperationType.SUBSCRIPTION
        or operation.directives
        # A schema extension that hooks field resolution (tracing, directives)
        # sees every field of every event.
        or (executor.middleware_manager is not None and executor.middleware_manager.middlewares)
        or any(d.variable_signatures for d in executor.fragments.values())
    ):
        raise Unplannable
    root = executor.schema.subscription_type
    fragments = executor.fragment_definitions
    grouped = collect(root, [operation.selection_set], fragments)
    if len(grouped) != 1:
        raise Unplannable
    ((key, nodes),) = grouped.items()
    name = nodes[0].name.value
    field = root.fields.get(name)
    definition = field.extensions.get(BACKREF) if field is not None else None
    if (
        field is None
        or (observed_definition(definition) is None and listed_definition(definition) is None)
        or any(node.name.value != name for node in nodes)
        or getattr(definition, "extensions", None)
    ):
        raise Unplannable
    return key, nodes, field, fragments


def observed_definition(field: Any) -> ObservedDefinition | None:
    """The observed type behind a Subscription field (a strawberry field), if any."""
    definition = getattr(field, OBSERVED, None) if isinstance(field, StrawberryField) else None
    return definition if isinstance(definition, ObservedDefinition) else None


def listed_definition(field: Any) -> ObservedDefinition | None:
    """The observed type behind a live list Subscription field, if any."""
    definition = getattr(field, LISTED, None) if isinstance(field, StrawberryField) else None
    return definition if isinstance(definition, ObservedDefinition) else None


def collect(
    parent: GraphQLObjectType,
    selection_sets: Iterable[SelectionSetNode],
    fragments: dict[str, Any],
) -> dict[str, list[FieldNode]]:
    """The fields selected on ``parent``, grouped by response key, in the order
    graphql-core collects them (fragments of ``parent``'s own type inlined)."""
    grouped: dict[str, list[FieldNode]] = {}

    def visit(selection_set: SelectionSetNode, spread: frozenset[str]) -> None:
        for selection in selection_set.selections:
            if selection.directives:
                raise Unplannable  # @include/@skip/@defer: decided by graphql-core
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                grouped.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is not None and condition.name.value != parent.name:
                    raise Unplannable
                visit(selection.selection_set, spread)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if (
                    fragment is None
                    or name in spread
                    or fragment.directives
                    or fragment.type_condition.name.value != parent.name
                ):
                    raise Unplannable
                visit(fragment.selection_set, spread | {name})
            else:
                raise Unplannable

    for selection_set in selection_sets:
        visit(selection_set, frozenset())
    return grouped


def completer(
    type_: GraphQLOutputType,
    nodes: list[FieldNode],
    fragments: dict[str, Any],
    holes: HoleSink | None = None,
) -> Complete:
    """Completes a resolved value of ``type_`` as graphql-core's ``complete_value``
    would, or raises :class:`Miss` where graphql-core would do anything else."""
    if isinstance(type_, GraphQLNonNull):
        inner = completer(type_.of_type, nodes, fragments, holes)

        def non_null(value: Any) -> Any:
            if value is None:
                raise Miss  # graphql-core reports an error here
            return inner(value)

        return non_null
    inner = _nullable_completer(type_, nodes, fragments, holes)

    def nullable(value: Any) -> Any:
        return None if value is None else inner(value)

    return nullable


def _nullable_completer(
    type_: GraphQLOutputType,
    nodes: list[FieldNode],
    fragments: dict[str, Any],
    holes: HoleSink | None = None,
) -> Complete:
    if isinstance(type_, GraphQLList):
        if holes is not None:
            raise Unplannable  # slots are placed in one object, not in list items
        item = completer(type_.of_type, nodes, fragments)

        def complete_list(value: Any) -> list[Any]:
            if not isinstance(value, list | tuple):
                raise Miss
            return [item(v) for v in value]

        return complete_list
    if isinstance(type_, GraphQLLeafType):
        if any(node.selection_set for node in nodes):
            raise Unplannable
        serialize = type_.serialize

        def complete_leaf(value: Any) -> Any:
            serialized = serialize(value)
            if serialized is None or serialized is Undefined:
                raise Miss
            return serialized

        return complete_leaf
    if isinstance(type_, GraphQLObjectType):
        return _object_completer(type_, nodes, fragments, holes)
    raise Unplannable  # interfaces and unions: graphql-core resolves the type


def _object_completer(
    type_: GraphQLObjectType,
    nodes: list[FieldNode],
    fragments: dict[str, Any],
    holes: HoleSink | None = None,
) -> Complete:
    """Completes an object; with ``holes``, a field no plan can build (one that may
    read the context: a resolver, permission classes, an extension, arguments) is
    left to each subscriber's own execution and stands in the result as a slot."""
    selection_sets = [node.selection_set for node in nodes if node.selection_set]
    fields: list[tuple[str, Callable[[Any], Any], Complete]] = []
    for key, group in collect(type_, selection_sets, fragments).items():
        try:
            fields.append(object_field(type_, key, group, fragments))
        except Unplannable:
            if holes is None:
                raise
            fields.append((key, constant(holes.add(key)), same))
    is_type_of = type_.is_type_of

    def complete_object(value: Any) -> dict[str, Any]:
        if is_type_of is not None and is_type_of(value, NO_INFO) is not True:
            raise Miss
        return {key: complete(get(value)) for key, get, complete in fields}

    return complete_object


def object_field(
    type_: GraphQLObjectType, key: str, group: list[FieldNode], fragments: dict[str, Any]
) -> tuple[str, Callable[[Any], Any], Complete]:
    name = group[0].name.value
    if any(node.name.value != name or node.arguments for node in group):
        raise Unplannable
    if name == "__typename":
        return (key, constant(type_.name), same)
    field = type_.fields.get(name)
    if field is None or field.args:
        raise Unplannable
    return (key, getter(field.extensions.get(BACKREF)), completer(field.type, group, fragments))


def constant(value: Any) -> Callable[[Any], Any]:
    def get(_source: Any) -> Any:
        return value

    return get


def same(value: Any) -> Any:
    return value


def getter(field: Any) -> Callable[[Any], Any]:
    """How a field's value is read off its source, as strawberry (or
    strawberry-django) reads it for a field without a resolver."""
    if not isinstance(field, StrawberryField) or (
        field.base_resolver is not None or field.extensions or field.arguments
    ):
        raise Unplannable
    if type(field) is StrawberryDjangoField:
        # A concrete column (not a relation, a property or a file), read as
        # strawberry-django reads one already loaded; a deferred one is not.
        origin = field.origin_django_type
        model = origin.model if origin is not None else None
        descriptor = getattr(model, field.django_name or field.python_name, None)
        if type(descriptor) is not DeferredAttribute:
            raise Unplannable
        name = descriptor.field.attname

        def column(source: Any) -> Any:
            try:
                return source.__dict__[name]
            except KeyError:
                raise Miss from None

        return column
    if type(field) is StrawberryField and field.is_basic_field:
        get_result = field.get_result

        def attribute(source: Any) -> Any:
            return get_result(source, info=None, args=[], kwargs={})

        return attribute
    raise Unplannable
