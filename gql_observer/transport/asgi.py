"""The ASGI applications: the whole application with safe defaults in one call
(:func:`application`), or the GraphQL endpoint's HTTP and websocket apps for
your own Channels routing (:func:`graphql_http_app`, :func:`graphql_websocket_app`).

HTTP ``/graphql/`` serves queries and mutations (and GraphiQL on GET);
the websocket on the same path speaks graphql-transport-ws and legacy
graphql-ws (:mod:`gql_observer.transport`); every other path, HTTP or
websocket, goes to your application.
Every HTTP request and websocket handshake must name an allowed Host
(``ALLOWED_HOSTS``); a browser's websocket must come from the server's own
origin or one of ``CSRF_TRUSTED_ORIGINS``; HTTP requests that the session
cookie authenticates pass Django's CSRF check (:mod:`gql_observer.guard`).
HTTP bodies are limited to ``MAX_REQUEST_SIZE`` and every document is parsed
within the token limit, once (:mod:`gql_observer.documents`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, cast

from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.exceptions import StopConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from cross_web import HTTPException
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.urls import re_path
from django.utils.module_loading import import_string
from graphql import DocumentNode, OperationType, get_operation_ast
from strawberry.channels import GraphQLHTTPConsumer
from strawberry.schema import BaseSchema
from strawberry.types.execution import ExecutionResult

from gql_observer.core.auth import (
    AuthenticationFailed,
    authenticate,
    credential_from_params,
)
from gql_observer.core.conf import get_settings
from gql_observer.graphql import runtime
from gql_observer.graphql.context import Context, ContextGetter, configured_getter, make_context
from gql_observer.graphql.documents import prepare
from gql_observer.graphql.viewers import set_credential
from gql_observer.transport.graphiql import ASSETS_SEGMENT, CDN, GraphiQLAssetsConsumer
from gql_observer.transport.guard import (
    AllowedHostsMiddleware,
    csrf_cookie,
    csrf_failure,
    origin_allowed,
)
from gql_observer.transport.websocket import TransportWSApp

__all__ = [
    "Lifespan",
    "ObserverHTTPConsumer",
    "application",
    "graphql_http_app",
    "graphql_websocket_app",
    "load_schema",
    "origin_allowed",
]

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
ASGIApp = Any


def _is_subscription(document: DocumentNode, operation_name: str | None) -> bool:
    operation = get_operation_ast(document, operation_name)
    return operation is not None and operation.operation == OperationType.SUBSCRIPTION


class ObserverHTTPConsumer(GraphQLHTTPConsumer):
    """Strawberry's HTTP consumer with the library's guards: a body size limit,
    documents parsed once within the token limit, Django's CSRF check for
    requests the session cookie authenticates; GraphiQL's assets may come from
    your own server."""

    # No channel-layer channel per request either: with channels_redis each
    # request would wait on the layer, and fail when Redis is away.
    channel_layer_alias = "gql_observer.no-channel-per-connection"
    _started = False
    _received = 0

    def __init__(
        self, schema: BaseSchema, *, context_getter: ContextGetter | None = None, **kwargs: Any
    ) -> None:
        super().__init__(schema, **kwargs)
        self.context_getter = context_getter

    async def http_request(self, message: dict[str, Any]) -> None:
        """Called for each part of the request body: beyond ``MAX_REQUEST_SIZE``
        (announced or received) the request gets 413 before the rest is read;
        a longer query string (a ``GET``) gets 414."""
        limit = get_settings().max_request_size
        if not self._started:
            self._started = True
            if len(self.scope.get("query_string", b"")) > limit:
                await self._refuse(414, f"URI Too Long: the limit is {limit} bytes.")
            announced = dict(self.scope.get("headers", ())).get(b"content-length", b"")
            if announced.isdigit() and int(announced) > limit:
                await self._refuse(413, f"Request body too large: the limit is {limit} bytes.")
        self._received += len(message.get("body", b""))
        if self._received > limit:
            await self._refuse(413, f"Request body too large: the limit is {limit} bytes.")
        await super().http_request(message)

    async def _refuse(self, status: int, reason: str) -> None:
        await self.send_response(
            status, reason.encode(), headers=[(b"Content-Type", b"text/plain; charset=utf-8")]
        )
        await self.disconnect()
        raise StopConsumer()

    async def execute_single(
        self,
        request: Any,
        request_adapter: Any,
        sub_response: Any,
        context: Any,
        root_value: Any,
        request_data: Any,
    ) -> Any:
        """Parse the document once, within the token limit (off the event loop
        when it is long); answer a syntax error as strawberry does; refuse a
        subscription sent as a plain POST with a clear 400 (it would otherwise run
        as a query and fail with a confusing null error)."""
        query = request_data.query
        if isinstance(query, str) and query:
            prepared = await prepare(self.schema, query)
            if prepared.error is not None:
                self.schema.process_errors([prepared.error])
                return ExecutionResult(data=None, errors=[prepared.error])
            assert prepared.document is not None
            if _is_subscription(prepared.document, request_data.operation_name):
                raise HTTPException(
                    400,
                    "Subscriptions are served over a websocket (graphql-transport-ws) "
                    "at this URL, not over a plain HTTP request.",
                )
        return await super().execute_single(
            request, request_adapter, sub_response, context, root_value, request_data
        )

    async def get_context(self, request: Any, response: Any) -> Any:
        """The context of one request (a :class:`~gql_observer.graphql.context.Context`,
        shaped by the context hook): ``user`` from an ``Authorization: Bearer``
        token (a bad token answers 401), or from the session cookie, in which case
        the request must pass Django's CSRF check (403 otherwise)."""
        scope = self.scope
        header = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin1")
        credential = credential_from_params({"Authorization": header}) if header else None
        if credential is not None:
            try:
                result = await authenticate(credential, scope)
            except AuthenticationFailed as error:
                raise HTTPException(401, str(error)) from None
            set_credential(scope, result)
        elif settings.SESSION_COOKIE_NAME in scope.get("cookies", {}):
            if settings.CSRF_USE_SESSIONS:  # the token is in the session: the database
                reason = await sync_to_async(csrf_failure)(scope)
            else:
                reason = csrf_failure(scope)
            if reason is not None:
                raise HTTPException(403, f"CSRF Failed: {reason}")
        defaults = {
            "request": request,
            "response": response,
            "ws": None,
            "user": scope.get("user"),
            "connection_params": None,
        }
        try:
            made = make_context(defaults, self.context_getter or configured_getter())
            return made if isinstance(made, Context) else await cast(Awaitable[Context], made)
        except Exception:
            logger.exception("The context getter failed")
            raise HTTPException(500, "Internal Server Error") from None

    async def render_graphql_ide(self, request: Any) -> Any:
        """GraphiQL, with the CSRF cookie it sends back as ``X-CSRFToken``."""
        response = await super().render_graphql_ide(request)
        options = get_settings()
        base = options.graphiql_assets_url
        if options.graphiql_assets_dir:
            # Served beside the page, from its own origin (see application()).
            base = f"{self.scope['path'].rstrip('/')}/{ASSETS_SEGMENT}"
        if base:
            response.content = response.content.replace(CDN.encode(), base.rstrip("/").encode())
        cookie = csrf_cookie(self.scope)
        if cookie is not None:
            response.headers[b"Set-Cookie"] = cookie.encode("latin1")
        return response


