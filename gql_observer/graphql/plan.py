"""Results of observed subscriptions built without a GraphQL execution.

For every change of an observed instance graphql-core would collect the
fields, build a resolve info, call strawberry's resolver wrappers for every
field and complete every value, once per subscriber: about as much work as
everything else the event costs together. For the fields whose value comes
from the instance alone (plain attributes: no resolver, no arguments, no
directives, no field extensions, no abstract types) the result is known in
advance to be the attributes' values, serialised by their leaf types:

- a :class:`Shape` is the part of a subscription's result that is the same
  for every subscriber, built once per event for all the subscribers of a
  watch (:mod:`gql_observer.watch`); each subscriber's ``requestId`` and the
  fields that may read the context (holes) are placeholders, filled per
  subscriber;
- a plan (:func:`compile_subscription`) builds a whole result for one
  subscription that runs on its own, when every field it selects is plain.

Both read a value as strawberry reads a field without a resolver
(``StrawberryField.get_result``), or, for a strawberry-django field of a
concrete model column, as strawberry-django reads one already loaded
(``getattr`` of the column's ``attname``); leaves are serialised by their own
GraphQL type's ``serialize``, objects are checked with their type's
``is_type_of``, ``__typename`` is the type's name, response keys come in the
order graphql-core collects them (aliases, fragments and repeated fields
merged as it merges them).

Anything else on the way — a null where the schema says non-null, a value its
scalar refuses, a column not loaded (deferred), an object of another type, an
error of any kind — makes the shape or plan give up on that event
(:class:`Miss`), and the event is executed by graphql-core as usual, errors
and all. Operations neither can describe always run the usual way.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

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
    "OBSERVED",
    "REQUEST_ID",
    "Hole",
    "Miss",
    "Plan",
    "Shape",
    "Template",
    "compile_shape",
    "compile_subscription",
    "counts",
    "observed_definition",
    "placeholder",
]

#: The attribute of a Subscription field (a strawberry field) naming its observed type.
OBSERVED: Final = "__gql_observer_definition__"

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


def _root(executor: Any) -> tuple[str, list[FieldNode], Any, dict[str, Any]]:
    """The one observed field a subscription selects: its response key, its nodes,
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
        or observed_definition(definition) is None
        or any(node.name.value != name for node in nodes)
        or getattr(definition, "extensions", None)
    ):
        raise _Unplannable
    return key, nodes, field, fragments


def observed_definition(field: Any) -> ObservedDefinition | None:
    """The observed type behind a Subscription field (a strawberry field), if any."""
    definition = getattr(field, OBSERVED, None) if isinstance(field, StrawberryField) else None
    return definition if isinstance(definition, ObservedDefinition) else None


def _compile(executor: Any) -> Plan:
    key, nodes, field, fragments = _root(executor)
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


# ---- shapes: the part of a result that is the same for every subscriber ------------

#: Marks this process's placeholders: unguessable, so that no stored value can pass
#: for one (and the splice checks that each appears where the shape says).
_TOKEN: Final = secrets.token_hex(12)
_SLOT = re.compile(r'"\\u0000gqlobs-' + _TOKEN + r'-(\d+)\\u0000"')
#: The slot of the subscriber's own ``requestId``.
REQUEST_ID: Final = 0


def placeholder(slot: int) -> str:
    """What stands for slot ``slot`` in a shared result until each subscriber's
    own value is spliced in."""
    return f"\x00gqlobs-{_TOKEN}-{slot}\x00"


@dataclass(frozen=True, slots=True)
class Hole:
    """A field of the observed object that each subscriber resolves on its own."""

    #: Its placeholder's slot (1, 2, ...).
    slot: int
    #: The response key of the envelope's ``data`` it is in.
    data_key: str
    #: Its response key in that object.
    key: str


class _Holes:
    __slots__ = ("data_key", "sink")

    def __init__(self, data_key: str, sink: list[Hole]) -> None:
        self.data_key, self.sink = data_key, sink

    def add(self, key: str) -> str:
        hole = Hole(len(self.sink) + 1, self.data_key, key)
        self.sink.append(hole)
        return placeholder(hole.slot)


@dataclass(frozen=True, slots=True)
class Template:
    """An encoded shared result cut at its slots: ``parts[0] + value(slots[0]) +
    parts[1] + ... + parts[-1]``."""

    parts: tuple[str, ...]
    slots: tuple[int, ...]

    def render(self, values: Mapping[int, str]) -> str:
        """The encoded result with each slot's (encoded) value spliced in."""
        parts, slots = self.parts, self.slots
        if not slots:
            return parts[0]
        out = [parts[0]]
        for slot, part in zip(slots, parts[1:], strict=True):
            out.append(values[slot])
            out.append(part)
        return "".join(out)


