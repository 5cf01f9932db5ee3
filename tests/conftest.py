"""The suite's fixtures (its helpers are in tests/support/)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.contrib.auth.models import User
from django.core.management.color import no_style
from django.db import connection, connections

from gql_observer.graphql import runtime
from gql_observer.testing import GraphQLTransportWSCommunicator
from tests.support.environment import REDIS_URL
from tests.support.leaks import SentFrames, recording
from tests.support.servers import Servers


@pytest.fixture(scope="session", autouse=True)
def _sent_frames() -> Iterator[SentFrames]:
    """Record what the server sends to in-process clients, all run long. At the
    end: if any test used the application, frames were recorded at all (else the
    scan of each test would prove nothing)."""
    with recording() as sent:
        yield sent
    if sent.application_used:
        assert sent.total, "no frame was recorded: the scan would prove nothing"


@pytest.fixture(autouse=True)
def _no_password_hash_leaves(
    request: pytest.FixtureRequest, _sent_frames: SentFrames
) -> Iterator[None]:
    """No frame or body the server sent to this test's clients holds a password hash."""
    _sent_frames.begin_test()
    yield
    leaked = _sent_frames.leaked()
    assert not leaked, f"{request.node.nodeid} was sent password hashes, in: {leaked[:3]}"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None) -> Iterator[None]:
    """pytest-django's test databases, dropped at the end once Django's one sync
    thread (where the server's reads run, outside any request) has closed its
    connections: PostgreSQL refuses to drop a database still in use, and each
    run would leave its ``test_gqlobs_<pid>`` behind."""
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture(scope="session")
def application(_sent_frames: SentFrames) -> Any:
    """The demo's ASGI application."""
    from schema_examples.asgi import application

    _sent_frames.application_used = True
    return application


@pytest.fixture(autouse=True)
async def _close_runtime() -> AsyncIterator[None]:
    """Every test leaves no hub, task or group behind."""
    yield
    current = runtime.running()
    if current is not None and not current.loop.is_closed():
        await current.close()


@pytest.fixture
def observer_settings(settings: Any) -> Callable[..., dict[str, Any]]:
    """``observer_settings(SUBSCRIBE_RATE=10_000, ...)`` merges the options into
    ``settings.GQL_OBSERVER`` (pytest-django's ``settings``: restored after the
    test) and returns what it is now."""

    def merge(**options: Any) -> dict[str, Any]:
        settings.GQL_OBSERVER = {**settings.GQL_OBSERVER, **options}
        merged: dict[str, Any] = settings.GQL_OBSERVER
        return merged

    return merge


@pytest.fixture
def users(transactional_db: None) -> list[User]:
    """The demo's seed: users 1-3."""
    created = []
    for n in (1, 2, 3):
        user = User(pk=n, username=f"test {n}", email=f"{n}@example.com")
        user.set_password(f"secret-{n}")
        user.save()
        created.append(user)
    # Explicit pks leave PostgreSQL's sequence behind: the next create would take pk 1.
    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), [User]):
            cursor.execute(sql)
    return created


@pytest.fixture
async def client(
    application: Any, users: list[User]
) -> AsyncIterator[GraphQLTransportWSCommunicator]:
    """A connected, acknowledged client of the demo's application."""
    async with GraphQLTransportWSCommunicator(application) as communicator:
        yield communicator


@pytest.fixture
def redis_layer(settings: Any, observer_settings: Callable[..., Any]) -> Iterator[str]:
    """Switch the channel layer to channels_redis on the running Redis.

    Changes saved by the test reach its subscribers through Redis: the
    in-process delivery (``DELIVER_IN_PROCESS``) would hand them over
    directly, since the test's process is also the server's. Its own tests
    turn it back on."""
    import redis

    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    observer_settings(DELIVER_IN_PROCESS=False)
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }
    yield REDIS_URL
    connection.flushdb()
    connection.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    """Real servers for this test: ``servers.in_thread()`` (uvicorn in this process),
    ``servers.demo(env)`` (a demo process), ``servers.redis()``; whatever the test
    leaves running is stopped after it (tests/support/servers.py)."""
    started = Servers(tmp_path)
    yield started
    started.close()


@pytest.fixture(scope="session")
def graphiql_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GraphiQL's assets, fetched from the npm registry once per session by
    ``manage.py gql_observer_graphiql_assets`` (the registry must be reachable)."""
    from django.core.management import call_command

    directory = tmp_path_factory.mktemp("graphiql-assets")
    call_command(
        "gql_observer_graphiql_assets", dir=str(directory), stdout=StringIO(), stderr=StringIO()
    )
    return directory