class Lifespan:
    """ASGI lifespan: on shutdown, complete every subscription and leave every group."""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                current = runtime.running()
                if current is not None:
                    await current.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def load_schema() -> BaseSchema:
    """The schema named by ``GQL_OBSERVER["SCHEMA"]``."""
    path = get_settings().schema
    if not path:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            'Pass a schema to application(schema) or set GQL_OBSERVER = {"SCHEMA": '
            '"myproject.schema.schema"} in your settings.'
        )
    schema: BaseSchema = import_string(path)
    return schema


def _graphiql() -> bool:
    graphiql = get_settings().graphiql
    return bool(settings.DEBUG) if graphiql is None else graphiql


def _http(schema: BaseSchema, context_getter: ContextGetter | None) -> ASGIApp:
    return AuthMiddlewareStack(
        ObserverHTTPConsumer.as_asgi(
            schema=schema,
            graphql_ide="graphiql" if _graphiql() else None,
            context_getter=context_getter,
        )
    )


def graphql_http_app(
    schema: BaseSchema | None = None, *, context_getter: ContextGetter | None = None
) -> ASGIApp:
    """GraphQL over HTTP (queries, mutations, GraphiQL on GET) for a route of
    your own HTTP ``URLRouter``: ``path("graphql/", graphql_http_app())``. The
    Host must be one of ``ALLOWED_HOSTS`` (400), a request the session cookie
    authenticates must pass Django's CSRF check; under your own
    ``AuthMiddlewareStack`` or without one. ``context_getter``: see
    :mod:`gql_observer.graphql.context` (``None``: ``CONTEXT_GETTER``)."""
    return AllowedHostsMiddleware(_http(schema or load_schema(), context_getter))


