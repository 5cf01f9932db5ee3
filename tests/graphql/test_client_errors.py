"""Clients' mistakes are logged at INFO without a traceback; the server's own
failures keep theirs (``gql_observer.graphql.schema.Schema.process_errors``),
through graphql-transport-ws and HTTP on the real ASGI app."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from channels.testing import HttpCommunicator
from django.contrib.auth.models import User

from gql_observer.graphql.schema import CLIENT_LOGGER
from gql_observer.testing import GraphQLTransportWSCommunicator
from tests.support import schema as support

pytestmark = pytest.mark.django_db(transaction=True)

SUBSCRIBE = "subscription($pk:ID!){user(pk:$pk){action}}"


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int, str, bool]]:
    return [
        (r.name, r.levelno, r.getMessage(), r.exc_info is not None and r.exc_info[0] is not None)
        for r in caplog.records
        if r.name in {CLIENT_LOGGER, "strawberry.execution"}
    ]


@pytest.fixture
async def client(users: list[User]) -> Any:
    async with GraphQLTransportWSCommunicator(support.application()) as communicator:
        yield communicator


@pytest.mark.parametrize(
    "variables", [{"pk": [1, 2]}, {"pk": {"a": 1}}, {}], ids=["list", "object", "missing"]
)
async def test_variables_that_do_not_fit_are_logged_at_info_without_a_traceback(
    client: GraphQLTransportWSCommunicator, caplog: pytest.LogCaptureFixture, variables: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    op = await client.subscribe(SUBSCRIBE, variables)
    message = await client.receive()
    assert message["type"] == "error" and message["id"] == op
    ((name, level, text, traced),) = logged(caplog)
    assert (name, level, traced) == (CLIENT_LOGGER, logging.INFO, False)
    assert text.startswith("Variable '$pk' ") and text.endswith("at 1:14"), text
    # The server serves on: the same socket subscribes correctly next.
    op = await client.subscribe(SUBSCRIBE, {"pk": 1})
    assert (await client.next(op))["user"]["action"] == "subscribe_instance"


async def test_a_syntax_error_is_logged_at_info_and_closes_4400(
    client: GraphQLTransportWSCommunicator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await client.subscribe("subscription {user(pk: 1){action", {})
    assert await client.receive_close() == (4400, "Syntax Error: Expected Name, found <EOF>.")
    assert logged(caplog) == [
        (CLIENT_LOGGER, logging.INFO, "Syntax Error: Expected Name, found <EOF>. at 1:33", False)
    ]


async def test_a_document_that_does_not_validate_is_logged_at_info(
    client: GraphQLTransportWSCommunicator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    op = await client.subscribe("query { nosuch }")
    assert (await client.receive())["type"] == "error"
    assert logged(caplog) == [
        (CLIENT_LOGGER, logging.INFO, "Cannot query field 'nosuch' on type 'Query'. at 1:9", False)
    ]
    op = await client.subscribe("query { ping }")
    assert await client.next(op) == {"ping": "pong"}


async def test_the_servers_own_failure_keeps_its_traceback(
    client: GraphQLTransportWSCommunicator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    op = await client.subscribe("query { broken }")
    message = await client.receive()
    assert message["payload"]["errors"][0]["message"] == "Unexpected error."
    ((name, level, text, traced),) = logged(caplog)
    assert (name, level, traced) == ("strawberry.execution", logging.ERROR, True)
    assert text.startswith("a bug in a resolver"), text
    record = next(r for r in caplog.records if r.name == "strawberry.execution")
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert (await client.receive())["type"] == "complete"
    op = await client.subscribe("query { ping }")
    assert await client.next(op) == {"ping": "pong"}


async def test_a_client_error_over_http_is_logged_at_info(
    users: list[User], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = json.dumps({"query": "query($pk:ID!){user(pk:$pk){action}}", "variables": {"pk": [1]}})
    communicator = HttpCommunicator(
        support.application(),
        "POST",
        "/graphql/",
        body=body.encode(),
        headers=[(b"host", b"testserver"), (b"content-type", b"application/json")],
    )
    response = await communicator.get_response(timeout=5)
    assert "ID cannot represent value: [1]" in json.loads(response["body"])["errors"][0]["message"]
    ((name, level, _, traced),) = logged(caplog)
    assert (name, level, traced) == (CLIENT_LOGGER, logging.INFO, False)
