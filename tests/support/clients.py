"""Clients of the in-process application, and a counter of the server's queries."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.db.backends import utils

from gql_observer import issue_token
from gql_observer.testing import GraphQLTransportWSCommunicator

__all__ = ["PONG", "Queries", "connect", "library_queries", "next_after_ping"]

PONG = {"type": "pong"}


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
    """Send a ping; the next message the client receives. :data:`PONG`, unless the
    server had sent something before it answered: what it sent earlier comes
    first. Once whatever could send a frame is known to be done with it (another
    subscriber of its watch got its own frame of the event, or the watch ended),
    this proves deterministically that no frame came, where a quiet spell of
    ``nothing()`` can miss a late one."""
    await client.send({"type": "ping"})
    return await client.receive()


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
