"""Clients of the in-process application, and a counter of the server's queries."""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.db.backends import utils

from gql_observer import issue_token
from gql_observer.testing import GraphQLTransportWSCommunicator, settle

__all__ = [
    "LEGACY_ANSWER",
    "PONG",
    "Queries",
    "barrier_value",
    "connect",
    "library_queries",
    "next_after_legacy_query",
    "next_after_ping",
    "next_is_update",
]

PONG = {"type": "pong"}
#: What legacy graphql-ws answers first to :func:`next_after_legacy_query`'s query.
LEGACY_ANSWER = {"type": "data", "id": "barrier", "payload": {"data": {"__typename": "Query"}}}


async def connect(
    application: Any, user: User | None = None, params: dict[str, Any] | None = None
) -> GraphQLTransportWSCommunicator:
    """A connected, acknowledged client; ``user`` signs in with a token."""
    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    payload = dict(params or {})
    if user is not None:
        payload["token"] = await database_sync_to_async(issue_token)(user)
    await client.init(payload or None)
    return client


async def next_after_ping(client: GraphQLTransportWSCommunicator) -> dict[str, Any]:
    """Settle (:func:`gql_observer.testing.settle`: every change the runtime was
    handed is handled and its frames written), send a ping; the next message
    the client receives. :data:`PONG`, unless the server had sent something
    else first: this proves that nothing came, where a quiet spell of
    ``nothing()`` can miss a late frame."""
    await settle()
    await client.send({"type": "ping"})
    return await client.receive()


_barriers = itertools.count(1)


def barrier_value(what: str) -> str:
    """A value no test saved before, for a barrier's change."""
    return f"barrier {next(_barriers)} {what}"


async def next_is_update(
    client: GraphQLTransportWSCommunicator,
    op: str,
    root: str,
    field: str,
    value: Any,
    *,
    kind: str = "next",
) -> None:
    """Assert that the next frame ``client`` receives is ``op``'s ``update`` of
    ``root`` whose ``field`` is ``value``: the barrier's own change.

    A barrier proves that nothing came before it, where waiting for a quiet
    spell (``nothing()``) passes when a late or duplicate frame comes after the
    wait: after the action that must send nothing, :func:`gql_observer.testing.settle`
    (every change the runtime was handed is handled, its frames written), save
    a change that must arrive, and check that it is the next frame. Whatever the
    action caused was written before it. ``kind``: ``data`` on legacy graphql-ws."""
    message = await client.receive()
    assert message.get("type") == kind and message.get("id") == op, (
        f"expected the barrier's update of {op}, got {message!r}"
    )
    envelope = message["payload"]["data"][root]
    assert envelope["action"] == "update", f"expected the barrier's update, got {message!r}"
    assert envelope["data"][field] == value, f"expected the barrier's update, got {message!r}"


async def next_after_legacy_query(client: GraphQLTransportWSCommunicator) -> dict[str, Any]:
    """:func:`next_after_ping` for legacy graphql-ws, which has no ping: settle,
    start a query; the next message the client receives (:data:`LEGACY_ANSWER`, unless
    the server had sent something before). The query's ``complete`` is read
    too when the answer is the query's."""
    query = {"type": "start", "id": "barrier", "payload": {"query": "{ __typename }"}}
    await settle()
    await client.send(query)
    message = await client.receive()
    if message == LEGACY_ANSWER:
        assert await client.receive() == {"type": "complete", "id": "barrier"}
    return message


class Queries:
    """SQL statements the library ran (their stack passes through gql_observer)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __len__(self) -> int:
        return len(self.statements)

    def since(self, mark: int) -> list[str]:
        return self.statements[mark:]


@contextmanager
def library_queries(*, everyone: bool = False) -> Iterator[Queries]:
    """Record every statement run on any thread by gql_observer's own code (by any
    code, ``everyone``: strawberry-django reads a relation on a thread of its own)."""
    seen = Queries()
    # The debug cursor's execute calls this one: each statement is seen once.
    original = utils.CursorWrapper.execute

    def execute(self: Any, sql: str, params: Any = None) -> Any:
        if everyone or any(
            "/gql_observer/" in frame.filename for frame in traceback.extract_stack()
        ):
            seen.statements.append(sql)
        return original(self, sql, params)

    utils.CursorWrapper.execute = execute  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        utils.CursorWrapper.execute = original  # type: ignore[method-assign]
