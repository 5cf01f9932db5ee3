"""The Host of every HTTP request and websocket handshake must be one of
``ALLOWED_HOSTS``, as Django decides it (a DNS-rebinding page names its own)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from channels.testing import HttpCommunicator
from django.contrib.auth.models import User

from gql_observer.testing import GraphQLTransportWSCommunicator, ProtocolError

pytestmark = pytest.mark.django_db(transaction=True)

RENAME = 'mutation { updateUser(pk: 1, username: "rebound") { username } }'


async def post(application: Any, host: bytes, query: str, path: str = "/graphql/") -> Any:
    communicator = HttpCommunicator(
        application,
        "POST",
        path,
        body=json.dumps({"query": query}).encode(),
        headers=[(b"host", host), (b"content-type", b"application/json")],
    )
    return await communicator.get_response(timeout=5)


@pytest.mark.parametrize("host", [b"evil.example", b"evil.example:8000", b"127.0.0.1.evil.example"])
async def test_a_graphql_request_for_a_host_not_allowed_answers_400_and_runs_nothing(
    application: Any, users: list[User], host: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "django.security.DisallowedHost"):
        response = await post(application, host, RENAME)
    assert (response["status"], response["body"]) == (400, b"Bad Request (400)")
    assert (await User.objects.aget(pk=1)).username == "test 1"
    assert f"Invalid HTTP_HOST header: '{host.decode()}'." in caplog.text


async def test_a_django_url_for_a_host_not_allowed_answers_400(
    application: Any, users: list[User]
) -> None:
    response = await post(application, b"evil.example", "{ __typename }", path="/anything/")
    assert (response["status"], response["body"]) == (400, b"Bad Request (400)")


@pytest.mark.parametrize("host", [b"127.0.0.1:8000", b"localhost", b"[::1]:8000", b"testserver"])
async def test_an_allowed_host_is_answered(
    application: Any, users: list[User], host: bytes
) -> None:
    response = await post(application, host, RENAME)
    assert response["status"] == 200
    assert json.loads(response["body"]) == {"data": {"updateUser": {"username": "rebound"}}}


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_a_websocket_handshake_for_a_host_not_allowed_is_refused(
    application: Any, users: list[User], protocol: str
) -> None:
    client = GraphQLTransportWSCommunicator(
        application, headers=[(b"host", b"evil.example:8000")], subprotocols=[protocol]
    )
    with pytest.raises(ProtocolError, match="refused"):
        await client.connect()


async def test_a_websocket_handshake_for_an_allowed_host_is_accepted(
    application: Any, users: list[User]
) -> None:
    client = GraphQLTransportWSCommunicator(application, headers=[(b"host", b"localhost:8000")])
    await client.connect()
    await client.init()
    await client.disconnect()


async def test_with_debug_and_no_allowed_hosts_only_localhost_is_answered(
    application: Any, users: list[User], settings: Any
) -> None:
    settings.ALLOWED_HOSTS = []
    settings.DEBUG = True
    for host in (b"localhost:8000", b"app.localhost", b"127.0.0.1", b"[::1]"):
        assert (await post(application, host, "{ __typename }"))["status"] == 200, host
    assert (await post(application, b"example.com", "{ __typename }"))["status"] == 400


async def test_without_debug_and_no_allowed_hosts_nothing_is_answered(
    application: Any, users: list[User], settings: Any
) -> None:
    settings.ALLOWED_HOSTS = []
    settings.DEBUG = False
    assert (await post(application, b"localhost", "{ __typename }"))["status"] == 400


async def test_the_forwarded_host_counts_when_django_is_told_to_use_it(
    application: Any, users: list[User], settings: Any
) -> None:
    settings.USE_X_FORWARDED_HOST = True
    communicator = HttpCommunicator(
        application,
        "POST",
        "/graphql/",
        body=json.dumps({"query": RENAME}).encode(),
        headers=[
            (b"host", b"127.0.0.1:8000"),
            (b"x-forwarded-host", b"evil.example"),
            (b"content-type", b"application/json"),
        ],
    )
    assert (await communicator.get_response(timeout=5))["status"] == 400


async def test_a_handshake_whose_query_string_is_not_utf8_is_still_checked_and_served(
    application: Any, users: list[User]
) -> None:
    client = GraphQLTransportWSCommunicator(application, headers=[(b"host", b"localhost")])
    client.communicator.scope["query_string"] = b"\xff\xfe"
    await client.connect()
    await client.init()
    await client.disconnect()
