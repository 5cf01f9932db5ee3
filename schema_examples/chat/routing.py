"""The project's own websocket routes (GraphQL's are gql_observer's)."""

from __future__ import annotations

from django.urls import path

from .consumers import ChatConsumer

__all__ = ["websocket_urlpatterns"]

websocket_urlpatterns = [path("ws/chat/<str:room>/", ChatConsumer.as_asgi())]
