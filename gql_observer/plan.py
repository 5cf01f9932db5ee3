"""Per-event results of observed subscriptions without a GraphQL execution.

Every change of an observed instance runs its cohort's subscription once more
for the new state: graphql-core collects the fields, builds a resolve info,
calls strawberry's resolver wrappers for every field and completes every
value — about as much work as everything else the event costs together. For an
operation whose every selected field is a plain attribute (no resolver, no
arguments, no directives, no field extensions, no abstract types), the result
is known in advance to be the attributes' values, serialised by their leaf
types. Such an operation is compiled once per cohort into a plan that builds
the result directly, with the same values graphql-core would give:

- a field's value is read as strawberry reads a field without a resolver
  (``StrawberryField.get_result``), or, for a strawberry-django field of a
  concrete model column, as strawberry-django reads one already loaded
  (``getattr`` of the column's ``attname``);
- leaves are serialised by their own GraphQL type's ``serialize``, objects are
  checked with their type's ``is_type_of``, ``__typename`` is the type's name,
  response keys come in the order graphql-core collects them (aliases,
  fragments and repeated fields merged as it merges them).

Anything else on the way — a null where the schema says non-null, a value its
scalar refuses, a column not loaded (deferred), an object of another type, an
error of any kind — makes the plan give up on that event (:class:`Miss`), and
the event is executed by graphql-core as usual, errors and all. Operations
the plan cannot describe are never compiled and always run the usual way.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

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

from . import registry

__all__ = ["Miss", "Plan", "compile_subscription", "counts"]

logger = logging.getLogger(__name__)

#: Builds one event's ``data`` from its root value, or raises :class:`Miss`.
Plan = Callable[[Any], dict[str, Any]]
_Complete = Callable[[Any], Any]
_BACKREF = GraphQLCoreConverter.DEFINITION_BACKREF
#: What a plan passes for graphql-core's resolve info: plain fields never read it.
_NO_INFO: Any = None


#: Events whose result came from a plan, and events a plan handed back to
#: graphql-core, in this process.
counts: Counter[str] = Counter(planned=0, missed=0)


class Miss(Exception):
    """This event needs graphql-core's execution (the plan cannot vouch for it)."""


class _Unplannable(Exception):
    """The operation is outside what a plan describes."""


def compile_subscription(executor: Any) -> Plan | None:
    """A plan for the per-event results of ``executor``'s operation (a graphql-core
    ``Executor`` of a subscription to one observed field), or ``None``."""
    try:
        return _compile(executor)
    except _Unplannable:
        return None
    except Exception:
        logger.debug("Could not plan a subscription; it runs the usual way", exc_info=True)
        return None


def _compile(executor: Any) -> Plan:
    operation = executor.operation
    if (
        operation.operation != OperationType.SUBSCRIPTION
        or operation.directives
        # A schema extension that hooks field resolution (tracing, directives)
        # sees every field of every event.
        or (executor.middleware_manager is not None and executor.middleware_manager.middlewares)
        or any(d.variable_signatures for d in executor.fragments.values())
    ):
        raise _Unplannable
    root = executor.schema.subscription_type
    fragments = executor.fragment_definitions
    grouped = _collect(root, [operation.selection_set], fragments)
    if len(grouped) != 1:
        raise _Unplannable
    ((key, nodes),) = grouped.items()
    name = nodes[0].name.value
    field = root.fields.get(name)
    definition = field.extensions.get(_BACKREF) if field is not None else None
    if (
        field is None
        or registry.by_field(name) is None
        or not isinstance(definition, StrawberryField)
        or definition.extensions
    ):
        raise _Unplannable
    # The event is the envelope the subscription resolver yielded; strawberry's
    # resolver of a subscription field hands the event on as it is.
    resolve = field.resolve
    complete = _completer(field.type, nodes, fragments)

    def plan(event: Any) -> dict[str, Any]:
        try:
            data = {key: complete(resolve(event, _NO_INFO))}
        except Exception as error:
            counts["missed"] += 1
            raise Miss from error
        counts["planned"] += 1
        return data

    return plan


