"""Each member's payload for an event: the part that is the same for everybody
built and encoded once per shape and envelope, each member's ``requestId``
spliced in; fields that may read the context (holes) resolved by graphql-core
with that member's own executor; or, where no shape can vouch for the event,
the member's whole operation executed by graphql-core."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Hashable
from copy import copy
from typing import Any, Final, NamedTuple

from graphql import GraphQLError, GraphQLObjectType
from graphql.execution.collect_fields import collect_fields
from graphql.execution.executor import CollectedErrors, Executor
from graphql.pyutils import Path

from gql_observer.graphql.completion import Miss
from gql_observer.graphql.context import event_context
from gql_observer.graphql.frames import encode
from gql_observer.graphql.member import Member, Spec, envelope_of
from gql_observer.graphql.shapes import REQUEST_ID, Shape, Template, placeholder

__all__ = ["execute", "failure", "fill", "payloads"]

_REQUEST_ID: Final = placeholder(REQUEST_ID)


class _HolePlan(NamedTuple):
    """Where graphql-core resolves the holes of one ``data`` object of a selection."""

    data_key: str
    object_type: GraphQLObjectType
    data_type: Any
    data_details: Any
    path: Path
    fields: dict[str, Any]


def _in_event_context(
    member: Member, run: Callable[[Any], str | Awaitable[str]]
) -> str | Awaitable[str]:
    """``run(context)`` with the context of this event: a fresh one from the
    context hook (awaited if the hook is async), else the operation's."""
    context = event_context(member.executor().context_value)
    if not inspect.isawaitable(context):
        return run(context)
    awaitable = context

    async def later() -> str:
        outcome = run(await awaitable)
        return outcome if isinstance(outcome, str) else await outcome

    return later()


def execute(member: Member, item: Spec) -> str | Awaitable[str]:
    """``member``'s payload for ``item``, executed by graphql-core alone."""
    return _in_event_context(member, lambda context: _execute(member, item, context))


def _execute(member: Member, item: Spec, context: Any) -> str | Awaitable[str]:
    base = member.executor()
    executor = Executor.build_per_event_executor(base, member.envelope(item))
    executor.context_value = context
    executor._relevant_sub_fields = {}
    result = executor.execute_operation(False)
    if executor.is_awaitable(result):

        async def awaited() -> str:
            return _payload(member, await result)

        return awaited()
    return _payload(member, result)


def _payload(member: Member, result: Any) -> str:
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        errors = member.analysis.errors_of(list(result.errors))
        payload["errors"] = [error.formatted for error in errors]
    return encode(payload)


def fill(member: Member, shape: Shape, data: dict[str, Any], item: Spec) -> str | Awaitable[str]:
    """``member``'s payload from the shared ``data`` of ``shape``, its holes
    resolved by graphql-core with ``member``'s own context (of this event)."""
    return _in_event_context(member, lambda context: _fill(member, shape, data, item, context))


def _fill(
    member: Member, shape: Shape, data: dict[str, Any], item: Spec, context: Any
) -> str | Awaitable[str]:
    executor = copy(member.executor())
    executor.root_value = member.envelope(item)
    executor.context_value = context
    executor.collected_errors = CollectedErrors()
    executor._relevant_sub_fields = {}
    results: dict[str, Any] = {}
    waiting: dict[str, Awaitable[Any]] = {}
    envelope_data = data[shape.root_key]
    plans = [p for p in _holes(member) if isinstance(envelope_data.get(p.data_key), dict)]
    for plan in plans:
        try:
            value = executor.execute_fields(
                plan.object_type, item.instance, plan.path, plan.fields, None
            )
        except Exception as error:
            executor.handle_field_error(error, plan.data_type, plan.data_details, plan.path)
            value = None
        if executor.is_awaitable(value):
            waiting[plan.data_key] = value
        else:
            results[plan.data_key] = value
    if waiting:

        async def awaited() -> str:
            outcomes = await asyncio.gather(*waiting.values(), return_exceptions=True)
            for plan in plans:
                if plan.data_key not in waiting:
                    continue
                outcome = outcomes[list(waiting).index(plan.data_key)]
                if isinstance(outcome, BaseException):
                    if not isinstance(outcome, Exception):
                        raise outcome
                    executor.handle_field_error(
                        outcome, plan.data_type, plan.data_details, plan.path
                    )
                    outcome = None
                results[plan.data_key] = outcome
            return _merged(member, shape, data, results, executor.collected_errors.errors)

        return awaited()
    return _merged(member, shape, data, results, executor.collected_errors.errors)


