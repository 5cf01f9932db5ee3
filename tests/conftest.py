from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from gql_observer.graphql import runtime
from gql_observer.testing import GraphQLTransportWSCommunicator

REDIS_URL = os.environ.get("GQLOBS_TEST_REDIS", "redis://127.0.0.1:6379/9")

USER_FIELDS = "action errors responseStatus requestId data { id username email }"
SUBSCRIBE_USER = (
    f"subscription ($pk: ID!, $rid: JSON) {{ user(pk: $pk, requestId: $rid) {{ {USER_FIELDS} }} }}"
)
QUERY_USER = (
    f"query ($pk: ID!, $rid: JSON) {{ user(pk: $pk, requestId: $rid) {{ {USER_FIELDS} }} }}"
)


#: Every frame and HTTP body the server sent to an in-process client in this run.
SENT: list[str] = []
#: Whether any test talked to the in-process application (then frames must exist).
APPLICATION_USED: list[bool] = []
#: What a password hash looks like, whatever the hasher.
HASH = re.compile(r"(md5|pbkdf2_sha256|pbkdf2_sha1|argon2|bcrypt_sha256|scrypt)\$")


@pytest.fixture(scope="session", autouse=True)
def _no_password_hash_ever_leaves() -> Iterator[None]:
    """Record what the server sends in every test; at the end, no frame or body
    of the whole run may hold a password hash."""
    from channels.testing import ApplicationCommunicator

    original = ApplicationCommunicator.receive_output

    async def recording(self: Any, timeout: float = 1) -> Any:
        output = await original(self, timeout)
        for key in ("text", "body"):
            value = output.get(key)
            if value:
                SENT.append(value if isinstance(value, str) else value.decode("utf-8", "replace"))
        return output

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ApplicationCommunicator, "receive_output", recording)
        yield
    if any(APPLICATION_USED):
        assert SENT, "no frame was recorded: the scan would prove nothing"
    leaked = [frame for frame in SENT if HASH.search(frame)]
    assert not leaked, f"password hashes were sent: {leaked[:3]}"


@pytest.fixture(scope="session")
def application() -> Any:
    from schema_examples.asgi import application

    APPLICATION_USED.append(True)
    return application


@pytest.fixture(autouse=True)
async def _close_runtime() -> AsyncIterator[None]:
    """Every test leaves no hub, task or group behind."""
    yield
    current = runtime.running()
    if current is not None and not current.loop.is_closed():
        await current.close()


@pytest.fixture
def users(transactional_db: None) -> list[User]:
    """The demo's seed: users 1-3."""
    created = []
    for n in (1, 2, 3):
        user = User(pk=n, username=f"test {n}", email=f"{n}@example.com")
        user.set_password(f"secret-{n}")
        user.save()
        created.append(user)
    return created


@pytest.fixture
async def client(
    application: Any, users: list[User]
) -> AsyncIterator[GraphQLTransportWSCommunicator]:
    async with GraphQLTransportWSCommunicator(application) as communicator:
        yield communicator


@pytest.fixture
def redis_layer(settings: Any) -> Iterator[str]:
    """Switch the channel layer to channels_redis on the running Redis.

    Changes saved by the test reach its subscribers through Redis: the
    in-process delivery (``DELIVER_IN_PROCESS``) would hand them over
    directly, since the test's process is also the server's. Its own tests
    turn it back on."""
    import redis

    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    settings.GQL_OBSERVER = {**settings.GQL_OBSERVER, "DELIVER_IN_PROCESS": False}
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }
    yield REDIS_URL
    connection.flushdb()
    connection.close()


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


@database_sync_to_async
def save_user(pk: int, **changes: Any) -> None:
    user = User.objects.get(pk=pk)
    for name, value in changes.items():
        setattr(user, name, value)
    user.save()


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


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 50 ms; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)