def graphql_websocket_app(
    schema: BaseSchema | None = None, *, context_getter: ContextGetter | None = None
) -> ASGIApp:
    """The GraphQL websocket (graphql-transport-ws and legacy graphql-ws) for a
    route of your own websocket ``URLRouter``: ``path("graphql/",
    graphql_websocket_app())``. The Host must be one of ``ALLOWED_HOSTS`` and a
    browser's Origin the server's own or one of ``CSRF_TRUSTED_ORIGINS``
    (refused: 403); clients that send no Origin are served. Under your own
    ``AuthMiddlewareStack`` or without one (the session cookie is read either
    way)."""
    app = TransportWSApp(
        schema or load_schema(),
        path=None,
        origin_allowed=origin_allowed,
        context_getter=context_getter,
    )
    return AllowedHostsMiddleware(app)


def _serves_websockets(app: Any) -> bool:
    """Whether ``app`` may be handed a websocket: not Django's own handler (HTTP
    only), nor a ``ProtocolTypeRouter`` without a ``websocket`` entry."""
    if isinstance(app, ASGIHandler):
        return False
    if isinstance(app, ProtocolTypeRouter):
        return "websocket" in app.application_mapping
    return True


def application(
    schema: BaseSchema | None = None,
    *,
    path: str = "graphql/",
    django_application: ASGIApp | None = None,
    context_getter: ContextGetter | None = None,
) -> ASGIApp:
    """Build the ASGI application: GraphQL over HTTP and websocket at ``path``,
    ``django_application`` for every other path (HTTP, and websockets when it
    serves them: a ``ProtocolTypeRouter`` with your own consumers), lifespan for
    a clean shutdown. Every HTTP request and websocket handshake must name a
    Host of ``ALLOWED_HOSTS`` (400; a websocket is refused, which servers
    answer with 403). ``context_getter``: see
    :mod:`gql_observer.graphql.context` (``None``: ``CONTEXT_GETTER``).

    Call it in your ``asgi.py`` after ``django.setup()`` (or after
    ``get_asgi_application()``)::

        django_asgi = get_asgi_application()
        from gql_observer.asgi import application as gql_application
        application = gql_application(django_application=ProtocolTypeRouter({
            "http": django_asgi,
            "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
        }))
    """
    if schema is None:
        schema = load_schema()
    if django_application is None:
        from django.core.asgi import get_asgi_application

        django_application = get_asgi_application()
    pattern = rf"^{re.escape(path.strip('/'))}/?$"
    fallback: Any = django_application if _serves_websockets(django_application) else None
    routes = [re_path(pattern, _http(schema, context_getter))]
    assets = get_settings().graphiql_assets_dir
    if _graphiql() and assets:
        assets_pattern = rf"^{re.escape(path.strip('/'))}/{ASSETS_SEGMENT}/(?P<asset>.+)$"
        routes.append(
            re_path(assets_pattern, GraphiQLAssetsConsumer.as_asgi(directory=Path(assets)))
        )
    routes.append(re_path(r"", django_application))  # type: ignore[arg-type]
    return ProtocolTypeRouter(
        {
            "http": AllowedHostsMiddleware(URLRouter(routes)),
            "websocket": AllowedHostsMiddleware(
                TransportWSApp(
                    schema,
                    path=pattern,
                    origin_allowed=origin_allowed,
                    fallback=fallback,
                    context_getter=context_getter,
                )
            ),
            "lifespan": Lifespan(),
        }
    )
