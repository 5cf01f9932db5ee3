"""P2: strawberry's channels recipe.

``GraphQLWSConsumer`` at ws://.../graphql/ (graphql-transport-ws); the subscription resolver
joins group ``user.<pk>`` through ``listen_to_channel`` and yields what each message carries;
a ``post_save`` receiver does ``async_to_sync(get_channel_layer().group_send)(...)`` with the
saved fields in the message (the recipe's way: no database read per subscriber). The resolver
first yields a ``subscribe_instance``/201 envelope once the group is joined, so clients (and the
benchmark) know when the subscription is live, as with DCRF and gql_observer.

For the logged-in viewers' scenarios (session cookie, read by ``AuthMiddlewareStack``), two
more fields do per subscriber what gql_observer's ``userP`` and ``userX`` do:
``userP`` (W1p) asks a permission function ``allow_all(user, message)`` for every message
before yielding it (and refuses at once, as P0 does, a viewer it does not allow); ``userX``
(W1x) yields a type whose ``email`` has ``permission_classes=[SignedIn]``, which strawberry
checks on every result.
Live lists (L1, L2): ``users(filters: UserFilter, requestId: JSON!)`` joins the group of its
filter (a group per filter, ``peers/list_filters.py``) and yields a ``subscribe_list``/201
envelope, then one ``create`` envelope (with ``pk``) per message; the ``post_save`` receiver
also sends a ``user.created`` message with the saved fields to the group of every filter the
created row matches. strawberry runs the subscriber's operation on each yield.
Serve with: ``uvicorn tests.benchmarks.peers.p2_asgi:application``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.benchmarks.peers.settings")
os.environ.setdefault("BENCH_SYSTEM", "P2")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from tests.benchmarks.peers import queries  # noqa: E402

queries.install()  # the live-lists benchmark's queries per save (bench/queries/)

import strawberry  # noqa: E402
from asgiref.sync import async_to_sync  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.db.models.signals import post_save  # noqa: E402
from django.urls import re_path  # noqa: E402
from strawberry.channels import GraphQLWSConsumer  # noqa: E402
from strawberry.permission import BasePermission  # noqa: E402
from strawberry.scalars import JSON  # noqa: E402
from strawberry.types import Info  # noqa: E402

from tests.benchmarks.peers.list_filters import group_of, key_of, matching_keys  # noqa: E402


@strawberry.type
class UserType:
    id: strawberry.ID
    username: str
    email: str


@strawberry.type
class UserEnvelope:
    action: str
    errors: list[str]
    response_status: int
    request_id: JSON
    data: UserType | None


@strawberry.type
class UserListEnvelope:
    action: str
    errors: list[str]
    response_status: int
    request_id: JSON
    pk: strawberry.ID | None
    data: UserType | None


@strawberry.input
class StrLookup:
    exact: str | None = strawberry.UNSET
    starts_with: str | None = strawberry.UNSET


@strawberry.input
class UserFilter:
    """The part of gql_observer's demo ``UserFilter`` the benchmark's filters use."""

    username: StrLookup | None = strawberry.UNSET
    email: StrLookup | None = strawberry.UNSET
    OR: UserFilter | None = strawberry.UNSET


def _filter_value(value: Any) -> Any:
    """An input object as the JSON the client sent (camelCase keys, no unset fields)."""
    if value is None or value is strawberry.UNSET:
        return value
    if isinstance(value, str):
        return value
    out = {}
    for name, item in vars(value).items():
        if item is not strawberry.UNSET:
            key = "startsWith" if name == "starts_with" else name
            out[key] = _filter_value(item)
    return out


def allow_all(user: Any, message: dict[str, Any]) -> bool:
    """W1p's permission function: every signed-in viewer may see every user."""
    return bool(user is not None and user.is_authenticated)


class SignedIn(BasePermission):
    message = "User is not authenticated"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        user = info.context["ws"].scope.get("user")
        return bool(user is not None and user.is_authenticated)


@strawberry.type
class UserXType:
    id: strawberry.ID
    username: str
    email: str = strawberry.field(permission_classes=[SignedIn])


@strawberry.type
class UserXEnvelope:
    action: str
    errors: list[str]
    response_status: int
    request_id: JSON
    data: UserXType | None


def _envelope(cls: Any, action: str, status: int, request_id: Any, data: Any = None) -> Any:
    errors = [] if status < 400 else ["You may not see this user."]
    return cls(
        action=action, errors=errors, response_status=status, request_id=request_id, data=data
    )


