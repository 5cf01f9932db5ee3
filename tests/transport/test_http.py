"""The retrieve Query and the mutations over HTTP, on the real ASGI app."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from channels.testing import HttpCommunicator
from django.contrib.auth.models import User

from tests.support.users import QUERY_USER

pytestmark = pytest.mark.django_db(transaction=True)

#: The host Django's test client names (pytest-django allows it).
TEST_HOST = (b"host", b"testserver")


async def post(application: Any, query: str, variables: dict[str, Any] | None = None) -> Any:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    communicator = HttpCommunicator(
        application,
        "POST",
        "/graphql/",
        body=body,
        headers=[TEST_HOST, (b"content-type", b"application/json")],
    )
    response = await communicator.get_response(timeout=5)
    assert response["status"] == 200, response
    return json.loads(response["body"])


async def test_retrieve_answers_200_with_the_instance(application: Any, users: list[User]) -> None:
    assert await post(application, QUERY_USER, {"pk": 1, "rid": 1550050}) == {
        "data": {
            "user": {
                "action": "retrieve",
                "errors": [],
                "responseStatus": 200,
                "requestId": 1550050,
                "data": {"id": "1", "username": "test 1", "email": "1@example.com"},
            }
        }
    }


@pytest.mark.parametrize(
    "pk", [999, "abc", "", "1.5", "-1", "99999999999999999999999999", -(2**64)]
)
async def test_retrieve_of_a_missing_or_malformed_pk_answers_404(
    application: Any, users: list[User], pk: Any
) -> None:
    assert await post(application, QUERY_USER, {"pk": pk, "rid": "r"}) == {
        "data": {
            "user": {
                "action": "retrieve",
                "errors": ["Not found."],
                "responseStatus": 404,
                "requestId": "r",
                "data": None,
            }
        }
    }


async def test_create_user_stores_the_password_hashed_and_never_shows_it(
    application: Any, users: list[User]
) -> None:
    result = await post(
        application,
        'mutation { createUser(username: "new", '
        'email: "n@example.com", password: "pw-123") { id username email } }',
    )
    assert result["data"]["createUser"]["username"] == "new"
    user = await User.objects.aget(username="new")
    assert user.check_password("pw-123") and user.password != "pw-123"
    assert user.password not in json.dumps(result)


async def test_update_user_changes_only_given_fields(application: Any, users: list[User]) -> None:
    result = await post(
        application, 'mutation { updateUser(pk: 2, username: "renamed") { id username email } }'
    )
    assert result == {
        "data": {"updateUser": {"id": "2", "username": "renamed", "email": "2@example.com"}}
    }


async def test_mutations_on_a_missing_pk_answer_a_graphql_error(
    application: Any, users: list[User]
) -> None:
    for mutation in ('updateUser(pk: 99, username: "x")', "deleteUser(pk: 99)"):
        result = await post(application, f"mutation {{ {mutation} {{ id }} }}")
        assert result["data"] is None
        assert result["errors"][0]["message"] == "No user with pk '99'."


async def test_delete_user_answers_the_last_values(application: Any, users: list[User]) -> None:
    result = await post(application, "mutation { deleteUser(pk: 3) { id username } }")
    assert result == {"data": {"deleteUser": {"id": "3", "username": "test 3"}}}
    assert not await User.objects.filter(pk=3).aexists()


async def test_password_is_in_no_type_of_the_schema() -> None:
    from schema_examples.schema import schema

    sdl = schema.as_str()
    assert "password: String!" in sdl  # the createUser argument, write-only
    assert (
        "type UserType {\n  groups: [UserGroupType!]!\n  id: ID!\n  username: String!\n"
        "  email: String!\n}"
    ) in sdl
    assert "UserTypeEnvelope" in sdl


async def get_ide(observer_settings: Callable[..., Any], **options: Any) -> Any:
    from gql_observer.asgi import application as build

    observer_settings(**options)
    communicator = HttpCommunicator(
        build(), "GET", "/graphql/", headers=[TEST_HOST, (b"accept", b"text/html")]
    )
    return await communicator.get_response(timeout=5)


async def test_graphiql_follows_its_setting(observer_settings: Callable[..., Any]) -> None:
    response = await get_ide(observer_settings, GRAPHIQL=True)
    assert response["status"] == 200
    assert b"https://unpkg.com/graphiql@" in response["body"]
    assert (await get_ide(observer_settings, GRAPHIQL=False))["status"] == 404


async def test_graphiql_is_off_by_default_without_debug(
    settings: Any, observer_settings: Callable[..., Any]
) -> None:
    settings.DEBUG = False
    assert (await get_ide(observer_settings, GRAPHIQL=None))["status"] == 404


async def test_graphiql_assets_can_come_from_your_own_server(
    observer_settings: Callable[..., Any],
) -> None:
    response = await get_ide(observer_settings, GRAPHIQL=True, GRAPHIQL_ASSETS_URL="/static/ide/")
    assert b"unpkg.com" not in response["body"]
    assert b'src="/static/ide/graphiql@' in response["body"]


async def test_update_user_validates_only_the_fields_it_changes(
    application: Any, users: list[User]
) -> None:
    # "test 2" would fail Django's username validator; an email change must not care.
    result = await post(
        application, 'mutation { updateUser(pk: 2, email: "x@example.com") { username email } }'
    )
    assert result == {"data": {"updateUser": {"username": "test 2", "email": "x@example.com"}}}
    result = await post(
        application, 'mutation { updateUser(pk: 2, email: "not an email") { email } }'
    )
    assert result["errors"][0]["message"] == "Enter a valid email address."


async def test_usernames_may_hold_spaces_but_stay_unique(
    application: Any, users: list[User]
) -> None:
    result = await post(
        application, 'mutation { updateUser(pk: 1, username: "edited user name") { username } }'
    )
    assert result == {"data": {"updateUser": {"username": "edited user name"}}}
    result = await post(
        application, 'mutation { updateUser(pk: 2, username: "edited user name") { username } }'
    )
    assert result["errors"][0]["message"] == "A user with that username already exists."


async def test_a_subscription_over_plain_http_is_refused_with_400(
    application: Any, users: list[User]
) -> None:
    body = json.dumps({"query": "subscription { user(pk: 1) { action } }"}).encode()
    communicator = HttpCommunicator(
        application,
        "POST",
        "/graphql/",
        body=body,
        headers=[TEST_HOST, (b"content-type", b"application/json")],
    )
    response = await communicator.get_response(timeout=5)
    assert response["status"] == 400
    assert b"Subscriptions are served over a websocket" in response["body"]


async def send_body(application: Any, body: bytes, headers: list[tuple[bytes, bytes]]) -> Any:
    communicator = HttpCommunicator(
        application,
        "POST",
        "/graphql/",
        body=body,
        headers=[TEST_HOST, (b"content-type", b"application/json"), *headers],
    )
    return await communicator.get_response(timeout=5)


async def test_a_body_beyond_max_request_size_answers_413(
    application: Any, users: list[User]
) -> None:
    from gql_observer.core.conf import get_settings

    limit = get_settings().max_request_size
    body = json.dumps({"query": "{ __typename }", "variables": {"x": "a" * limit}}).encode()
    response = await send_body(application, body, [])
    assert (response["status"], response["body"]) == (
        413,
        f"Request body too large: the limit is {limit} bytes.".encode(),
    )


async def test_a_body_announced_beyond_max_request_size_answers_413_before_it_is_read(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(MAX_REQUEST_SIZE=1000)
    # Only the announcement is too big: the answer comes before the body would.
    response = await send_body(application, b"{}", [(b"content-length", b"11000000")])
    assert (response["status"], response["body"]) == (
        413,
        b"Request body too large: the limit is 1000 bytes.",
    )


async def test_a_body_at_max_request_size_is_served(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    query = json.dumps({"query": "{ __typename }"}).encode()
    observer_settings(MAX_REQUEST_SIZE=len(query))
    response = await send_body(application, query, [])
    assert (response["status"], json.loads(response["body"])) == (
        200,
        {"data": {"__typename": "Query"}},
    )


async def test_a_query_string_beyond_max_request_size_answers_414(
    application: Any, users: list[User], observer_settings: Callable[..., Any]
) -> None:
    observer_settings(MAX_REQUEST_SIZE=1000)
    communicator = HttpCommunicator(
        application, "GET", "/graphql/?query=" + "%7B" * 400 + "__typename", headers=[TEST_HOST]
    )
    response = await communicator.get_response(timeout=5)
    assert (response["status"], response["body"]) == (
        414,
        b"URI Too Long: the limit is 1000 bytes.",
    )
