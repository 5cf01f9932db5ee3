"""gql_observer beside a project's own Channels consumers: the one-call helper
forwards every path it does not serve (websockets included) to the project's
application, and the HTTP and websocket apps drop into the project's own
URLRouters; the chat consumer gets its group's messages while a GraphQL
subscription on the same application is live, and the library's Host and
Origin guards hold on every route."""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.contrib.auth.models import User

from gql_observer.testing import GraphQLTransportWSCommunicator, ProtocolError
from tests.support.mounting import routed_application, validated_application
from tests.support.users import QUERY_USER, save_user, subscribe_user, username_seen

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

HOST = (b"host", b"testserver")
ORIGIN = (b"origin", b"http://testserver")


async def _chat(
    application: Any, room: str, *headers: tuple[bytes, bytes]
) -> WebsocketCommunicator:
    chat = WebsocketCommunicator(application, f"/ws/chat/{room}/", headers=[HOST, *headers])
    connected, _ = await chat.connect()
    assert connected
    return chat


async def _chat_messages_arrive_beside(application: Any) -> None:
    """A chat client and a GraphQL subscriber on ``application``: the chat gets
    what its own consumer and what the test send to its group, then a save
    reaches the subscriber."""
    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    await client.init()
    op = await subscribe_user(client, 1)
    chat = await _chat(application, "lobby", ORIGIN)
    await chat.send_json_to({"message": "hello from the chat"})
    assert await chat.receive_json_from() == {
        "room": "chat_lobby",
        "message": "hello from the chat",
    }
    layer = get_channel_layer()
    await layer.group_send(
        "chat_lobby", {"type": "chat.message", "room_id": "chat_lobby", "message": "from a task"}
    )
    assert await chat.receive_json_from() == {"room": "chat_lobby", "message": "from a task"}
    await save_user(1, username="still live")
    assert await username_seen(client, op) == "still live"
    await chat.disconnect()
    await client.disconnect()


async def test_the_one_call_helper_hands_other_websocket_paths_to_the_project(
    application: Any, users: list[User]
) -> None:
    await _chat_messages_arrive_beside(application)


async def test_the_apps_in_the_projects_own_url_routers_serve_beside_its_chat(
    users: list[User],
) -> None:
    await _chat_messages_arrive_beside(routed_application())


async def test_a_query_over_http_through_the_projects_url_router(users: list[User]) -> None:
    body = json.dumps({"query": QUERY_USER, "variables": {"pk": 1, "rid": 7}}).encode()
    http = HttpCommunicator(
        routed_application(),
        "POST",
        "/graphql/",
        body=body,
        headers=[HOST, (b"content-type", b"application/json")],
    )
    response = await http.get_response()
    assert response["status"] == 200
    user = json.loads(response["body"])["data"]["user"]
    assert (user["action"], user["responseStatus"], user["requestId"]) == ("retrieve", 200, 7)
    assert user["data"]["username"] == "test 1"


async def test_other_http_paths_still_reach_django(users: list[User]) -> None:
    http = HttpCommunicator(routed_application(), "GET", "/nothing-here/", headers=[HOST])
    response = await http.get_response()
    assert response["status"] == 404  # Django's own answer


async def test_a_host_outside_allowed_hosts_is_refused_on_every_route(
    application: Any, users: list[User]
) -> None:
    bad = [(b"host", b"evil.example")]
    for app in (application, routed_application()):
        client = GraphQLTransportWSCommunicator(app, headers=bad)
        with pytest.raises(ProtocolError, match="refused"):
            await client.connect()
    chat = WebsocketCommunicator(application, "/ws/chat/lobby/", headers=bad)
    assert (await chat.connect())[0] is False
    http = HttpCommunicator(routed_application(), "POST", "/graphql/", body=b"{}", headers=bad)
    assert (await http.get_response())["status"] == 400


async def test_a_foreign_origin_is_refused_on_the_graphql_route_of_a_url_router(
    users: list[User],
) -> None:
    foreign = GraphQLTransportWSCommunicator(
        routed_application(), headers=[(b"origin", b"http://evil.example")]
    )
    with pytest.raises(ProtocolError, match="refused"):
        await foreign.connect()
    # Its own origin, and no Origin at all (Python gql, Node graphql-ws), are served.
    for headers in ([ORIGIN], []):
        async with GraphQLTransportWSCommunicator(routed_application(), headers=headers) as client:
            await subscribe_user(client, 1)


async def test_allowed_hosts_origin_validator_refuses_clients_without_an_origin(
    users: list[User],
) -> None:
    # What the docs warn about: the validator wants an Origin, which non-browser
    # clients do not send. The chat still needs one in routed_application();
    # its GraphQL route, outside the validator, does not (test above).
    client = GraphQLTransportWSCommunicator(validated_application())
    with pytest.raises(ProtocolError, match="refused"):
        await client.connect()
    async with GraphQLTransportWSCommunicator(
        validated_application(), headers=[ORIGIN]
    ) as browser_like:
        await subscribe_user(browser_like, 1)
    chat = WebsocketCommunicator(routed_application(), "/ws/chat/lobby/", headers=[HOST])
    assert (await chat.connect())[0] is False


async def test_the_helper_refuses_websockets_when_the_project_serves_none(
    users: list[User],
) -> None:
    from gql_observer.asgi import application as build
    from schema_examples.asgi import django_application
    from schema_examples.schema import schema

    app = build(schema, django_application=django_application)  # Django's: HTTP only
    chat = WebsocketCommunicator(app, "/ws/chat/lobby/", headers=[HOST])
    assert (await chat.connect())[0] is False
    async with GraphQLTransportWSCommunicator(app) as client:
        await subscribe_user(client, 1)
