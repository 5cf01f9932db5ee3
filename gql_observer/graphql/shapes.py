"""Shapes: the part of an observed subscription's result that is the same for
every subscriber, built once per event for all the subscribers of a watch;
each subscriber's ``requestId`` and the fields that may read the context
(holes) stand in it as placeholders, filled per subscriber
(:mod:`gql_observer.graphql.results`)."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from graphql import GraphQLNonNull, GraphQLObjectType

from gql_observer.graphql.completion import (
    BACKREF,
    NO_INFO,
    Complete,
    Miss,
    Unplannable,
    collect,
    completer,
    counts,
    getter,
    object_field,
    root,
)

__all__ = ["REQUEST_ID", "Hole", "Shape", "Template", "compile_shape", "placeholder"]

logger = logging.getLogger(__name__)


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
    except Unplannable:
        return None
    except Exception:
        logger.debug("Could not shape a subscription; it runs per subscriber", exc_info=True)
        return None


def _compile_shape(executor: Any) -> Shape:
    key, nodes, field, fragments = root(executor)
    envelope_type = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
    if not isinstance(envelope_type, GraphQLObjectType):
        raise Unplannable
    selection_sets = [node.selection_set for node in nodes if node.selection_set]
    holes: list[Hole] = []
    data_keys: list[str] = []
    request_ids = 0
    fields: list[tuple[str, Callable[[Any], Any], Complete]] = []
    for response_key, group in collect(envelope_type, selection_sets, fragments).items():
        name = group[0].name.value
        if name == "data" and all(n.name.value == name and not n.arguments for n in group):
            data_field = envelope_type.fields[name]
            complete = completer(data_field.type, group, fragments, _Holes(response_key, holes))
            fields.append((response_key, getter(data_field.extensions.get(BACKREF)), complete))
            data_keys.append(response_key)
            continue
        fields.append(object_field(envelope_type, response_key, group, fragments))
        if name == "requestId":
            request_ids += 1
    is_type_of = envelope_type.is_type_of
    resolve = field.resolve
    non_null = isinstance(field.type, GraphQLNonNull)

    def complete_result(event: Any) -> dict[str, Any]:
        value = resolve(event, NO_INFO)
        if value is None:
            if non_null:
                raise Miss
            return {key: None}
        if is_type_of is not None and is_type_of(value, NO_INFO) is not True:
            raise Miss
        return {key: {k: complete(get(value)) for k, get, complete in fields}}

    return Shape(key, complete_result, request_ids, tuple(holes), tuple(data_keys))
