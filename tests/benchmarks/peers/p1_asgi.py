"""P1: djangochannelsrestframework 1.3 ``ObserverModelInstanceMixin``, as its docs show it.

Clients send ``{"action": "subscribe_instance", "pk": 1, "request_id": <their own>}`` to
ws://.../ws/. Logged-in viewers (W1v; W1p and W1x run the same traffic here) connect with their
session cookie to ws://.../ws/auth/, the same consumer with
``permission_classes = (permissions.IsAuthenticated,)`` as DCRF's docs show it: checked on
connect and on every action (not per change), it refuses a client whose cookie was not taken.
Live lists (L1, L2): ``{"action": "subscribe_to_users", "filters": <filter k>, "request_id":
<its own>}`` subscribes with ``model_observer``'s ``groups_for_consumer`` to the group of its
filter; ``groups_for_signal`` yields the groups of the filters the saved row matches (a group
per filter, as DCRF's docs show it, ``peers/list_filters.py``); the handler sends
``{"action", "data", "request_id"}`` for each subscribing request id.
Serve with: ``uvicorn tests.benchmarks.peers.p1_asgi:application``.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.benchmarks.peers.settings")
os.environ.setdefault("BENCH_SYSTEM", "P1")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from tests.benchmarks.peers import queries  # noqa: E402

queries.install()  # the live-lists benchmark's queries per save (bench/queries/)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.urls import path  # noqa: E402
from djangochannelsrestframework import permissions  # noqa: E402
from djangochannelsrestframework.decorators import action  # noqa: E402
from djangochannelsrestframework.generics import GenericAsyncAPIConsumer  # noqa: E402
from djangochannelsrestframework.observer import model_observer  # noqa: E402
from djangochannelsrestframework.observer.generics import (  # noqa: E402
    ObserverModelInstanceMixin,
)
from rest_framework import serializers  # noqa: E402

from tests.benchmarks.peers.list_filters import group_of, key_of, matching_keys  # noqa: E402


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email"]


class UserConsumer(ObserverModelInstanceMixin, GenericAsyncAPIConsumer):
    queryset = User.objects.all()
    serializer_class = UserSerializer

    @model_observer(User, serializer_class=UserSerializer)
    async def users_activity(
        self,
        message: dict[str, Any],
        observer: Any = None,
        subscribing_request_ids: list[Any] | None = None,
        action: str = "",
        **kwargs: Any,
    ) -> None:
        for request_id in subscribing_request_ids or []:
            await self.send_json({"action": action, "data": message, "request_id": request_id})

    @users_activity.groups_for_signal  # type: ignore[no-redef]
    def users_activity(self, instance: User, **kwargs: Any) -> Any:
        for k in matching_keys(instance.username, instance.email):
            yield group_of(k)

    @users_activity.groups_for_consumer  # type: ignore[no-redef]
    def users_activity(self, filters: Any = None, **kwargs: Any) -> Any:
        if filters is not None:
            yield group_of(key_of(filters))

    @action()
    async def subscribe_to_users(
        self, request_id: Any, filters: Any = None, **kwargs: Any
    ) -> tuple[None, int]:
        await self.users_activity.subscribe(request_id=request_id, filters=filters)
        return None, 201


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