def _collect(
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
                raise _Unplannable  # @include/@skip/@defer: decided by graphql-core
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                grouped.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is not None and condition.name.value != parent.name:
                    raise _Unplannable
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
                    raise _Unplannable
                visit(fragment.selection_set, spread | {name})
            else:
                raise _Unplannable

    for selection_set in selection_sets:
        visit(selection_set, frozenset())
    return grouped


def _completer(
    type_: GraphQLOutputType, nodes: list[FieldNode], fragments: dict[str, Any]
) -> _Complete:
    """Completes a resolved value of ``type_`` as graphql-core's ``complete_value``
    would, or raises :class:`Miss` where graphql-core would do anything else."""
    if isinstance(type_, GraphQLNonNull):
        inner = _completer(type_.of_type, nodes, fragments)

        def non_null(value: Any) -> Any:
            if value is None:
                raise Miss  # graphql-core reports an error here
            return inner(value)

        return non_null
    inner = _nullable_completer(type_, nodes, fragments)

    def nullable(value: Any) -> Any:
        return None if value is None else inner(value)

    return nullable


def _nullable_completer(
    type_: GraphQLOutputType, nodes: list[FieldNode], fragments: dict[str, Any]
) -> _Complete:
    if isinstance(type_, GraphQLList):
        item = _completer(type_.of_type, nodes, fragments)

        def complete_list(value: Any) -> list[Any]:
            if not isinstance(value, list | tuple):
                raise Miss
            return [item(v) for v in value]

        return complete_list
    if isinstance(type_, GraphQLLeafType):
        if any(node.selection_set for node in nodes):
            raise _Unplannable
        serialize = type_.serialize

        def complete_leaf(value: Any) -> Any:
            serialized = serialize(value)
            if serialized is None or serialized is Undefined:
                raise Miss
            return serialized

        return complete_leaf
    if isinstance(type_, GraphQLObjectType):
        return _object_completer(type_, nodes, fragments)
    raise _Unplannable  # interfaces and unions: graphql-core resolves the type


def _object_completer(
    type_: GraphQLObjectType, nodes: list[FieldNode], fragments: dict[str, Any]
) -> _Complete:
    selection_sets = [node.selection_set for node in nodes if node.selection_set]
    fields: list[tuple[str, Callable[[Any], Any], _Complete]] = []
    for key, group in _collect(type_, selection_sets, fragments).items():
        name = group[0].name.value
        if any(node.name.value != name or node.arguments for node in group):
            raise _Unplannable
        if name == "__typename":
            fields.append((key, _constant(type_.name), _same))
            continue
        field = type_.fields.get(name)
        if field is None or field.args:
            raise _Unplannable
        fields.append(
            (key, _getter(field.extensions.get(_BACKREF)), _completer(field.type, group, fragments))
        )
    is_type_of = type_.is_type_of

    def complete_object(value: Any) -> dict[str, Any]:
        if is_type_of is not None and is_type_of(value, _NO_INFO) is not True:
            raise Miss
        return {key: complete(get(value)) for key, get, complete in fields}

    return complete_object


def _constant(value: Any) -> Callable[[Any], Any]:
    def get(_source: Any) -> Any:
        return value

    return get


def _same(value: Any) -> Any:
    return value


def _getter(field: Any) -> Callable[[Any], Any]:
    """How a field's value is read off its source, as strawberry (or
    strawberry-django) reads it for a field without a resolver."""
    if not isinstance(field, StrawberryField) or (
        field.base_resolver is not None or field.extensions or field.arguments
    ):
        raise _Unplannable
    if type(field) is StrawberryDjangoField:
        # A concrete column (not a relation, a property or a file), read as
        # strawberry-django reads one already loaded; a deferred one is not.
        origin = field.origin_django_type
        model = origin.model if origin is not None else None
        descriptor = getattr(model, field.django_name or field.python_name, None)
        if type(descriptor) is not DeferredAttribute:
            raise _Unplannable
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
    raise _Unplannable
