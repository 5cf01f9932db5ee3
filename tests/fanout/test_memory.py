"""Nothing a subscription handles stays behind: memory per event is flat."""

from __future__ import annotations

import gc

import pytest
from django.contrib.auth.models import User
from graphql.execution.collect_fields import FieldDetails

from gql_observer.testing import GraphQLTransportWSCommunicator
from tests.support.users import save_user, subscribe_user

pytestmark = pytest.mark.django_db(transaction=True)


def field_details() -> int:
    gc.collect()
    # type() rather than isinstance(): lazy objects resolve on __class__.
    return sum(type(o) is FieldDetails for o in gc.get_objects())


async def test_a_long_subscription_keeps_nothing_per_event(
    client: GraphQLTransportWSCommunicator, users: list[User]
) -> None:
    op = await subscribe_user(client, 1)

    async def events(n: int, tag: str) -> None:
        for i in range(n):
            await save_user(1, username=f"{tag} {i}")
            while (await client.next(op))["user"]["data"]["username"] != f"{tag} {i}":
                pass

    await events(20, "warm")
    before = field_details()
    await events(200, "measured")
    # graphql-core 3.3 kept ~10 objects per event until the subscription ended.
    assert field_details() - before < 20


def test_build_schema_installs_the_event_scoped_execution_context() -> None:
    from gql_observer.graphql.execution import EventScopedExecutionContext
    from schema_examples.schema import schema

    assert schema.execution_context_class is EventScopedExecutionContext
