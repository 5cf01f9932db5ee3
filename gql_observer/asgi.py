"""The ASGI application (public entry point): ``application(...)``, the HTTP
consumer and the lifespan handler. Implemented in
:mod:`gql_observer.transport.asgi`."""

from __future__ import annotations

from gql_observer.transport.asgi import Lifespan, ObserverHTTPConsumer, application, load_schema

__all__ = ["Lifespan", "ObserverHTTPConsumer", "application", "load_schema"]
