"""Who a connection is: the session cookie's user, read once at the handshake (as
Channels' ``AuthMiddlewareStack`` reads it), or a token in ``connection_init``'s
payload (:func:`gql_observer.core.auth.authenticate`)."""

from __future__ import annotations

import logging
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.db import InterfaceError, OperationalError
from django.http.cookie import parse_cookie

from gql_observer.core.auth import AuthenticationFailed, authenticate, credential_from_params
from gql_observer.core.db import unit_of_work
from gql_observer.graphql.viewers import set_credential

__all__ = ["TryLater", "authenticate_init", "session_user"]

logger = logging.getLogger(__name__)

Scope = dict[str, Any]


class TryLater(Exception):
    """The credential could not be checked (the database is away); the client may retry."""


async def authenticate_init(scope: Scope, payload: dict[str, Any] | None) -> bool:
    """A token in a ``connection_init`` payload authenticates the connection whose
    scope this is (otherwise the session's user stays); False if it is bad,
    :class:`TryLater` if it could not be checked."""
    credential = credential_from_params(payload)
    if credential is None:
        return True
    try:
        result = await authenticate(credential, scope)
    except AuthenticationFailed as error:
        logger.info("Refused a connection_init credential: %s", error)
        return False
    except (OperationalError, InterfaceError) as error:
        # Not the client's fault: it may retry (graphql-ws does, after 1013).
        logger.warning("Could not check a connection_init credential: %s", error)
        raise TryLater from error
    set_credential(scope, result)
    return True


async def session_user(scope: Scope) -> None:
    """Set ``scope["user"]`` (and ``scope["session"]``) from the session cookie,
    as Channels' ``AuthMiddlewareStack`` does, once, at the handshake."""
    cookie = b""
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            cookie = value
            break
    cookies = parse_cookie(cookie.decode("latin1")) if cookie else {}
    key = cookies.get(settings.SESSION_COOKIE_NAME)
    if not key:
        scope.setdefault("user", AnonymousUser())
        return
    scope["session"] = session = import_module(settings.SESSION_ENGINE).SessionStore(
        session_key=key
    )
    scope["user"] = await _user_of_session(session)


def _user_of_session_sync(session: Any) -> Any:
    # Django's own lookup (backend, session hash; a stale session is flushed), as
    # Channels' get_user does, but as a unit of work: a dead connection is replaced.
    return get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]


_user_of_session = sync_to_async(unit_of_work(_user_of_session_sync), thread_sensitive=True)
