"""Planned results (``gql_observer.graphql.plan``): an observed subscription whose selection is
plain attributes gets each event's result without a GraphQL execution, and that result is
exactly graphql-core's — over the protocol, and event by event for the values a plan must
hand back to graphql-core (nulls where the schema says non-null, deferred columns, objects
of another type)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from graphql import parse

from gql_observer.graphql import completion
from gql_observer.graphql.envelope import envelope
from gql_observer.graphql.execution import EventScopedExecutionContext
from gql_observer.observe import registry
from gql_observer.testing import GraphQLTransportWSCommunicator
from schema_examples.notes.models import Note
from tests.support.users import USER_FIELDS, save_user

pytestmark = pytest.mark.django_db(transaction=True)

HEAD = "subscription ($pk: ID!, $rid: JSON) { user(pk: $pk, requestId: $rid)"
IF = "subscription ($pk: ID!, $rid: JSON, $yes: Boolean = true) { user(pk: $pk, requestId: $rid)"

#: Selections a plan builds (every field a plain attribute).
PLANNED = {
    "plain": f"{HEAD} {{ {USER_FIELDS} }} }}",
    "typenames": f"{HEAD} {{ __typename action errors responseStatus requestId resync "
    "data { __typename id username email } } }",
    "aliases": f"{HEAD} {{ status: responseStatus kind: action action "
    "data { name: username id mail: email } } }",
    "fragments": f"{HEAD} {{ ...Envelope data {{ id ...Fields "
    "... on UserType { email id } } } }"
    " fragment Envelope on UserTypeEnvelope { action responseStatus requestId }"
    " fragment Fields on UserType { username id }",
    "repeated": f"{HEAD} {{ data {{ id }} action data {{ username id }} data {{ email }} }} }}",
}
#: Selections a plan leaves to graphql-core.
EXECUTED = {
    "directive": f"{IF} {{ action data {{ id username @include(if: $yes) }} }} }}",
    "skipped": f"{IF} {{ action @skip(if: $yes) responseStatus data {{ id }} }} }}",
}


async def _frames(
    application: Any, observer_settings: Callable[..., Any], document: str, planned: bool
) -> Any:
    """Subscribe to user 1 with ``document``, save it twice; the three results as JSON
    (the request id named after the run, so that the two runs never share a cohort), and
    how many events a plan built meanwhile."""
    observer_settings(PLANNED_RESULTS=planned)
    rid = "planned" if planned else "executed"
    await save_user(1, username="test 1", email="1@example.com")  # both runs start alike
    before = completion.counts["planned"]
    async with GraphQLTransportWSCommunicator(application) as client:
        op = await client.subscribe(document, {"pk": "1", "rid": rid})
        results = [await client.next(op)]
        await save_user(1, username=f"renamed {rid}")
        results.append(await client.next(op))
        await save_user(1, username="renamed", email="moved@example.com")
        results.append(await client.next(op))
    text = json.dumps(results).replace(f'"renamed {rid}"', '"renamed"').replace(rid, "rid")
    return text, completion.counts["planned"] - before


@pytest.mark.parametrize("name", sorted(PLANNED))
async def test_planned_results_are_graphql_cores(
    application: Any, users: list[User], observer_settings: Callable[..., Any], name: str
) -> None:
    planned, built = await _frames(application, observer_settings, PLANNED[name], planned=True)
    executed, none = await _frames(application, observer_settings, PLANNED[name], planned=False)
    assert built == 3  # the 201 and both updates came from the plan ...
    assert none == 0  # ... and with PLANNED_RESULTS off from graphql-core
    assert planned == executed
    assert "moved@example.com" in planned


@pytest.mark.parametrize("name", sorted(EXECUTED))
async def test_selections_a_plan_cannot_describe_run_as_usual(
    application: Any, users: list[User], observer_settings: Callable[..., Any], name: str
) -> None:
    planned, built = await _frames(application, observer_settings, EXECUTED[name], planned=True)
    executed, _ = await _frames(application, observer_settings, EXECUTED[name], planned=False)
    assert built == 0
    assert planned == executed


async def test_a_deleted_instance_is_planned_too(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    async def delete_frame(planned: bool) -> dict[str, Any]:
        observer_settings(PLANNED_RESULTS=planned)
        await sync_to_async(User.objects.update_or_create)(
            pk=2, defaults={"username": "test 2", "email": "2@example.com"}
        )
        async with GraphQLTransportWSCommunicator(application) as client:
            op = await client.subscribe(PLANNED["typenames"], {"pk": "2", "rid": planned})
            await client.next(op)
            await sync_to_async(User.objects.filter(pk=2).delete)()
            frame = await client.next(op)
            await client.expect_complete(op)
        frame["user"]["requestId"] = None
        return frame

    before = completion.counts["planned"]
    planned = await delete_frame(True)
    assert completion.counts["planned"] - before == 2
    assert planned == await delete_frame(False)
    assert planned["user"]["action"] == "delete"
    assert planned["user"]["data"] == {
        "__typename": "UserType",
        "id": "2",
        "username": "test 2",
        "email": "2@example.com",
    }


# Event by event: the plan hands every value it cannot vouch for back to graphql-core.


def _executor(document: str) -> EventScopedExecutionContext:
    from schema_examples.schema import schema

    built = EventScopedExecutionContext.build(
        schema._schema, parse(document), raw_variable_values={"pk": "1", "rid": 7}
    )
    assert isinstance(built, EventScopedExecutionContext), built
    return built


def _both(document: str, event: Any) -> tuple[Any, Any]:
    """(the result through a plan, graphql-core's result) of one event."""
    subscription = _executor(document)
    planned = subscription.build_per_event_executor(event).execute_operation(False)
    assert subscription.plan is not None
    per_event = subscription.build_per_event_executor(event)
    executed = super(EventScopedExecutionContext, per_event).execute_operation(False)
    return planned.formatted, executed.formatted


def _user_envelope(data: Any, **fields: Any) -> Any:
    definition = registry.by_field("user")
    assert definition is not None
    value = envelope(definition, "update", 200, 7, data)
    for name, field_value in fields.items():
        setattr(value, name, field_value)
    return value


@pytest.mark.parametrize(
    "case",
    ["ok", "no data", "null status", "null in errors", "a note as a user", "deferred email"],
)
def test_each_event_is_planned_or_handed_back_with_the_same_result(
    users: list[User], case: str
) -> None:
    user = User.objects.get(pk=1)
    event, expect_plan = {
        "ok": (_user_envelope(user, request_id={"nested": [1, "two", None]}), True),
        "no data": (_user_envelope(None), True),
        "null status": (_user_envelope(user, response_status=None), False),
        "null in errors": (_user_envelope(user, errors=["fine", None]), False),
        "a note as a user": (
            _user_envelope(Note(pk=5, owner_id=1, title="t", body="b")),
            False,
        ),
        "deferred email": (_user_envelope(User.objects.only("id", "username").get(pk=1)), False),
    }[case]
    planned_before, missed_before = completion.counts["planned"], completion.counts["missed"]
    planned, executed = _both(PLANNED["typenames"], event)
    assert planned == executed
    assert completion.counts["planned"] - planned_before == int(expect_plan)
    assert completion.counts["missed"] - missed_before == int(not expect_plan)
    if case == "null status":
        assert "Cannot return null for non-nullable field" in planned["errors"][0]["message"]


# Live lists: their envelopes (create, update, delete, with pk) come from a plan too.

LIST_HEAD = (
    "subscription ($filters: UserFilter, $rid: JSON) { users(filters: $filters, requestId: $rid)"
)
LIST_PLANNED = {
    "plain": f"{LIST_HEAD} {{ action errors responseStatus requestId pk "
    "data { id username email } } }",
    "typenames": f"{LIST_HEAD} {{ __typename kind: action pk status: responseStatus "
    "...Row data { __typename id } } }"
    " fragment Row on UserTypeRowEnvelope"
    " { requestId data { username ... on UserType { email } } }",
}


async def _list_frames(
    application: Any, observer_settings: Callable[..., Any], document: str, planned: bool
) -> Any:
    """A list subscriber (on its own: COHORTS off) sees a row enter, change, leave,
    come back and be deleted; its frames as JSON, and how many a plan built."""
    observer_settings(PLANNED_RESULTS=planned, COHORTS=False)
    before = completion.counts["planned"]
    filters = {"username": {"startsWith": "plan-"}}
    async with GraphQLTransportWSCommunicator(application) as client:
        op = await client.subscribe(document, {"filters": filters, "rid": 9})
        results = [await client.next(op)]
        user = await sync_to_async(User.objects.create)(username="plan-1", email="p@x.org")
        results.append(await client.next(op))
        await save_user(user.pk, email="q@x.org")
        results.append(await client.next(op))
        await save_user(user.pk, username="gone")
        results.append(await client.next(op))
        await save_user(user.pk, username="plan-again")
        results.append(await client.next(op))
        await sync_to_async(User.objects.filter(pk=user.pk).delete)()
        results.append(await client.next(op))
    text = json.dumps(results)
    for key in ("pk", "id"):
        text = text.replace(f'"{key}": "{user.pk}"', f'"{key}": "the pk"')
    return text, completion.counts["planned"] - before


@pytest.mark.parametrize("name", sorted(LIST_PLANNED))
async def test_list_events_running_through_strawberry_are_planned_as_graphql_core_executes_them(
    application: Any, users: list[User], observer_settings: Callable[..., Any], name: str
) -> None:
    planned, built = await _list_frames(
        application, observer_settings, LIST_PLANNED[name], planned=True
    )
    executed, none = await _list_frames(
        application, observer_settings, LIST_PLANNED[name], planned=False
    )
    assert (built, none) == (6, 0)
    assert planned == executed
    for action in ("subscribe_list", "create", "update", "delete"):
        assert action in planned
