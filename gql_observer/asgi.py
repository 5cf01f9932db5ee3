"""The ASGI applications (public entry points): ``application(...)``, the whole
application in one call; ``graphql_http_app()`` and ``graphql_websocket_app()``
for your own Channels ``URLRouter``s; the HTTP consumer and the lifespan
handler. Implemented in :mod:`gql_observer.transport.asgi`."""

from __future__ import annotations

from gql_observer.transport.asgi import (
    Lifespan,
    ObserverHTTPConsumer,
    application,
    graphql_http_app,
    graphql_websocket_app,
    load_schema,
)

__all__ = [
    "Lifespan",
    "ObserverHTTPConsumer",
    "application",
    "graphql_http_app",
    "graphql_websocket_app",
    "load_schema",
]
