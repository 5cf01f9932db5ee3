"""The Query and Subscription fields of every observed type, and a schema builder."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from functools import partial
from typing import Any, cast

import strawberry
from django.conf import settings as django_settings
from strawberry import Info
from strawberry.extensions import (
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)
from strawberry.scalars import JSON
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.tools import merge_types
from strawberry.types.field import StrawberryField

from gql_observer.changes.groups import instance_group, model_group
from gql_observer.core.conf import get_settings
from gql_observer.core.errors import should_mask
from gql_observer.fanout.hub import CLOSED, get_hub
from gql_observer.graphql.documents import PreparedDocuments
from gql_observer.graphql.envelope import (
    CREATED,
    DELETED,
    ERRORS,
    NOT_FOUND,
    OK,
    EnvelopeAction,
    envelope,
    envelope_type,
)
from gql_observer.graphql.plan import OBSERVED, Miss, Plan, compile_subscription
from gql_observer.graphql.visibility import (
    Verdict,
    deleted_instance,
    may_see_deleted,
    normalize_pk,
    read,
    viewer_of,
)
from gql_observer.observe import registry
from gql_observer.observe.definition import ObservedDefinition

__all__ = [
    "EventScopedExecutionContext",
    "build_schema",
    "default_extensions",
    "query_field",
    "query_type",
    "subscription_field",
    "subscription_type",
]

logger = logging.getLogger(__name__)


def query_field(definition: ObservedDefinition) -> StrawberryField:
    """``<name>(pk: ID!, requestId: JSON): <Type>Envelope!`` — retrieve one instance."""

    async def resolve(info: Info, pk: strawberry.ID, request_id: JSON | None = None) -> Any:
        value = normalize_pk(definition, pk)
        verdict = Verdict(NOT_FOUND)
        if value is not None:
            verdict = await read(definition, info, viewer_of(info), value)
        if verdict.status != OK:
            return refusal(definition, "retrieve", verdict.status, request_id)
        return envelope(definition, "retrieve", OK, request_id, verdict.instance)

    resolve.__annotations__ = {
        "info": Info,
        "pk": strawberry.ID,
        "request_id": JSON | None,
        "return": envelope_type(definition),
    }
    field: StrawberryField = strawberry.field(
        resolver=resolve,
        name=definition.field_name,
        description=f"Retrieve one {definition.type_name}.",
    )
    return field


def refusal(
    definition: ObservedDefinition, action: EnvelopeAction, status: int, request_id: Any
) -> Any:
    """An envelope without data: never any field of the instance."""
    return envelope(definition, action, status, request_id, None, list(ERRORS.get(status, ())))


def subscription_field(definition: ObservedDefinition) -> StrawberryField:
    """``<name>(pk: ID!, requestId: JSON): <Type>Envelope!`` — every committed change."""

    async def subscribe(
        info: Info, pk: strawberry.ID, request_id: JSON | None = None
    ) -> AsyncGenerator[Any, None]:
        value = normalize_pk(definition, pk)
        if value is None:
            yield refusal(definition, "subscribe_instance", NOT_FOUND, request_id)
            return
        viewer = viewer_of(info)
        # Subscribers who are the same viewer share a read of each change.
        key = (definition.field_name, viewer if definition.scoped else None)
        instance_pk = value
        if definition.lookup != "pk":
            found = await read(definition, info, viewer, value)
            if found.instance is None:
                yield refusal(definition, "subscribe_instance", found.status, request_id)
                return
            instance_pk = found.instance.pk
        prefix = get_settings()["GROUP_PREFIX"]
        group = instance_group(prefix, definition.model_label, instance_pk)
        hub = get_hub()
        # Join before the first read: a commit between the two is then seen.
        subscription = await hub.join(group, model_group(prefix, definition.model_label))
        try:
            # From here on the subscription follows the instance (its pk),
            # whatever becomes of the field it was looked up by.
            verdict = await read(definition, info, viewer, instance_pk, by_pk=True)
            if verdict.status != OK:
                yield refusal(definition, "subscribe_instance", verdict.status, request_id)
                return
            yield envelope(definition, "subscribe_instance", CREATED, request_id)

            async def reread() -> Verdict:
                return await read(definition, info, viewer, instance_pk, by_pk=True)

            while True:
                delivery = await subscription.next()
                if delivery is CLOSED:
                    return
                if delivery.action == "delete":
                    assert delivery.last is not None
                    last = deleted_instance(definition, delivery.last)
                    seen = await delivery.read(
                        key, partial(may_see_deleted, definition, viewer, last)
                    )
                    if seen.status != OK:
                        yield refusal(definition, "delete", seen.status, request_id)
                    else:
                        yield envelope(definition, "delete", DELETED, request_id, seen.instance)
                    return
                verdict = await delivery.read(key, reread)
                if verdict.status != OK:
                    # Deleted meanwhile, or no longer visible: fail closed, end here.
                    yield refusal(definition, "update", verdict.status, request_id)
                    return
                yield envelope(
                    definition, "update", OK, request_id, verdict.instance, resync=delivery.resync
                )
        finally:
            hub.leave(subscription)

    subscribe.__annotations__ = {
        "info": Info,
        "pk": strawberry.ID,
        "request_id": JSON | None,
        "return": AsyncGenerator[envelope_type(definition), None],  # type: ignore[misc]
    }
    field: StrawberryField = strawberry.subscription(  # type: ignore[assignment]
        resolver=subscribe,
        name=definition.field_name,
        description=f"Every committed change of one {definition.type_name}.",
    )
    setattr(field, OBSERVED, definition)
    return field


class EventScopedExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, with a memo of its own for every event,
    and planned results for observed subscriptions.

    graphql-core 3.3 builds each subscription event's executor as a shallow
    copy of the subscription's, sharing its memo of collected subfields; every
    event adds entries to it, kept until the subscription ends — about 3 KiB per
    event, found by the soak benchmark. Here each event starts a fresh memo.

    A subscription to an observed field whose selection is plain attributes
    gets its events' results from a plan (:mod:`gql_observer.plan`), compiled
    at its first event; an event the plan cannot vouch for is executed as usual.
    """

    _plan: Plan | None = None
    _planned = False
    _event = False

    def build_per_event_executor(self, payload: Any) -> Any:
        if not self._planned:
            self._planned = True
            if get_settings()["PLANNED_RESULTS"]:
                self._plan = compile_subscription(self)
        executor = cast(EventScopedExecutionContext, super().build_per_event_executor(payload))
        executor._relevant_sub_fields = {}
        executor._event = True
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        plan = self._plan
        if plan is not None and self._event and self.abort_signal is None:
            try:
                data = plan(self.root_value)
            except Miss:
                pass
            else:
                return self.build_response(data)
        return super().execute_operation(serially)


