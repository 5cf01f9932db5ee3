"""The websocket Origin check: a browser's page must be on the server's own origin
(scheme, host and port) or on one of ``CSRF_TRUSTED_ORIGINS``, as Django checks
the Origin of a POST; clients that send no Origin are not browsers."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from gql_observer.testing import GraphQLTransportWSCommunicator, ProtocolError

pytestmark = pytest.mark.django_db(transaction=True)

PROTOCOLS = ["graphql-transport-ws", "graphql-ws"]


def handshake(
    application: Any, host: bytes, origin: bytes | None, protocol: str, scheme: str = "ws"
) -> GraphQLTransportWSCommunicator:
    headers = [(b"host", host)] + ([(b"origin", origin)] if origin is not None else [])
    client = GraphQLTransportWSCommunicator(application, headers=headers, subprotocols=[protocol])
    client.communicator.scope["scheme"] = scheme
    return client


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("host", "origin"),
    [
        (b"127.0.0.1:8000", b"http://127.0.0.1:8000"),
        (b"localhost:8123", b"http://localhost:8123"),
        (b"[::1]", b"http://[::1]"),
    ],
)
async def test_the_servers_own_origin_is_accepted(
    application: Any, users: list[User], host: bytes, origin: bytes, protocol: str
) -> None:
    client = handshake(application, host, origin, protocol)
    await client.connect()
    assert client.subprotocol == protocol
    await client.disconnect()


async def test_the_servers_own_https_origin_is_accepted_on_wss(
    application: Any, users: list[User]
) -> None:
    client = handshake(
        application, b"localhost", b"https://localhost", "graphql-transport-ws", "wss"
    )
    await client.connect()
    await client.init()
    await client.disconnect()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "origin",
    [
        b"http://evil.example.com",
        b"null",
        b"\xff\xfe",
        # Another port or scheme on the same host is another origin.
        b"http://127.0.0.1:9999",
        b"https://127.0.0.1:8000",
        b"https://127.0.0.1",
        b"http://127.0.0.1",
        # Another allowed host is another origin too.
        b"http://localhost:8000",
    ],
)
async def test_a_foreign_origin_is_refused(
    application: Any, users: list[User], origin: bytes, protocol: str
) -> None:
    client = handshake(application, b"127.0.0.1:8000", origin, protocol)
    with pytest.raises(ProtocolError, match="refused"):
        await client.connect()


async def test_an_http_origin_is_refused_on_wss(application: Any, users: list[User]) -> None:
    client = handshake(
        application, b"localhost", b"http://localhost", "graphql-transport-ws", "wss"
    )
    with pytest.raises(ProtocolError, match="refused"):
        await client.connect()


@pytest.mark.parametrize(
    "origin", [b"https://app.example.com", b"https://eu.example.org", b"http://localhost:3000"]
)
async def test_an_origin_of_csrf_trusted_origins_is_accepted(
    application: Any, users: list[User], settings: Any, origin: bytes
) -> None:
    settings.CSRF_TRUSTED_ORIGINS = [
        "https://app.example.com",
        "https://*.example.org",
        "http://localhost:3000",
    ]
    client = handshake(application, b"127.0.0.1:8000", origin, "graphql-transport-ws")
    await client.connect()
    await client.init()
    await client.disconnect()


@pytest.mark.parametrize(
    "origin", [b"http://app.example.com", b"https://example.org.evil.com", b"http://localhost:3001"]
)
async def test_csrf_trusted_origins_match_scheme_host_and_port(
    application: Any, users: list[User], settings: Any, origin: bytes
) -> None:
    settings.CSRF_TRUSTED_ORIGINS = [
        "https://app.example.com",
        "https://*.example.org",
        "http://localhost:3000",
    ]
    client = handshake(application, b"127.0.0.1:8000", origin, "graphql-transport-ws")
    with pytest.raises(ProtocolError, match="refused"):
        await client.connect()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_no_origin_header_is_accepted_for_non_browser_clients(
    application: Any, users: list[User], protocol: str
) -> None:
    client = handshake(application, b"127.0.0.1:8000", None, protocol)
    await client.connect()
    assert client.subprotocol == protocol
    await client.disconnect()
