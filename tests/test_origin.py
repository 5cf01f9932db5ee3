"""The websocket Origin check: browsers' Origin must be an allowed host."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from gql_observer.testing import GraphQLTransportWSCommunicator, ProtocolError

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("origin", [b"http://localhost:8000", b"http://127.0.0.1:8123"])
async def test_an_allowed_origin_is_accepted(
    application: Any, users: list[User], origin: bytes
) -> None:
    client = GraphQLTransportWSCommunicator(application, headers=[(b"origin", origin)])
    await client.connect()
    await client.init()
    await client.disconnect()


@pytest.mark.parametrize("origin", [b"http://evil.example.com", b"null", b"\xff\xfe"])
async def test_a_foreign_origin_is_refused(
    application: Any, users: list[User], origin: bytes
) -> None:
    client = GraphQLTransportWSCommunicator(application, headers=[(b"origin", origin)])
    with pytest.raises(ProtocolError, match="refused"):
        await client.connect()


async def test_no_origin_header_is_accepted_for_non_browser_clients(
    application: Any, users: list[User]
) -> None:
    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    await client.init()
    await client.disconnect()
