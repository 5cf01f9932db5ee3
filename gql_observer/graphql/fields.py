"""The Query and Subscription fields of an observed type, as strawberry runs them
(a subscription that is not served by a watch runs this resolver on its own)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from functools import partial
from typing import Any

import strawberry
from strawberry import Info
from strawberry.scalars import JSON
from strawberry.types.field import StrawberryField

from gql_observer.changes.groups import instance_group, model_group
from gql_observer.fanout.delivery import CLOSED
from gql_observer.graphql.completion import OBSERVED
from gql_observer.graphql.envelope import (
    CREATED,
    DELETED,
    ERRORS,
    NOT_FOUND,
    OK,
    Action,
    envelope,
    envelope_type,
)
from gql_observer.graphql.relations import plan_read
from gql_observer.graphql.rows import deleted_instance, normalize_pk
from gql_observer.graphql.runtime import current
from gql_observer.graphql.viewers import viewer_of
from gql_observer.graphql.visibility import Verdict, may_see_deleted, read
from gql_observer.observe.definition import ObservedDefinition

__all__ = ["query_field", "refusal", "subscription_field"]


def query_field(definition: ObservedDefinition) -> StrawberryField:
    """``<name>(pk: ID!, requestId: JSON): <Type>Envelope!`` — retrieve one instance."""

    async def resolve(info: Info, pk: strawberry.ID, request_id: JSON | None = None) -> Any:
        value = normalize_pk(definition, pk)
        verdict = Verdict(NOT_FOUND)
        if value is not None:
            viewer = viewer_of(info, definition)
            plan = plan_read(definition, info)
            verdict = await read(current().reads, definition, info, viewer, value, plan=plan)
        if verdict.status != OK:
            return refusal(definition, Action.RETRIEVE, verdict.status, request_id)
        return envelope(definition, Action.RETRIEVE, OK, request_id, verdict.instance)

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


def refusal(definition: ObservedDefinition, action: Action, status: int, request_id: Any) -> Any:
    """An envelope without data: never any field of the instance."""
    return envelope(definition, action, status, request_id, None, list(ERRORS.get(status, ())))


def subscription_field(definition: ObservedDefinition) -> StrawberryField:
    """``<name>(pk: ID!, requestId: JSON): <Type>Envelope!`` — every committed change."""

    async def subscribe(
        info: Info, pk: strawberry.ID, request_id: JSON | None = None
    ) -> AsyncGenerator[Any, None]:
        value = normalize_pk(definition, pk)
        if value is None:
            yield refusal(definition, Action.SUBSCRIBE_INSTANCE, NOT_FOUND, request_id)
            return
        runtime = current()
        reads = runtime.reads
        viewer = viewer_of(info, definition)
        # Subscribers who are the same viewer share a read of each change.
        key = (definition.field_name, viewer if definition.scoped else None)
        instance_pk = value
        if definition.lookup != "pk":
            found = await read(reads, definition, info, viewer, value)
            if found.instance is None:
                yield refusal(definition, Action.SUBSCRIBE_INSTANCE, found.status, request_id)
                return
            instance_pk = found.instance.pk
        prefix = runtime.settings.group_prefix
        group = instance_group(prefix, definition.model_label, instance_pk)
        hub = runtime.hub
        # Join before the first read: a commit between the two is then seen.
        subscription = await hub.join(group, model_group(prefix, definition.model_label))
        try:
            # From here on the subscription follows the instance (its pk),
            # whatever becomes of the field it was looked up by.
            verdict = await read(reads, definition, info, viewer, instance_pk, by_pk=True)
            if verdict.status != OK:
                yield refusal(definition, Action.SUBSCRIBE_INSTANCE, verdict.status, request_id)
                return
            yield envelope(definition, Action.SUBSCRIBE_INSTANCE, CREATED, request_id)
            # The relations every event reads, planned once for this operation.
            plan = plan_read(definition, info)

            async def reread() -> Verdict:
                return await read(
                    reads, definition, info, viewer, instance_pk, by_pk=True, plan=plan
                )

            while True:
                delivery = await subscription.next()
                if delivery is CLOSED:
                    return
                if delivery.action == "delete":
                    assert delivery.last is not None
                    last = deleted_instance(definition, delivery.last)
                    seen = await delivery.read(
                        key, partial(may_see_deleted, reads, definition, viewer, last)
                    )
                    if seen.status != OK:
                        yield refusal(definition, Action.DELETE, seen.status, request_id)
                    else:
                        yield envelope(
                            definition, Action.DELETE, DELETED, request_id, seen.instance
                        )
                    return
                verdict = await delivery.read(key, reread)
                if verdict.status != OK:
                    # Deleted meanwhile, or no longer visible: fail closed, end here.
                    yield refusal(definition, Action.UPDATE, verdict.status, request_id)
                    return
                yield envelope(
                    definition,
                    Action.UPDATE,
                    OK,
                    request_id,
                    verdict.instance,
                    resync=delivery.resync,
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