def _type(name: str, fields: dict[str, StrawberryField], doc: str) -> type[Any]:
    return strawberry.type(type(name, (), {**fields, "__doc__": doc, "__module__": __name__}))


def query_type(name: str = "ObservedQuery") -> type[Any]:
    """A Query type with the retrieve field of every observed type."""
    fields = {d.field_name: query_field(d) for d in registry.definitions()}
    return _type(name, fields, "Retrieve observed instances.")


def subscription_type(name: str = "ObservedSubscription") -> type[Any]:
    """A Subscription type with the live field of every observed type."""
    fields = {d.field_name: subscription_field(d) for d in registry.definitions()}
    return _type(name, fields, "Watch observed instances.")


def build_schema(
    *,
    query: type[Any] | None = None,
    mutation: type[Any] | None = None,
    subscription: type[Any] | None = None,
    types: Sequence[type[Any]] = (),
    **schema_options: Any,
) -> strawberry.Schema:
    """A strawberry Schema with your own root types plus every observed field.

    ``query``/``subscription`` are merged with the observed fields (a name
    clash is an error); everything in ``schema_options`` goes to
    ``strawberry.Schema`` as it is.
    """
    if not any(True for _ in registry.definitions()):
        raise ValueError(
            "No observed types: decorate a strawberry-django type with @observe(Model) "
            "and import its module before build_schema()."
        )
    root_query = merge_types("Query", (*([query] if query else []), query_type()))
    root_subscription = merge_types(
        "Subscription", (*([subscription] if subscription else []), subscription_type())
    )
    schema_options.setdefault("extensions", default_extensions())
    schema_options.setdefault("execution_context_class", EventScopedExecutionContext)
    return strawberry.Schema(
        query=root_query,
        mutation=mutation,
        subscription=root_subscription,
        types=types,
        **schema_options,
    )


def default_extensions() -> list[Any]:
    """The safe defaults ``build_schema`` installs unless given ``extensions=``:
    depth, token and alias limits, masked errors, documents parsed and validated
    once (:class:`gql_observer.documents.PreparedDocuments`), and introspection
    only where ``INTROSPECTION`` (default: ``DEBUG``) allows it."""
    options = get_settings()
    # Factories: strawberry builds fresh extensions for every operation.
    depth, tokens, aliases = (
        options["MAX_QUERY_DEPTH"],
        options["MAX_QUERY_TOKENS"],
        options["MAX_ALIASES"],
    )
    extensions: list[Any] = [
        lambda: QueryDepthLimiter(max_depth=depth),
        lambda: MaxTokensLimiter(max_token_count=tokens),
        lambda: MaxAliasesLimiter(max_alias_count=aliases),
        lambda: MaskErrors(should_mask_error=should_mask),
        # The transports' parse and validation, done once (and off the event loop
        # for long documents), are what strawberry executes.
        PreparedDocuments,
    ]
    introspection = options["INTROSPECTION"]
    if introspection is None:
        introspection = bool(django_settings.DEBUG)
    if not introspection:
        extensions.append(DisableIntrospection)
    return extensions
