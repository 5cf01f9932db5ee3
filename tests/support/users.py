"""The demo's users as the tests subscribe to them, change them and sign them in."""

from __future__ import annotations

import time
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.db import close_old_connections, connection

from gql_observer.testing import GraphQLTransportWSCommunicator, settle
from tests.support.clients import barrier_value, next_is_update

__all__ = [
    "PADDING",
    "QUERY_USER",
    "SUBSCRIBE_USER",
    "USER_FIELDS",
    "barrier",
    "create_user",
    "login_session",
    "rename",
    "save_many",
    "save_user",
    "subscribe_user",
    "username_seen",
]

#: Every field of the ``user`` envelope, and of the user.
USER_FIELDS = "action errors responseStatus requestId data { id username email }"
SUBSCRIBE_USER = (
    f"subscription ($pk: ID!, $rid: JSON) {{ user(pk: $pk, requestId: $rid) {{ {USER_FIELDS} }} }}"
)
QUERY_USER = (
    f"query ($pk: ID!, $rid: JSON) {{ user(pk: $pk, requestId: $rid) {{ {USER_FIELDS} }} }}"
)
#: Long values make every update big (a stalled socket fills up early).
PADDING = "x" * 140


async def subscribe_user(client: GraphQLTransportWSCommunicator, pk: Any, rid: Any = 1) -> str:
    """Subscribe to a user; assert the 201 and return the operation id."""
    op = await client.subscribe(SUBSCRIBE_USER, {"pk": pk, "rid": rid})
    first = await client.next(op)
    assert first == {
        "user": {
            "action": "subscribe_instance",
            "errors": [],
            "responseStatus": 201,
            "requestId": rid,
            "data": None,
        }
    }
    return op


async def username_seen(client: GraphQLTransportWSCommunicator, op: str) -> str:
    """The username of the next frame, which must be an update of ``op``."""
    data = await client.next(op)
    assert data["user"]["action"] == "update"
    return str(data["user"]["data"]["username"])


async def barrier(
    client: GraphQLTransportWSCommunicator, op: str, pk: int, *, kind: str = "next"
) -> str:
    """Prove that ``client`` was sent nothing since the frame it received last:
    settle (:func:`gql_observer.testing.settle`), save a new email on user
    ``pk`` (``op`` subscribes to it and selects the email, as
    :data:`SUBSCRIBE_USER`) and assert that the next frame is ``op``'s update
    showing it (:func:`~tests.support.clients.next_is_update`; ``kind``:
    ``data`` on legacy graphql-ws). The email."""
    email = barrier_value("@example.com")
    await settle()
    await save_user(pk, email=email)
    await next_is_update(client, op, "user", "email", email, kind=kind)
    return email


@database_sync_to_async
def save_user(pk: int, **changes: Any) -> None:
    """Set ``changes`` on user ``pk`` and save it (one committed change)."""
    user = User.objects.get(pk=pk)
    for name, value in changes.items():
        setattr(user, name, value)
    user.save()


def rename(pk: int, name: str) -> None:
    """Rename user ``pk`` (in the calling thread, in its transaction if it is in one)."""
    user = User.objects.get(pk=pk)
    user.username = name
    user.save()


def create_user() -> int:
    """A new user, made on the calling thread's own connection (closed after); its pk."""
    try:
        close_old_connections()
        user = User.objects.create(username=f"slow {time.monotonic_ns()}", email="s@example.com")
        return int(user.pk)
    finally:
        connection.close()


def save_many(pk: int, count: int, every: float = 0.003) -> str:
    """``count`` committed saves of one user from this thread, one every ``every``
    seconds (a pace a reading client keeps up with), each padded to be big; the
    last username."""
    try:
        if connection.vendor == "sqlite":
            # Commits without fsync: the tests are about sockets, not disks.
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA synchronous=OFF")
        user = User.objects.get(pk=pk)
        began = time.monotonic()
        for n in range(count):
            user.username = f"{n:04d}-{PADDING}"
            user.email = f"{n:04d}-{PADDING}@example.com"
            user.save(update_fields=["username", "email"])
            ahead = began + (n + 1) * every - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        return user.username
    finally:
        connection.close()


@database_sync_to_async
def login_session(user: User) -> str:
    """A session in which ``user`` logged in; returns its key (the cookie's value)."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return str(session.session_key)
