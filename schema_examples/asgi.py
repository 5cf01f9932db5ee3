"""ASGI entry point: ``uvicorn schema_examples.asgi:application``."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "schema_examples.settings")
django_application = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from gql_observer.asgi import application as gql_application  # noqa: E402
from schema_examples.chat.routing import websocket_urlpatterns  # noqa: E402

#: The project's own application: Django for HTTP, its own consumers for websockets.
project_application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)

# GraphQL at /graphql/ (HTTP and websocket); every other path, websockets
# included, goes to the project's application.
application = gql_application(django_application=project_application)
