"""The whole ASGI application with safe defaults, in one call.

HTTP ``/graphql/`` serves queries and mutations (and GraphiQL on GET);
the websocket on the same path speaks graphql-transport-ws and legacy
graphql-ws; everything else goes to Django. Websockets get Channels'
session authentication and an Origin check against ``ALLOWED_HOSTS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
from typing import Any, cast
from urllib.parse import urlparse

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import OriginValidator
from cross_web import HTTPException
from django.conf import settings
from django.urls import re_path
from django.utils.module_loading import import_string
from graphql import GraphQLError, OperationType, get_operation_ast, parse
from strawberry.channels import GraphQLHTTPConsumer, GraphQLWSConsumer
from strawberry.exceptions import ConnectionRejectionError
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from .auth import (
    AuthenticationFailed,
    authenticate,
    credential_from_params,
    websocket_auth_stack,
)
from .hub import current_hub
from .settings import get_settings
from .transport import TransportWSApp
from .visibility import CHECK_KEY, EXPIRES_KEY

__all__ = [
    "HostOriginValidator",
    "Lifespan",
    "ObserverHTTPConsumer",
    "ObserverLegacyWSHandler",
    "ObserverWSConsumer",
    "application",
    "load_schema",
    "origin_allowed",
]

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
ASGIApp = Any
_UNPKG = "https://unpkg.com"


class ObserverLegacyWSHandler(BaseGraphQLWSHandler[Any, Any]):
    """Legacy graphql-ws, with its messages validated at the boundary: it ignores
    what is not a message, as it ignores unknown types, and answers a malformed
    ``start`` with an ``error`` (strawberry's handler raised on both)."""

    async def handle_message(self, message: Any) -> None:
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return
        if message["type"] in {"start", "stop"}:
            operation_id = message.get("id")
            if not isinstance(operation_id, str):
                return
            payload = message.get("payload")
            if message["type"] == "start" and (
                not isinstance(payload, dict) or not isinstance(payload.get("query"), str)
            ):
                await self.send_message(
                    {
                        "type": "error",
                        "id": operation_id,
                        "payload": {"message": "Invalid start message."},
                    }
                )
                return
        await super().handle_message(cast(Any, message))


class ObserverWSConsumer(GraphQLWSConsumer):
    """Strawberry's websocket consumer, configured from ``GQL_OBSERVER``, for
    legacy graphql-ws clients (graphql-transport-ws connections are served by
    :mod:`gql_observer.transport`).

    It has no channel-layer channel of its own: changes reach it through the
    process's hub, so a connection costs no layer channel and no receive task.
    (strawberry's ``listen_to_channel`` therefore does not work here.)
    """

    channel_layer_alias = "gql_observer.no-channel-per-connection"
    graphql_ws_handler_class = ObserverLegacyWSHandler

    def __init__(self, schema: BaseSchema, **kwargs: Any) -> None:
        options = get_settings()
        kwargs.setdefault(
            "connection_init_wait_timeout",
            dt.timedelta(seconds=options["CONNECTION_INIT_TIMEOUT"]),
        )
        kwargs.setdefault(
            "max_subscriptions_per_connection", options["MAX_OPERATIONS_PER_CONNECTION"]
        )
        # graphql-transport-ws is served by gql_observer.transport.
        kwargs.setdefault("subscription_protocols", (GRAPHQL_WS_PROTOCOL,))
        self.max_message_size = options["MAX_MESSAGE_SIZE"]
        self.send_timeout = options["SEND_TIMEOUT"]
        self._gave_up = False
        self._closer: asyncio.Future[None] | None = None
        super().__init__(schema, **kwargs)

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        """Called for each message to the client. One the client does not take
        within ``SEND_TIMEOUT`` ends the connection's operations at once (their
        subscriptions leave the hub) and closes it with 1013; later sends are
        dropped."""
        if self._gave_up:
            return
        if not self.send_timeout:
            await super().send(text_data, bytes_data, close)
            return
        try:
            await asyncio.wait_for(super().send(text_data, bytes_data, close), self.send_timeout)
        except TimeoutError:
            self._give_up()

    def _give_up(self) -> None:
        self._gave_up = True
        logger.warning(
            "A websocket client took more than %.1fs to take a message; closing it",
            self.send_timeout,
        )
        # As if the client had gone: strawberry cancels every operation.
        self.message_queue.put_nowait({"message": None, "disconnected": True})
        # The close frame waits behind what the client did not read (ASGI
        # servers wait for a writable socket); it must not hold anything.
        self._closer = asyncio.ensure_future(self._close_slow())

    async def _close_slow(self) -> None:
        # The server may have closed the socket meanwhile (shutdown, the peer
        # went away): then there is nothing left to close.
        with contextlib.suppress(Exception):
            await self.close(code=1013, reason="Client too slow")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called for each client frame: oversized ones close the socket (1009)."""
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > self.max_message_size:
            await self.close(code=1009, reason="Message too big")
            return
        await super().receive(text_data, bytes_data)

    async def get_context(self, request: Any, response: Any) -> Any:
        context: Any = await super().get_context(request, response)  # type: ignore[func-returns-value]
        context["user"] = self.scope.get("user")
        return context

    async def on_ws_connect(self, context: Any) -> Any:
        """Called on ``connection_init``: a token in its payload authenticates the
        connection (otherwise the session's user stays); a bad one closes 4403."""
        credential = credential_from_params(context.get("connection_params"))
        if credential is not None:
            try:
                result = await authenticate(credential, self.scope)
            except AuthenticationFailed as error:
                logger.info("Refused a connection_init credential: %s", error)
                raise ConnectionRejectionError from None
            self.scope["user"] = context["user"] = result.user
            self.scope[EXPIRES_KEY] = result.expires
            self.scope[CHECK_KEY] = result.still_valid
        return await super().on_ws_connect(context)

    def is_websocket_origin_allowed(self, request: Any, origin: str) -> bool:
        """Called for a cross-origin handshake: allowed when the Origin's host is
        in ``ALLOWED_HOSTS`` (the same rule as :class:`HostOriginValidator`)."""
        return origin_allowed(origin)


def _is_subscription(query: str | None, operation_name: str | None) -> bool:
    if not query:
        return False
    try:
        document = parse(query)
    except GraphQLError:
        return False  # strawberry answers the syntax error itself
    operation = get_operation_ast(document, operation_name)
    return operation is not None and operation.operation == OperationType.SUBSCRIPTION


class ObserverHTTPConsumer(GraphQLHTTPConsumer):
    """Strawberry's HTTP consumer; GraphiQL's assets may come from your own server."""

    # No channel-layer channel per request either: with channels_redis each
    # request would wait on the layer, and fail when Redis is away.
    channel_layer_alias = "gql_observer.no-channel-per-connection"

    async def execute_single(
        self,
        request: Any,
        request_adapter: Any,
        sub_response: Any,
        context: Any,
        root_value: Any,
        request_data: Any,
    ) -> Any:
        """Refuse a subscription sent as a plain POST with a clear 400 (it would
        otherwise run as a query and fail with a confusing null error)."""
        if _is_subscription(request_data.query, request_data.operation_name):
            raise HTTPException(
                400,
                "Subscriptions are served over a websocket (graphql-transport-ws) "
                "at this URL, not over a plain HTTP request.",
            )
        return await super().execute_single(
            request, request_adapter, sub_response, context, root_value, request_data
        )

    async def get_context(self, request: Any, response: Any) -> Any:
        """The context of one request: ``user`` from the session, or from an
        ``Authorization: Bearer`` token (a bad token answers 401)."""
        context: Any = await super().get_context(request, response)  # type: ignore[func-returns-value]
        scope = self.scope
        header = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin1")
        credential = credential_from_params({"Authorization": header}) if header else None
        if credential is not None:
            try:
                result = await authenticate(credential, scope)
            except AuthenticationFailed as error:
                raise HTTPException(401, str(error)) from None
            scope["user"] = result.user
            scope[EXPIRES_KEY] = result.expires
            scope[CHECK_KEY] = result.still_valid
        context["user"] = scope.get("user")
        return context

    async def render_graphql_ide(self, request: Any) -> Any:
        response = await super().render_graphql_ide(request)
        base = get_settings()["GRAPHIQL_ASSETS_URL"]
        if base:
            response.content = response.content.replace(_UNPKG.encode(), base.rstrip("/").encode())
        return response


def _allowed_hosts() -> list[str]:
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    return allowed


def origin_allowed(origin: str) -> bool:
    """Whether a browser page on ``origin`` may open a websocket here."""
    try:
        parsed = urlparse(origin)
    except ValueError:
        return False
    return bool(OriginValidator(None, _allowed_hosts()).validate_origin(parsed))


class HostOriginValidator(OriginValidator):  # type: ignore[misc]
    """Refuse a websocket handshake whose Origin is not in ``ALLOWED_HOSTS``.

    Browsers always send Origin, so cross-site websocket hijacking is refused.
    A handshake without Origin comes from a non-browser client (Node ``ws``,
    Python ``websockets``) that no other site can drive, and is let through;
    Channels' ``AllowedHostsOriginValidator`` refuses those.
    """

    def __init__(self, application: ASGIApp) -> None:
        super().__init__(application, _allowed_hosts())

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        if not any(name == b"origin" for name, _ in scope.get("headers", [])):
            return await self.application(scope, receive, send)
        return await super().__call__(scope, receive, send)


class Lifespan:
    """ASGI lifespan: on shutdown, complete every subscription and leave every group."""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                hub = current_hub()
                if hub is not None:
                    await hub.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def load_schema() -> BaseSchema:
    """The schema named by ``GQL_OBSERVER["SCHEMA"]``."""
    path = get_settings()["SCHEMA"]
    if not path:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            'Pass a schema to application(schema) or set GQL_OBSERVER = {"SCHEMA": '
            '"myproject.schema.schema"} in your settings.'
        )
    schema: BaseSchema = import_string(path)
    return schema


def application(
    schema: BaseSchema | None = None,
    *,
    path: str = "graphql/",
    django_application: ASGIApp | None = None,
) -> ASGIApp:
    """Build the ASGI application: GraphQL over HTTP and websocket at ``path``,
    Django for every other URL, lifespan for a clean shutdown.

    Call it in your ``asgi.py`` after ``django.setup()`` (or after
    ``get_asgi_application()``)::

        django_asgi = get_asgi_application()
        from gql_observer.asgi import application as gql_application
        application = gql_application(django_application=django_asgi)
    """
    if schema is None:
        schema = load_schema()
    if django_application is None:
        from django.core.asgi import get_asgi_application

        django_application = get_asgi_application()
    graphiql = get_settings()["GRAPHIQL"]
    if graphiql is None:
        graphiql = bool(settings.DEBUG)
    pattern = rf"^{re.escape(path.strip('/'))}/?$"
    http = ObserverHTTPConsumer.as_asgi(schema=schema, graphql_ide="graphiql" if graphiql else None)
    legacy = ObserverWSConsumer.as_asgi(schema=schema)
    return ProtocolTypeRouter(
        {
            "http": URLRouter(
                [
                    re_path(pattern, AuthMiddlewareStack(http)),
                    re_path(r"", django_application),  # type: ignore[arg-type]
                ]
            ),
            # graphql-transport-ws: the lean connection (gql_observer.transport);
            # legacy graphql-ws, other paths and refusals: strawberry's consumer.
            "websocket": TransportWSApp(
                schema,
                path=pattern,
                fallback=HostOriginValidator(
                    websocket_auth_stack(URLRouter([re_path(pattern, legacy)]))
                ),
                origin_allowed=origin_allowed,
            ),
            "lifespan": Lifespan(),
        }
    )
