"""Django's CSRF rules for HTTP requests that the session cookie authenticates:
the Origin (or, over HTTPS without one, the Referer) and the token of the
``X-CSRFToken`` header against the ``csrftoken`` cookie, as ``CsrfViewMiddleware``
checks them. A bearer token is no ambient credential: its requests are exempt."""

from __future__ import annotations

import json
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator
from django.conf import settings as django_settings
from django.contrib.auth.models import User

from gql_observer import issue_token
from schema_examples.notes.models import Note
from tests.support.users import login_session

pytestmark = pytest.mark.django_db(transaction=True)

HOST = b"127.0.0.1:8000"
SAME_ORIGIN = "http://127.0.0.1:8000"
CREATE_NOTE = 'mutation { createNote(title: "forged") { title } }'
CREATED = {"data": {"createNote": {"title": "forged"}}}


async def request(
    application: Any,
    method: str = "POST",
    *,
    query: str = CREATE_NOTE,
    cookies: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    scheme: str = "http",
) -> tuple[int, bytes, dict[bytes, bytes]]:
    pairs = [(b"host", HOST), (b"content-type", b"application/json")]
    if cookies:
        cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
        pairs.append((b"cookie", cookie.encode()))
    pairs += [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
    communicator = HttpCommunicator(
        application,
        method,
        "/graphql/",
        body=json.dumps({"query": query}).encode() if method == "POST" else b"",
        headers=pairs,
    )
    communicator.scope["scheme"] = scheme
    response = await communicator.get_response(timeout=5)
    return response["status"], response["body"], dict(response["headers"])


@pytest.fixture
def application(observer_settings: Callable[..., Any]) -> Any:
    """The application, with GraphiQL (which hands out the CSRF cookie)."""
    from gql_observer.asgi import application as build

    observer_settings(GRAPHIQL=True)
    return build()


@pytest.fixture
async def session(users: list[User]) -> dict[str, str]:
    """The session cookie of ``test 1``, logged in."""
    return {django_settings.SESSION_COOKIE_NAME: await login_session(users[0])}


async def graphiql_csrf_cookie(application: Any) -> str:
    """The CSRF cookie that the GraphiQL page gives a browser."""
    status, _, headers = await request(application, "GET", headers={"accept": "text/html"})
    assert status == 200
    cookie = SimpleCookie(headers[b"Set-Cookie"].decode())
    return cookie[django_settings.CSRF_COOKIE_NAME].value


async def notes() -> int:
    return await Note.objects.acount()


async def test_a_cookie_authenticated_mutation_from_a_foreign_origin_is_refused_403(
    application: Any, session: dict[str, str]
) -> None:
    token = await graphiql_csrf_cookie(application)
    status, body, _ = await request(
        application,
        cookies={**session, "csrftoken": token},
        headers={"origin": "http://evil.example", "x-csrftoken": token},
    )
    assert (status, body) == (
        403,
        b"CSRF Failed: Origin checking failed - http://evil.example does not match any "
        b"trusted origins.",
    )
    assert await notes() == 0


async def test_a_cookie_authenticated_mutation_without_the_csrf_cookie_is_refused_403(
    application: Any, session: dict[str, str]
) -> None:
    status, body, _ = await request(application, cookies=session, headers={"origin": SAME_ORIGIN})
    assert (status, body) == (403, b"CSRF Failed: CSRF cookie not set.")
    assert await notes() == 0


async def test_a_cookie_authenticated_mutation_without_the_csrf_header_is_refused_403(
    application: Any, session: dict[str, str]
) -> None:
    token = await graphiql_csrf_cookie(application)
    status, body, _ = await request(
        application, cookies={**session, "csrftoken": token}, headers={"origin": SAME_ORIGIN}
    )
    assert (status, body) == (403, b"CSRF Failed: CSRF token missing.")
    assert await notes() == 0


async def test_a_cookie_authenticated_mutation_with_a_wrong_token_is_refused_403(
    application: Any, session: dict[str, str]
) -> None:
    token = await graphiql_csrf_cookie(application)
    status, body, _ = await request(
        application,
        cookies={**session, "csrftoken": token},
        headers={"origin": SAME_ORIGIN, "x-csrftoken": "x" * 32},
    )
    assert (status, body) == (
        403,
        b"CSRF Failed: CSRF token from the 'X-Csrftoken' HTTP header incorrect.",
    )


async def test_a_cookie_authenticated_mutation_with_graphiqls_token_runs(
    application: Any, session: dict[str, str]
) -> None:
    # What GraphiQL does: read the csrftoken cookie, send it as X-CSRFToken.
    token = await graphiql_csrf_cookie(application)
    for headers in ({"origin": SAME_ORIGIN}, {}):  # browsers send Origin; plain HTTP needs none
        status, body, _ = await request(
            application,
            cookies={**session, "csrftoken": token},
            headers={**headers, "x-csrftoken": token},
        )
        assert (status, json.loads(body)) == (200, CREATED)
    assert await notes() == 2


async def test_a_trusted_origin_with_the_token_runs(
    application: Any, session: dict[str, str], settings: Any
) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.com"]
    token = await graphiql_csrf_cookie(application)
    status, body, _ = await request(
        application,
        cookies={**session, "csrftoken": token},
        headers={"origin": "https://app.example.com", "x-csrftoken": token},
    )
    assert (status, json.loads(body)) == (200, CREATED)


async def test_over_https_without_origin_the_referer_must_be_the_servers_own(
    application: Any, session: dict[str, str]
) -> None:
    token = await graphiql_csrf_cookie(application)
    cookies = {**session, "csrftoken": token}
    status, body, _ = await request(
        application, cookies=cookies, headers={"x-csrftoken": token}, scheme="https"
    )
    assert (status, body) == (403, b"CSRF Failed: Referer checking failed - no Referer.")
    status, body, _ = await request(
        application,
        cookies=cookies,
        headers={"x-csrftoken": token, "referer": "https://evil.example/page"},
        scheme="https",
    )
    assert (status, body) == (
        403,
        b"CSRF Failed: Referer checking failed - https://evil.example/page does not match "
        b"any trusted origins.",
    )
    status, body, _ = await request(
        application,
        cookies=cookies,
        headers={"x-csrftoken": token, "referer": "https://127.0.0.1:8000/graphql/"},
        scheme="https",
    )
    assert (status, json.loads(body)) == (200, CREATED)


async def test_a_bearer_token_request_is_exempt_even_with_the_session_cookie(
    application: Any, users: list[User], session: dict[str, str]
) -> None:
    token = await database_sync_to_async(issue_token)(users[1])
    status, body, _ = await request(
        application,
        cookies=session,
        headers={"origin": "http://evil.example", "authorization": f"Bearer {token}"},
    )
    assert (status, json.loads(body)) == (200, CREATED)
    note = await Note.objects.select_related("owner").aget()
    assert note.owner.username == "test 2"  # the token's user, not the session's


async def test_a_request_without_the_session_cookie_is_not_checked_and_runs_anonymous(
    application: Any, users: list[User]
) -> None:
    status, body, _ = await request(application, headers={"origin": "http://evil.example"})
    assert status == 200
    assert json.loads(body)["errors"][0]["message"] == (
        "Authentication required: log in or send a token."
    )
    assert await notes() == 0


async def test_a_get_query_with_the_session_cookie_is_not_checked(
    application: Any, session: dict[str, str]
) -> None:
    communicator = HttpCommunicator(
        application,
        "GET",
        "/graphql/?query=%7B%20user(pk%3A%201)%20%7B%20responseStatus%20%7D%20%7D",
        headers=[
            (b"host", HOST),
            (b"origin", b"http://evil.example"),
            (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={session['sessionid']}".encode()),
        ],
    )
    response = await communicator.get_response(timeout=5)
    assert (response["status"], json.loads(response["body"])) == (
        200,
        {"data": {"user": {"responseStatus": 200}}},
    )


async def test_graphiql_gives_the_csrf_cookie_and_renews_it(application: Any) -> None:
    status, _, headers = await request(application, "GET", headers={"accept": "text/html"})
    assert status == 200
    cookie = SimpleCookie(headers[b"Set-Cookie"].decode())[django_settings.CSRF_COOKIE_NAME]
    assert len(cookie.value) == 32
    assert (cookie["path"], cookie["samesite"]) == ("/", "Lax")
    _, _, again = await request(
        application, "GET", cookies={"csrftoken": cookie.value}, headers={"accept": "text/html"}
    )
    renewed = SimpleCookie(again[b"Set-Cookie"].decode())[django_settings.CSRF_COOKIE_NAME]
    assert renewed.value == cookie.value
