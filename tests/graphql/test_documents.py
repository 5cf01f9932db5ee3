"""Client documents, over HTTP and the websocket: parsed once per text and within
the token limit, validated once, and the long ones off the event loop."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from channels.testing import HttpCommunicator
from django.contrib.auth.models import User

from gql_observer.graphql import analysis as operation
from gql_observer.graphql import documents
from gql_observer.graphql.documents import INLINE_LENGTH, BoundedCache
from gql_observer.testing import GraphQLTransportWSCommunicator
from tests.support.parses import graphql_work

pytestmark = pytest.mark.django_db(transaction=True)

#: A valid query longer than what is parsed in the event loop.
LONG_QUERY = "query Long { user(pk: 1) { responseStatus" + " requestId" * 40 + " } }"
LONG_SUBSCRIPTION = LONG_QUERY.replace("query Long", "subscription Long")
SHORT_QUERY = "{ user(pk: 1) { responseStatus } }"
WORKER = "gql_observer.documents"
TOO_MANY_TOKENS = "Syntax Error: Document contains more than 2000 tokens. Parsing aborted."


@pytest.fixture(autouse=True)
def _nothing_parsed_yet() -> None:
    """Each test starts from empty caches: what it sends is parsed for it."""
    documents.forget()
    operation.forget()


async def post(application: Any, query: str) -> tuple[int, Any]:
    communicator = HttpCommunicator(
        application,
        "POST",
        "/graphql/",
        body=json.dumps({"query": query}).encode(),
        headers=[(b"host", b"testserver"), (b"content-type", b"application/json")],
    )
    response = await communicator.get_response(timeout=10)
    return response["status"], json.loads(response["body"])


def test_the_documents_of_these_tests_are_long_and_short() -> None:
    assert len(LONG_QUERY) > INLINE_LENGTH >= len(SHORT_QUERY)


async def test_an_http_document_is_parsed_once_and_never_beyond_the_token_limit(
    application: Any, users: list[User]
) -> None:
    document = "{" + " a" * 30_000 + "}"  # 60 KB of tokens: the body limit allows it
    with graphql_work() as work:
        status, body = await post(application, document)
    assert (status, body) == (
        200,
        {
            "data": None,
            "errors": [{"message": TOO_MANY_TOKENS, "locations": [{"line": 1, "column": 4001}]}],
        },
    )
    assert [parse.tokens for parse in work.parses] == [2001]


async def test_an_http_query_is_parsed_and_validated_once(
    application: Any, users: list[User]
) -> None:
    with graphql_work() as work:
        status, body = await post(application, LONG_QUERY)
    assert (status, body) == (200, {"data": {"user": {"responseStatus": 200, "requestId": None}}})
    assert (len(work.parses), len(work.validations)) == (1, 1)


async def test_a_query_over_the_websocket_is_parsed_and_validated_once(
    client: GraphQLTransportWSCommunicator,
) -> None:
    with graphql_work() as work:
        op = await client.subscribe(LONG_QUERY)
        assert await client.next(op) == {"user": {"responseStatus": 200, "requestId": None}}
        await client.expect_complete(op)
    assert (len(work.parses), len(work.validations)) == (1, 1)


async def test_an_observed_subscription_is_parsed_and_validated_once(
    client: GraphQLTransportWSCommunicator,
) -> None:
    with graphql_work() as work:
        op = await client.subscribe(LONG_SUBSCRIPTION)
        assert await client.next(op) == {"user": {"responseStatus": 201, "requestId": None}}
    assert (len(work.parses), len(work.validations)) == (1, 1)


async def test_a_text_seen_before_is_neither_parsed_nor_validated_again(
    application: Any, client: GraphQLTransportWSCommunicator
) -> None:
    await post(application, LONG_QUERY)
    with graphql_work() as work:
        assert (await post(application, LONG_QUERY))[0] == 200
        op = await client.subscribe(LONG_QUERY)
        assert await client.next(op) == {"user": {"responseStatus": 200, "requestId": None}}
    assert (work.parses, work.validations) == ([], [])


async def test_long_documents_are_parsed_and_validated_off_the_event_loop(
    application: Any, client: GraphQLTransportWSCommunicator
) -> None:
    loop_thread = threading.current_thread().name
    with graphql_work() as work:
        await post(application, LONG_QUERY)
        op = await client.subscribe(LONG_SUBSCRIPTION)
        await client.next(op)
    assert [parse.thread.startswith(WORKER) for parse in work.parses] == [True, True]
    assert [thread.startswith(WORKER) for thread in work.validations] == [True, True]
    with graphql_work() as work:
        await post(application, SHORT_QUERY)
    assert [parse.thread for parse in work.parses] == [loop_thread]
    assert work.validations == [loop_thread]


async def test_a_long_document_that_does_not_parse_closes_4400_after_one_parse(
    client: GraphQLTransportWSCommunicator,
) -> None:
    with graphql_work() as work:
        await client.subscribe("{" + " a" * 3000 + "}")
        assert await client.receive_close() == (4400, TOO_MANY_TOKENS)
    assert [parse.tokens for parse in work.parses] == [2001]
    assert work.parses[0].thread.startswith(WORKER)


async def test_legacy_graphql_ws_answers_a_document_that_does_not_parse_with_an_error(
    application: Any, users: list[User]
) -> None:
    client = GraphQLTransportWSCommunicator(application, subprotocols=["graphql-ws"])
    await client.connect()
    await client.send({"type": "connection_init"})
    assert await client.receive() == {"type": "connection_ack"}
    await client.send({"type": "start", "id": "1", "payload": {"query": "{" + " a" * 3000 + "}"}})
    assert await client.receive() == {
        "type": "error",
        "id": "1",
        "payload": {"message": TOO_MANY_TOKENS, "locations": [{"line": 1, "column": 4001}]},
    }
    await client.send({"type": "start", "id": "2", "payload": {"query": SHORT_QUERY}})
    assert (await client.receive())["payload"] == {"data": {"user": {"responseStatus": 200}}}
    await client.disconnect()


async def test_max_query_tokens_limits_the_first_parse(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(MAX_QUERY_TOKENS=20)
    with graphql_work() as work:
        status, body = await post(application, "{" + " __typename" * 30 + "}")
    assert status == 200
    assert body["errors"][0]["message"] == (
        "Syntax Error: Document contains more than 20 tokens. Parsing aborted."
    )
    assert [parse.tokens for parse in work.parses] == [21]


def test_the_cache_keeps_the_most_recent_within_its_entries_and_weight() -> None:
    cache: BoundedCache[str, str] = BoundedCache(entries=3, weight=100)
    for key in "abcd":
        cache.put(key, key.upper(), 10)
    assert (len(cache), cache.get("a"), cache.get("d")) == (3, None, "D")
    cache.get("b")  # now the most recent
    cache.put("heavy", "H", 85)
    assert (cache.get("b"), cache.get("c"), cache.get("heavy")) == ("B", None, "H")
    assert cache.total <= 100
    cache.put("too heavy", "X", 101)
    assert cache.get("too heavy") is None


async def test_the_parse_cache_stays_within_its_bound(application: Any, users: list[User]) -> None:
    big = "{" + " __typename" * 1990 + "}"
    for n in range(40):  # 40 documents of 2,000 tokens each: more than the bound holds
        await post(application, f"# {n}\n{big}")
    held, weight = documents.cache_held()
    assert weight <= documents.CACHE_BYTES
    assert 0 < held < 40
