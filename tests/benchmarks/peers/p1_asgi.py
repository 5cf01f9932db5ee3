"""P1: djangochannelsrestframework 1.3 ``ObserverModelInstanceMixin``, as its docs show it.

Clients send ``{"action": "subscribe_instance", "pk": 1, "request_id": <their own>}`` to
ws://.../ws/. Logged-in viewers (W1v; W1p and W1x run the same traffic here) connect with their
session cookie to ws://.../ws/auth/, the same consumer with
``permission_classes = (permissions.IsAuthenticated,)`` as DCRF's docs show it: checked on
connect and on every action (not per change), it refuses a client whose cookie was not taken.
Serve with: ``uvicorn tests.benchmarks.peers.p1_asgi:application``.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.benchmarks.peers.settings")
os.environ.setdefault("BENCH_SYSTEM", "P1")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.urls import path  # noqa: E402
from djangochannelsrestframework import permissions  # noqa: E402
from djangochannelsrestframework.generics import GenericAsyncAPIConsumer  # noqa: E402
from djangochannelsrestframework.observer.generics import (  # noqa: E402
    ObserverModelInstanceMixin,
)
from rest_framework import serializers  # noqa: E402


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email"]


class UserConsumer(ObserverModelInstanceMixin, GenericAsyncAPIConsumer):
    queryset = User.objects.all()
    serializer_class = UserSerializer


class SignedInUserConsumer(UserConsumer):
    permission_classes = (permissions.IsAuthenticated,)


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(
            URLRouter(
                [
                    path("ws/", UserConsumer.as_asgi()),
                    path("ws/auth/", SignedInUserConsumer.as_asgi()),
                ]
            )
        ),
    }
)
