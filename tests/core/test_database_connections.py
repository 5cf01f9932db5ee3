"""The hub's reads survive a database connection that died under them.

The hub reads on one long-lived thread, outside any request, so Django's
per-request connection handling (``close_old_connections``) never runs there.
A PostgreSQL backend that is terminated (a restart, a failover, an idle
timeout, an administrator) must not leave that thread with a dead connection
that fails every read after it. Runs on PostgreSQL (``GQLOBS_TEST_DB=postgres``);
SQLite has no server side to lose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.db import connection, connections

from gql_observer import issue_token
from gql_observer.testing import GraphQLTransportWSCommunicator
from schema_examples.notes.models import Note
from tests.support.clients import connect
from tests.support.notes import note_envelope, subscribe_note
from tests.support.users import login_session, rename, subscribe_user, username_seen
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db_matrix]


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("a terminated server connection needs a database server (PostgreSQL)")


@pytest.fixture(autouse=True)
async def _close_read_thread_connection() -> AsyncIterator[None]:
    """The test database is dropped at the end: the read thread must not hold it open."""
    yield
    await sync_to_async(connections.close_all, thread_sensitive=True)()


@sync_to_async(thread_sensitive=True)
def _read_thread_backend() -> int:
    """The PostgreSQL backend of the thread the hub reads on (Django's sync thread)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid: int = cursor.fetchone()[0]
    return pid


def _on_own_connection(function: object, *args: object) -> object:
    """``function(*args)`` on a thread of its own with a connection of its own, closed after:
    the writer and the terminator must not touch the read thread's connection."""

    def run() -> object:
        try:
            return function(*args)  # type: ignore[operator]
        finally:
            connection.close()

    return asyncio.to_thread(run)


def _terminate(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        terminated: bool = cursor.fetchone()[0]
    return terminated


async def test_a_change_after_the_read_connection_was_terminated_is_delivered(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_user(client, 1)
    await _on_own_connection(rename, 1, "before")
    assert await username_seen(client, op) == "before"

    pid = await _read_thread_backend()
    assert await _on_own_connection(_terminate, pid) is True

    await _on_own_connection(rename, 1, "after the connection died")
    assert await username_seen(client, op) == "after the connection died"
    # The read went through a new connection, and it stays in use.
    assert await _read_thread_backend() != pid
    await _on_own_connection(rename, 1, "and again")
    assert await username_seen(client, op) == "and again"


async def test_a_subscribe_after_the_read_connection_was_terminated_is_answered(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_user(client, 1)
    pid = await _read_thread_backend()
    assert await _on_own_connection(_terminate, pid) is True

    second = await subscribe_user(client, 1, rid=2)
    await _on_own_connection(rename, 1, "seen by both")
    seen = {}
    for _ in range(2):
        message = await client.receive()
        assert message["type"] == "next"
        seen[message["id"]] = message["payload"]["data"]["user"]["data"]["username"]
    assert seen == {op: "seen by both", second: "seen by both"}


async def test_a_token_login_after_the_read_connection_was_terminated_is_accepted(
    application: Any, users: list[User]
) -> None:
    pid = await _read_thread_backend()
    assert await _on_own_connection(_terminate, pid) is True
    token = await _on_own_connection(issue_token, users[0])

    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    try:
        # The authenticator looks the user up on the read thread.
        assert (await client.init({"token": token}))["type"] == "connection_ack"
        op = await subscribe_user(client, 1)
        await _on_own_connection(rename, 1, "signed in")
        assert await username_seen(client, op) == "signed in"
    finally:
        await client.disconnect()


async def test_the_read_connection_is_replaced_once_older_than_conn_max_age(
    client: GraphQLTransportWSCommunicator,
) -> None:
    op = await subscribe_user(client, 1)
    pid = await _read_thread_backend()
    configured = connection.settings_dict["CONN_MAX_AGE"]  # one dict, shared by every thread

    @sync_to_async(thread_sensitive=True)
    def outlive_conn_max_age() -> None:
        # As if CONN_MAX_AGE were 60 and the connection had been opened 61 s ago.
        connection.settings_dict["CONN_MAX_AGE"] = 60
        connection.close_at = time.monotonic() - 1

    await outlive_conn_max_age()
    try:
        await _on_own_connection(rename, 1, "on a younger connection")
        assert await username_seen(client, op) == "on a younger connection"
        assert await _read_thread_backend() != pid
        # A connection within its age is kept.
        pid = await _read_thread_backend()
        await _on_own_connection(rename, 1, "on the same connection")
        assert await username_seen(client, op) == "on the same connection"
        assert await _read_thread_backend() == pid
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = configured


def _open() -> None:
    connection.ensure_connection()  # the calling thread's connection


def _close() -> None:
    connection.close()


def _allow_connections(allowed: bool) -> None:
    """Let new connections into the test database, or refuse them (the connections
    already open stay): from here on the database is down for anyone reconnecting.
    Said from the server's maintenance database: PostgreSQL refuses it from inside."""
    import psycopg

    params = connection.get_connection_params()
    name = connection.ops.quote_name(connection.settings_dict["NAME"])
    with psycopg.connect(
        host=params.get("host"),
        port=params.get("port"),
        user=params.get("user"),
        dbname="postgres",
        autocommit=True,
    ) as maintenance:
        maintenance.execute(
            f"ALTER DATABASE {name} ALLOW_CONNECTIONS {'true' if allowed else 'false'}"  # type: ignore[arg-type]
        )


@contextlib.asynccontextmanager
async def _database_down() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """For the body: the read thread's backend is terminated and the test database
    refuses new connections. Yields ``run(function, *args)``, which runs on a writer
    thread whose connection was opened before and stays open."""
    writer = ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()

    def run(function: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        return loop.run_in_executor(writer, function, *args)

    await run(_open)
    pid = await _read_thread_backend()
    await run(_allow_connections, False)
    try:
        assert await run(_terminate, pid) is True
        yield run
    finally:
        await run(_allow_connections, True)
        await run(_close)
        writer.shutdown()


async def _read_failed(caplog: pytest.LogCaptureFixture) -> None:
    """Wait until a read has failed to reach the database and waits for it (logged
    once per outage)."""
    await wait_until(
        lambda: "gql_observer: cannot read" in caplog.text, 10, "a read found the database down"
    )


async def test_a_change_read_while_the_database_is_down_is_delivered_when_it_is_back(
    client: GraphQLTransportWSCommunicator, caplog: pytest.LogCaptureFixture
) -> None:
    op = await subscribe_user(client, 1)
    with caplog.at_level(logging.WARNING, "gql_observer.core.db"):
        async with _database_down() as run:
            await run(rename, 1, "while the database was down")
            # The read cannot connect: it waits for the database ...
            await _read_failed(caplog)
    # ... and the subscriber is not told an error: its next frame is the change.
    assert await username_seen(client, op) == "while the database was down"


async def test_a_read_that_cannot_reach_the_database_within_the_retry_window_fails(
    client: GraphQLTransportWSCommunicator, observer_settings: Callable[..., Any]
) -> None:
    observer_settings(READ_RETRY_WINDOW=0.5)
    op = await subscribe_user(client, 1)
    async with _database_down() as run:
        await run(rename, 1, "never read")
        message = await client.receive(timeout=10)
    # As any read that fails: the subscription ends with a GraphQL error.
    assert message == {
        "id": op,
        "type": "next",
        "payload": {"data": None, "errors": [{"message": "Unexpected error."}]},
    }, message
    await client.expect_complete(op)


async def test_a_token_that_cannot_be_checked_while_the_database_is_down_closes_1013(
    application: Any, users: list[User]
) -> None:
    token = await _on_own_connection(issue_token, users[0])
    async with _database_down():
        client = GraphQLTransportWSCommunicator(application)
        await client.connect()
        await client.send({"type": "connection_init", "payload": {"token": token}})
        # "Try Again Later": graphql-ws reconnects after it (not after 4403 or 1011).
        assert await client.receive_close(timeout=10) == (1013, "Try again later")
    # Once the database is back, the same token is accepted.
    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    try:
        assert (await client.init({"token": token}))["type"] == "connection_ack"
    finally:
        await client.disconnect()


async def test_a_session_that_cannot_be_read_while_the_database_is_down_closes_1013(
    application: Any, users: list[User]
) -> None:
    key = await login_session(users[0])
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={key}".encode()
    async with _database_down():
        client = GraphQLTransportWSCommunicator(application, headers=[(b"cookie", cookie)])
        await client.connect()
        assert await client.receive_close(timeout=10) == (1013, "Try again later")
    # Once the database is back, the same session is served.
    async with GraphQLTransportWSCommunicator(application, headers=[(b"cookie", cookie)]) as client:
        op = await subscribe_user(client, 1)
        await _on_own_connection(rename, 1, "with the session")
        assert await username_seen(client, op) == "with the session"


def _create_note(owner: User) -> Note:
    return Note.objects.create(owner=owner, title="secret title", body="secret body")


def _delete_note(pk: int) -> None:
    Note.objects.filter(pk=pk).delete()


async def test_a_delete_checked_while_the_database_is_down_is_delivered_when_it_is_back(
    application: Any, users: list[User], caplog: pytest.LogCaptureFixture
) -> None:
    # An owned type: who may see a deleted note is checked against the database.
    note = await _on_own_connection(_create_note, users[0])
    client = await connect(application, users[0])
    op = await subscribe_note(client, note)
    with caplog.at_level(logging.WARNING, "gql_observer.core.db"):
        async with _database_down() as run:
            await run(_delete_note, note.pk)
            await _read_failed(caplog)  # the check waits for the database
    # The next frame is the delete (no error came before it).
    assert await client.next(op) == note_envelope(
        "delete", 204, {"id": str(note.pk), "title": "secret title", "body": "secret body"}
    )
    await client.expect_complete(op)
    await client.disconnect()
