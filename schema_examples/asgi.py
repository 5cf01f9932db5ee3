"""ASGI entry point: ``uvicorn schema_examples.asgi:application``.

The demo mounts gql_observer beside a consumer of its own (a chat at
``ws/chat/<room>/``) in one of the two ways docs/mounting.md describes, chosen
by ``DEMO_ROUTING``: ``helper`` (the default: ``gql_observer.asgi.application``
forwarding every other path to the project's application) or ``router``
(gql_observer's apps in the project's own ``URLRouter``s)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "schema_examples.settings")
django_application = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from gql_observer.asgi import (  # noqa: E402
    Lifespan,
    graphql_http_app,
    graphql_websocket_app,
)
from gql_observer.asgi import application as gql_application  # noqa: E402
from schema_examples.chat.routing import websocket_urlpatterns  # noqa: E402

#: The project's own websocket routes, behind Channels' Origin check (which
#: refuses clients that send no Origin: GraphQL stays outside it).
chat_application = AllowedHostsOriginValidator(
    AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
)

if os.environ.get("DEMO_ROUTING", "helper") == "router":
    application = ProtocolTypeRouter(
        {
            "http": URLRouter(
                [
                    path("graphql/", graphql_http_app()),
                    re_path(r"", django_application),  # type: ignore[arg-type]
                ]
            ),
            "websocket": URLRouter(
                [
                    path("graphql/", AuthMiddlewareStack(graphql_websocket_app())),
                    re_path(r"", chat_application),
                ]
            ),
            "lifespan": Lifespan(),
        }
    )
else:
    # GraphQL at /graphql/ (HTTP and websocket); every other path, websockets
    # included, goes to the project's application.
    application = gql_application(
        django_application=ProtocolTypeRouter(
            {"http": django_application, "websocket": chat_application}
        )
    )
