"""The GraphQL websocket's ASGI application: the handshake's checks (path,
Origin), the subprotocol (the client's first choice of graphql-transport-ws and
legacy graphql-ws), the session's user, then the connection."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from django.db import InterfaceError, OperationalError

from gql_observer.core.conf import get_settings
from gql_observer.graphql.context import ContextGetter, configured_getter
from gql_observer.transport.codes import CloseCode
from gql_observer.transport.connection import Connection, Receive, Scope, Send
from gql_observer.transport.legacy_ws import LEGACY_SUBPROTOCOL, LegacyWSConnection
from gql_observer.transport.session import session_user
from gql_observer.transport.transport_ws import SUBPROTOCOL, TransportWSConnection

if TYPE_CHECKING:
    from strawberry.schema import BaseSchema

__all__ = [
    "NOT_ACCEPTABLE",
    "PROTOCOLS",
    "TransportWSApp",
    "choose_subprotocol",
    "open_connection",
]

logger = logging.getLogger(__name__)

ASGIApp = Callable[[Scope, Receive, Send], Any]

#: The close reason of a handshake offering neither subprotocol (code 4406).
NOT_ACCEPTABLE: Final = "Subprotocol not acceptable"
#: The connection class of each subprotocol served.
PROTOCOLS: Final[dict[str, type[Connection]]] = {
    SUBPROTOCOL: TransportWSConnection,
    LEGACY_SUBPROTOCOL: LegacyWSConnection,
}


def choose_subprotocol(offered: Iterable[str]) -> str | None:
    """The client's first choice among graphql-transport-ws and legacy graphql-ws."""
    return next((p for p in offered if p in PROTOCOLS), None)


async def open_connection(
    schema: BaseSchema,
    scope: Scope,
    send: Send,
    subprotocol: str,
    context_getter: ContextGetter | None = None,
) -> Connection | None:
    """The :class:`Connection` of one websocket (``subprotocol`` chosen by
    :func:`choose_subprotocol`), its user read from the session; the caller then
    awaits its :meth:`~Connection.serve`. None if the session could not be read:
    the websocket is then accepted and closed with 1013 (Try Again Later)."""
    try:
        await session_user(scope)
    except (OperationalError, InterfaceError) as error:
        # The session could not be read: not the client's fault, it may retry.
        logger.warning("Could not read the session of a websocket: %s", error)
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        await send(
            {
                "type": "websocket.close",
                "code": CloseCode.TRY_AGAIN_LATER,
                "reason": "Try again later",
            }
        )
        return None
    return PROTOCOLS[subprotocol](schema, scope, send, get_settings(), context_getter)


class TransportWSApp:
    """The ASGI application of the GraphQL websocket at ``path`` (a regular
    expression matched against the path without its leading ``/``; ``None``:
    every path routed to it, as in a ``URLRouter``): the client's first choice
    of graphql-transport-ws and legacy graphql-ws is served; a handshake
    offering neither is accepted and closed with 4406. A handshake for another
    path goes to ``fallback`` (your own websocket application), or is refused
    (403) without one.

    ``context_getter`` shapes each operation's ``info.context``
    (:mod:`gql_observer.graphql.context`); ``None``: ``CONTEXT_GETTER``.

    A browser's handshake must come from an Origin that ``origin_allowed``
    accepts for it (see :func:`gql_observer.transport.guard.origin_allowed`: the server's
    own origin or one of ``CSRF_TRUSTED_ORIGINS``); clients that send no Origin
    (not browsers, which no other site can drive) are let through.
    """

    def __init__(
        self,
        schema: BaseSchema,
        *,
        path: str | None,
        origin_allowed: Callable[[str, Scope], bool],
        fallback: ASGIApp | None = None,
        context_getter: ContextGetter | None = None,
    ) -> None:
        self.schema = schema
        self.path = None if path is None else re.compile(path)
        self.origin_allowed = origin_allowed
        self.fallback = fallback
        self.context_getter = context_getter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.path is not None and not self.path.match(scope.get("path", "").lstrip("/")):
            if self.fallback is not None:
                await self.fallback(scope, receive, send)
            elif (await receive())["type"] == "websocket.connect":
                await send({"type": "websocket.close"})  # refused handshake: 403
            return
        if (await receive())["type"] != "websocket.connect":
            return
        origin = next((v for k, v in scope.get("headers", ()) if k == b"origin"), None)
        if origin is not None and not self.origin_allowed(origin.decode("latin1"), scope):
            await send({"type": "websocket.close"})
            return
        chosen = choose_subprotocol(scope.get("subprotocols", ()))
        if chosen is None:
            await send({"type": "websocket.accept"})
            await send(
                {
                    "type": "websocket.close",
                    "code": CloseCode.SUBPROTOCOL_NOT_ACCEPTABLE,
                    "reason": NOT_ACCEPTABLE,
                }
            )
            return
        # Served from this frame, not from one more: an idle connection's coroutine
        # frames are what it holds besides its objects.
        getter = self.context_getter or configured_getter()
        connection = await open_connection(self.schema, scope, send, chosen, getter)
        if connection is not None:
            await connection.serve(receive)
