"""A project's own Channels routing with gql_observer's apps in it, the way a
Channels user writes one: ``path("graphql/", ...)`` in their HTTP and websocket
``URLRouter``s beside their own chat consumer (the demo's), with or without
``AuthMiddlewareStack`` and ``AllowedHostsOriginValidator``."""

from __future__ import annotations

import functools
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path, re_path

from gql_observer.asgi import graphql_http_app, graphql_websocket_app
from schema_examples.chat.consumers import ChatConsumer
from schema_examples.chat.routing import websocket_urlpatterns

__all__ = ["routed_application", "validated_application"]


@functools.cache
def routed_application() -> Any:
    """GraphQL in the project's URLRouters, everything under its AuthMiddlewareStack;
    the chat consumer behind AllowedHostsOriginValidator (GraphQL outside it: the
    validator refuses clients that send no Origin)."""
    from schema_examples.asgi import django_application

    return ProtocolTypeRouter(
        {
            "http": URLRouter(
                [
                    path("graphql/", graphql_http_app()),
                    re_path(r"", django_application),  # type: ignore[arg-type]
                ]
            ),
            "websocket": AuthMiddlewareStack(
                URLRouter(
                    [
                        path("graphql/", graphql_websocket_app()),
                        path(
                            "ws/chat/<str:room>/",
                            AllowedHostsOriginValidator(ChatConsumer.as_asgi()),
                        ),
                    ]
                )
            ),
        }
    )


@functools.cache
def validated_application() -> Any:
    """Every websocket route, GraphQL's too, behind AllowedHostsOriginValidator:
    the layout whose GraphQL route refuses clients without an Origin."""
    return AllowedHostsOriginValidator(
        AuthMiddlewareStack(
            URLRouter([path("graphql/", graphql_websocket_app()), *websocket_urlpatterns])
        )
    )
