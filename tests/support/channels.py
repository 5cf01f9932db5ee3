"""Subscriptions written for strawberry's Channels integration, as its docs show
them: its tutorial's ``joinChatRooms`` (joins with ``ws.channel_name``, greets
the rooms, then ``listen_to_channel``), the older ``channel_listen`` form read
through ``info.context.request``, and a listener with a ``timeout``."""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator
from typing import Any

import strawberry

import gql_observer
from gql_observer.graphql.schema import default_extensions

__all__ = ["application", "schema"]


@strawberry.input
class Room:
    room_name: str


@strawberry.type
class RoomMessage:
    room_name: str
    current_user: str
    message: str


@strawberry.type
class ChannelsSubscription:
    @strawberry.subscription
    async def join_rooms(
        self, info: strawberry.Info, rooms: list[Room], user: str
    ) -> AsyncGenerator[RoomMessage, None]:
        """strawberry's tutorial: join, greet every room, then listen."""
        ws = info.context["ws"]
        channel_layer = ws.channel_layer
        room_ids = [f"chat_{room.room_name}" for room in rooms]
        for room in room_ids:
            await channel_layer.group_add(room, ws.channel_name)
        for room in room_ids:
            await channel_layer.group_send(
                room,
                {"type": "chat.message", "room_id": room, "message": f"{user} joined"},
            )
        async with ws.listen_to_channel("chat.message", groups=room_ids) as cm:
            async for message in cm:
                if message["room_id"] in room_ids:
                    yield RoomMessage(
                        room_name=message["room_id"], current_user=user, message=message["message"]
                    )

    @strawberry.subscription
    async def old_rooms(
        self, info: strawberry.Info, rooms: list[Room]
    ) -> AsyncGenerator[RoomMessage, None]:
        """The older form: ``channel_listen`` on ``info.context.request``."""
        room_ids = [f"chat_{room.room_name}" for room in rooms]
        async for message in info.context.request.channel_listen("chat.message", groups=room_ids):
            yield RoomMessage(
                room_name=message["room_id"], current_user="old", message=message["message"]
            )

    @strawberry.subscription
    async def until_quiet(
        self, info: strawberry.Info, room: str, timeout: float
    ) -> AsyncGenerator[str | None, None]:
        """``null`` once listening; each message; the end after ``timeout`` without one."""
        async with info.context.ws.listen_to_channel(
            "chat.message", groups=[f"chat_{room}"], timeout=timeout
        ) as cm:
            yield None
            async for message in cm:
                yield str(message["message"])


schema = gql_observer.build_schema(
    subscription=ChannelsSubscription, extensions=default_extensions()
)


@functools.cache
def application() -> Any:
    """The ASGI application of this schema (the one-call helper)."""
    from gql_observer.asgi import application as build
    from schema_examples.asgi import django_application

    return build(schema, django_application=django_application)