def _merged(
    member: Member,
    shape: Shape,
    data: dict[str, Any],
    results: dict[str, Any],
    errors: list[GraphQLError],
) -> str:
    shared = data[shape.root_key]
    own: dict[str, Any] = {}
    for key, value in shared.items():
        if key in results:
            fields = results[key]
            if fields is None:
                own[key] = None  # a non-null hole failed: the object is null
                continue
            slots = {placeholder(h.slot): h.key for h in shape.holes if h.data_key == key}
            own[key] = {
                k: fields[slots[v]] if isinstance(v, str) and v in slots else v
                for k, v in value.items()
            }
        elif value == _REQUEST_ID:
            own[key] = member.request_id
        else:
            own[key] = value
    payload: dict[str, Any] = {"data": {shape.root_key: own}}
    if errors:
        masked = member.analysis.errors_of(list(errors))
        payload["errors"] = [error.formatted for error in masked]
    return encode(payload)


def _holes(member: Member) -> tuple[_HolePlan, ...]:
    """Where the holes of the member's document are resolved (worked out once per
    document, with the first member's executor)."""
    analysis = member.analysis
    if analysis.holes is None:
        analysis.holes = _hole_plans(member)
    holes: tuple[_HolePlan, ...] = analysis.holes
    return holes


def _hole_plans(member: Member) -> tuple[_HolePlan, ...]:
    shape = member.analysis.shape
    assert shape is not None
    executor = member.executor()
    schema = executor.schema
    root_type = schema.subscription_type
    collected = collect_fields(
        schema, executor.fragments, executor.variable_values, root_type, executor.operation
    )
    root_details = collected.grouped_field_set[shape.root_key]
    envelope_type = root_type.fields[root_details[0].node.name.value].type.of_type
    envelope_fields = executor.collect_subfields(envelope_type, root_details).grouped_field_set
    root_path = Path(None, shape.root_key, root_type.name)
    plans = []
    for data_key in shape.data_keys:
        keys = [h.key for h in shape.holes if h.data_key == data_key]
        if not keys:
            continue
        data_details = envelope_fields[data_key]
        data_type = envelope_type.fields["data"].type
        object_type = data_type.of_type if hasattr(data_type, "of_type") else data_type
        fields = executor.collect_subfields(object_type, data_details).grouped_field_set
        plans.append(
            _HolePlan(
                data_key,
                object_type,
                data_type,
                data_details,
                Path(root_path, data_key, envelope_type.name),
                {k: fields[k] for k in fields if k in keys},
            )
        )
    return tuple(plans)


def payloads(
    targets: list[tuple[Member, Spec]],
) -> list[tuple[Member, Spec, str | Awaitable[str]]]:
    """Each member's payload for its envelope (a string, or an awaitable where a
    resolver is async): the shared part built and encoded once per shape and
    envelope."""
    groups: dict[Hashable, list[tuple[Member, Spec]]] = {}
    for member, item in targets:
        shape = member.analysis.shape
        key = (member.analysis.shape_key, item.key) if shape is not None else id(member)
        groups.setdefault(key, []).append((member, item))
    out: list[tuple[Member, Spec, str | Awaitable[str]]] = []
    for group in groups.values():
        first, item = group[0]
        shape = first.analysis.shape
        data: dict[str, Any] | None = None
        template: Template | None = None
        if shape is not None:
            shared = envelope_of(first.analysis, item, _REQUEST_ID)
            try:
                data = shape.result(shared)
            except Miss:
                data = None
            else:
                template = shape.template(encode({"data": data}), data)
        for member, item in group:
            payload: str | Awaitable[str]
            if shape is None or data is None or template is None:
                payload = execute(member, item)
            elif not template.slots:
                payload = template.parts[0]
            elif max(template.slots) > REQUEST_ID:
                payload = fill(member, shape, data, item)
            else:
                payload = member.rid.join(template.parts)
            out.append((member, item, payload))
    return out


def failure(member: Member, error: Exception) -> str:
    """What strawberry sends when the subscription's source fails: a result with
    the (masked) error and no data, after which the stream completes."""
    coerced = (
        error if isinstance(error, GraphQLError) else GraphQLError(str(error), original_error=error)
    )
    errors = member.analysis.errors_of([coerced])
    return encode({"data": None, "errors": [e.formatted for e in errors]})