class Shape:
    """The result of one selection of an observed subscription, as far as it is the
    same for every subscriber: built from the envelope alone, with a slot for each
    subscriber's ``requestId`` and for each field of the observed object that may
    read the context (a hole, resolved per subscriber)."""

    __slots__ = ("_complete", "data_keys", "holes", "request_ids", "root_key")

    def __init__(
        self,
        root_key: str,
        complete: Callable[[Any], dict[str, Any]],
        request_ids: int,
        holes: tuple[Hole, ...],
        data_keys: tuple[str, ...],
    ) -> None:
        self.root_key = root_key
        self._complete = complete
        #: How often the selection has ``requestId`` (aliases).
        self.request_ids = request_ids
        self.holes = holes
        #: The response keys of the envelope's ``data`` field (aliases).
        self.data_keys = data_keys

    def result(self, envelope: Any) -> dict[str, Any]:
        """The shared ``data`` of a result for ``envelope`` (whose ``request_id``
        should be ``placeholder(REQUEST_ID)``), holes as placeholders; raises
        :class:`Miss` where graphql-core must decide."""
        try:
            data = self._complete(envelope)
        except Exception as error:
            counts["missed"] += 1
            raise Miss from error
        counts["planned"] += 1
        return data

    def template(self, encoded: str, data: dict[str, Any]) -> Template | None:
        """``encoded`` (the encoded payload of ``data``) cut at its slots, or
        ``None`` when its placeholders are not exactly where this shape puts them."""
        pieces = _SLOT.split(encoded)
        parts, slots = tuple(pieces[0::2]), tuple(int(s) for s in pieces[1::2])
        envelope = data[self.root_key]
        present = [h.slot for h in self.holes if isinstance(envelope.get(h.data_key), dict)]
        expected = sorted([REQUEST_ID] * self.request_ids + present)
        if sorted(slots) != expected:
            return None
        return Template(parts, slots)


def compile_shape(executor: Any) -> Shape | None:
    """The :class:`Shape` of ``executor``'s operation (a graphql-core ``Executor`` of
    a subscription to one observed field), or ``None`` when no part of it can be
    built without graphql-core (every subscriber then runs its own execution)."""
    try:
        return _compile_shape(executor)
    except _Unplannable:
        return None
    except Exception:
        logger.debug("Could not shape a subscription; it runs per subscriber", exc_info=True)
        return None


def _compile_shape(executor: Any) -> Shape:
    key, nodes, field, fragments = _root(executor)
    envelope_type = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
    if not isinstance(envelope_type, GraphQLObjectType):
        raise _Unplannable
    selection_sets = [node.selection_set for node in nodes if node.selection_set]
    holes: list[Hole] = []
    data_keys: list[str] = []
    request_ids = 0
    fields: list[tuple[str, Callable[[Any], Any], _Complete]] = []
    for response_key, group in _collect(envelope_type, selection_sets, fragments).items():
        name = group[0].name.value
        if name == "data" and all(n.name.value == name and not n.arguments for n in group):
            data_field = envelope_type.fields[name]
            complete = _completer(data_field.type, group, fragments, _Holes(response_key, holes))
            fields.append((response_key, _getter(data_field.extensions.get(_BACKREF)), complete))
            data_keys.append(response_key)
            continue
        fields.append(_object_field(envelope_type, response_key, group, fragments))
        if name == "requestId":
            request_ids += 1
    is_type_of = envelope_type.is_type_of
    resolve = field.resolve
    non_null = isinstance(field.type, GraphQLNonNull)

    def complete_result(event: Any) -> dict[str, Any]:
        value = resolve(event, _NO_INFO)
        if value is None:
            if non_null:
                raise Miss
            return {key: None}
        if is_type_of is not None and is_type_of(value, _NO_INFO) is not True:
            raise Miss
        return {key: {k: complete(get(value)) for k, get, complete in fields}}

    return Shape(key, complete_result, request_ids, tuple(holes), tuple(data_keys))


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
    type_: GraphQLOutputType,
    nodes: list[FieldNode],
    fragments: dict[str, Any],
    holes: _Holes | None = None,
) -> _Complete:
    """Completes a resolved value of ``type_`` as graphql-core's ``complete_value``
    would, or raises :class:`Miss` where graphql-core would do anything else."""
    if isinstance(type_, GraphQLNonNull):
        inner = _completer(type_.of_type, nodes, fragments, holes)

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
    holes: _Holes | None = None,
) -> _Complete:
    if isinstance(type_, GraphQLList):
        if holes is not None:
            raise _Unplannable  # slots are placed in one object, not in list items
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
        return _object_completer(type_, nodes, fragments, holes)
    raise _Unplannable  # interfaces and unions: graphql-core resolves the type


def _object_completer(
    type_: GraphQLObjectType,
    nodes: list[FieldNode],
    fragments: dict[str, Any],
    holes: _Holes | None = None,
) -> _Complete:
    """Completes an object; with ``holes``, a field no plan can build (one that may
    read the context: a resolver, permission classes, an extension, arguments) is
    left to each subscriber's own execution and stands in the result as a slot."""
    selection_sets = [node.selection_set for node in nodes if node.selection_set]
    fields: list[tuple[str, Callable[[Any], Any], _Complete]] = []
    for key, group in _collect(type_, selection_sets, fragments).items():
        try:
            fields.append(_object_field(type_, key, group, fragments))
        except _Unplannable:
            if holes is None:
                raise
            fields.append((key, _constant(holes.add(key)), _same))
    is_type_of = type_.is_type_of

    def complete_object(value: Any) -> dict[str, Any]:
        if is_type_of is not None and is_type_of(value, _NO_INFO) is not True:
            raise Miss
        return {key: complete(get(value)) for key, get, complete in fields}

    return complete_object


def _object_field(
    type_: GraphQLObjectType, key: str, group: list[FieldNode], fragments: dict[str, Any]
) -> tuple[str, Callable[[Any], Any], _Complete]:
    name = group[0].name.value
    if any(node.name.value != name or node.arguments for node in group):
        raise _Unplannable
    if name == "__typename":
        return (key, _constant(type_.name), _same)
    field = type_.fields.get(name)
    if field is None or field.args:
        raise _Unplannable
    return (key, _getter(field.extensions.get(_BACKREF)), _completer(field.type, group, fragments))


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
