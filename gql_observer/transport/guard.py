"""Django's own guards of a request, applied to an ASGI scope: ``ALLOWED_HOSTS``,
the Origin check and CSRF.

Django applies them to the requests its views answer; the GraphQL endpoint and
its websocket are not Django views, so this module builds Django's request from
the scope (:class:`django.core.handlers.asgi.ASGIRequest`, without the body) and
asks Django's own code:

- the Host (``HttpRequest.get_host``: ``ALLOWED_HOSTS``, with ``DEBUG``'s
  localhost defaults, ``USE_X_FORWARDED_HOST``, the server's address when there
  is no Host header) of every HTTP request and websocket handshake
  (:class:`AllowedHostsMiddleware`);
- a browser's websocket ``Origin``, as ``CsrfViewMiddleware`` checks the Origin of
  a POST: the request's own scheme, host and port, or an origin of
  ``CSRF_TRUSTED_ORIGINS`` (:func:`origin_allowed`);
- ``CsrfViewMiddleware`` itself for HTTP requests that the session cookie
  authenticates (:func:`csrf_failure`), as Django REST framework does for its
  session authentication.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware, get_token

__all__ = [
    "AllowedHostsMiddleware",
    "csrf_cookie",
    "csrf_failure",
    "django_request",
    "host_allowed",
    "origin_allowed",
]

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Django's own loggers: whoever watches Django's security events sees ours.
host_logger = logging.getLogger("django.security.DisallowedHost")
csrf_logger = logging.getLogger("django.security.csrf")

_HTTP_SCHEME = {"ws": "http", "wss": "https"}
#: Headers of the body: the guards never read it (a CSRF token must come in the header).
_BODY_HEADERS = frozenset({b"content-type", b"content-length"})


def django_request(scope: Scope) -> HttpRequest:
    """Django's request for ``scope`` (HTTP or websocket), without its body:
    method, scheme, path, headers, cookies, client and server as Django would
    see them. A websocket handshake is a ``GET`` over ``http``/``https``."""
    http_scope = dict(scope)
    # Nothing here reads the query string (and Django would fail on one that is
    # not UTF-8).
    http_scope["query_string"] = b""
    if scope.get("type") == "websocket":
        http_scope["method"] = "GET"
        http_scope["scheme"] = _HTTP_SCHEME.get(scope.get("scheme") or "ws", "http")
    http_scope["headers"] = [
        (name, value) for name, value in scope.get("headers", ()) if name not in _BODY_HEADERS
    ]
    http_scope.setdefault("path", "/")
    request = ASGIRequest(http_scope, io.BytesIO())
    session = scope.get("session")
    if session is not None:
        request.session = session
    return request


def host_allowed(scope: Scope, request: HttpRequest | None = None) -> bool:
    """Whether the request's Host is one of ``ALLOWED_HOSTS``, as Django decides
    (refusals are logged as Django logs them)."""
    try:
        (request or django_request(scope)).get_host()
    except DisallowedHost as error:
        host_logger.warning("%s", error)
        return False
    return True


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF middleware, answering the reason of a refusal instead of
    rendering ``CSRF_FAILURE_VIEW`` (as Django REST framework's ``CSRFCheck``)."""

    def _reject(self, request: HttpRequest, reason: str) -> Any:
        return reason


def _no_response(request: HttpRequest) -> HttpResponse:  # pragma: no cover - never called
    raise AssertionError("the CSRF check serves no response")


def origin_allowed(origin: str, scope: Scope) -> bool:
    """Whether a browser page on ``origin`` may open a websocket with ``scope``'s
    handshake: its own origin (the request's scheme, host and port), or one of
    ``CSRF_TRUSTED_ORIGINS`` (wildcards as Django allows them), checked by
    ``CsrfViewMiddleware``'s Origin check."""
    request = django_request(scope)
    request.META["HTTP_ORIGIN"] = origin
    # CsrfViewMiddleware's Origin check (Django >= 4.0), the one its process_view runs.
    verified = _CsrfCheck(_no_response)._origin_verified(request)  # type: ignore[attr-defined]
    return bool(verified)


def csrf_failure(scope: Scope) -> str | None:
    """Why Django's CSRF protection refuses this HTTP request, or ``None``:
    ``CsrfViewMiddleware`` on the request (unsafe methods only; the Origin, or
    for HTTPS without Origin the Referer, and the token of the ``X-CSRFToken``
    header against the ``csrftoken`` cookie). With ``CSRF_USE_SESSIONS`` it
    reads the session: call it in a thread then."""
    request = django_request(scope)
    check = _CsrfCheck(_no_response)
    check.process_request(request)
    reason: str | None = check.process_view(request, _no_response, (), {})  # type: ignore[assignment]
    if reason is not None:
        csrf_logger.warning("Forbidden (%s): %s", reason, request.path)
    return reason


def csrf_cookie(scope: Scope) -> str | None:
    """The ``Set-Cookie`` value that gives (or renews) the client's CSRF token
    cookie, as a Django view using ``get_token`` would answer; ``None`` with
    ``CSRF_USE_SESSIONS`` (the token then lives in the session)."""
    if settings.CSRF_USE_SESSIONS:
        return None
    request = django_request(scope)
    check = _CsrfCheck(_no_response)
    check.process_request(request)
    get_token(request)
    response = check.process_response(request, HttpResponse())
    morsel = response.cookies.get(settings.CSRF_COOKIE_NAME)
    return morsel.OutputString() if morsel is not None else None


class AllowedHostsMiddleware:
    """ASGI middleware: an HTTP request whose Host is not allowed gets ``400``, a
    websocket handshake is refused before it is accepted (ASGI servers answer
    ``403``: an application can only accept or close a handshake)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not host_allowed(scope):
            if scope["type"] == "http":
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    }
                )
                await send({"type": "http.response.body", "body": b"Bad Request (400)"})
            else:
                if (await receive())["type"] == "websocket.connect":
                    await send({"type": "websocket.close"})
            return
        await self.app(scope, receive, send)