@strawberry.type
class Query:
    @strawberry.field
    def ping(self) -> str:
        return "pong"


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def user(
        self, info: Info, pk: strawberry.ID, request_id: JSON
    ) -> AsyncGenerator[UserEnvelope, None]:
        ws = info.context["ws"]
        async with ws.listen_to_channel("user.updated", groups=[f"user.{pk}"]) as cm:
            yield UserEnvelope(
                action="subscribe_instance",
                errors=[],
                response_status=201,
                request_id=request_id,
                data=None,
            )
            async for msg in cm:
                yield UserEnvelope(
                    action="update",
                    errors=[],
                    response_status=200,
                    request_id=request_id,
                    data=UserType(id=msg["pk"], username=msg["username"], email=msg["email"]),
                )

    @strawberry.subscription
    async def users(
        self, info: Info, request_id: JSON, filters: UserFilter | None = None
    ) -> AsyncGenerator[UserListEnvelope, None]:
        """Live lists: the group of its filter, one ``create`` per message."""
        ws = info.context["ws"]
        group = group_of(key_of(_filter_value(filters)))
        async with ws.listen_to_channel("user.created", groups=[group]) as cm:
            yield UserListEnvelope(
                action="subscribe_list",
                errors=[],
                response_status=201,
                request_id=request_id,
                pk=None,
                data=None,
            )
            async for msg in cm:
                yield UserListEnvelope(
                    action="create",
                    errors=[],
                    response_status=201,
                    request_id=request_id,
                    pk=msg["pk"],
                    data=UserType(id=msg["pk"], username=msg["username"], email=msg["email"]),
                )

    @strawberry.subscription
    async def user_p(
        self, info: Info, pk: strawberry.ID, request_id: JSON
    ) -> AsyncGenerator[UserEnvelope, None]:
        """W1p: ``user`` with ``allow_all`` asked before every message."""
        ws = info.context["ws"]
        user = ws.scope.get("user")
        if not allow_all(user, {"pk": str(pk)}):
            yield _envelope(UserEnvelope, "subscribe_instance", 403, request_id)
            return
        async with ws.listen_to_channel("user.updated", groups=[f"user.{pk}"]) as cm:
            yield _envelope(UserEnvelope, "subscribe_instance", 201, request_id)
            async for msg in cm:
                if not allow_all(user, msg):
                    yield _envelope(UserEnvelope, "update", 403, request_id)
                    return
                yield _envelope(
                    UserEnvelope,
                    "update",
                    200,
                    request_id,
                    UserType(id=msg["pk"], username=msg["username"], email=msg["email"]),
                )

    @strawberry.subscription
    async def user_x(
        self, info: Info, pk: strawberry.ID, request_id: JSON
    ) -> AsyncGenerator[UserXEnvelope, None]:
        """W1x: ``user`` whose ``email`` is behind a permission class."""
        ws = info.context["ws"]
        async with ws.listen_to_channel("user.updated", groups=[f"user.{pk}"]) as cm:
            yield _envelope(UserXEnvelope, "subscribe_instance", 201, request_id)
            async for msg in cm:
                yield _envelope(
                    UserXEnvelope,
                    "update",
                    200,
                    request_id,
                    UserXType(id=msg["pk"], username=msg["username"], email=msg["email"]),
                )


schema = strawberry.Schema(query=Query, subscription=Subscription)


def user_saved(sender: type[User], instance: User, **kwargs: object) -> None:
    async_to_sync(get_channel_layer().group_send)(
        f"user.{instance.pk}",
        {
            "type": "user.updated",
            "pk": str(instance.pk),
            "username": instance.username,
            "email": instance.email,
        },
    )


def user_created(sender: type[User], instance: User, created: bool, **kwargs: object) -> None:
    """Live lists: the created row to the group of every filter it matches."""
    if not created:
        return
    message = {
        "type": "user.created",
        "pk": str(instance.pk),
        "username": instance.username,
        "email": instance.email,
    }
    group_send = async_to_sync(get_channel_layer().group_send)
    for k in matching_keys(instance.username, instance.email):
        group_send(group_of(k), message)


post_save.connect(user_created, sender=User, dispatch_uid="bench-p2-user-created")
post_save.connect(user_saved, sender=User, dispatch_uid="bench-p2-user-saved")

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(
            URLRouter([re_path(r"^graphql/?$", GraphQLWSConsumer.as_asgi(schema=schema))])
        ),
    }
)
