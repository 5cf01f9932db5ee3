"""Chat rooms in GraphQL, written for strawberry's Channels integration (its
tutorial's ``joinChatRooms``): the subscription listens to the rooms' groups
through ``info.context["ws"]``, the mutation sends to them. gql_observer's
connection gives the subscription a channel-layer channel when it asks."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from channels.layers import get_channel_layer

from .consumers import room_group

__all__ = ["ChatMutation", "ChatRoom", "ChatRoomMessage", "ChatSubscription"]


@strawberry.input
class ChatRoom:
    room_name: str


@strawberry.type
class ChatRoomMessage:
    room_name: str
    current_user: str
    message: str


@strawberry.type
class ChatSubscription:
    @strawberry.subscription
    async def join_chat_rooms(
        self, info: strawberry.Info, rooms: list[ChatRoom], user: str
    ) -> AsyncGenerator[ChatRoomMessage | None, None]:
        """Messages sent to the rooms; ``null`` first, once the rooms are joined."""
        ws = info.context["ws"]
        room_ids = [room_group(room.room_name) for room in rooms]
        async with ws.listen_to_channel("chat.message", groups=room_ids) as messages:
            yield None
            async for message in messages:
                if message["room_id"] in room_ids:
                    yield ChatRoomMessage(
                        room_name=message["room_id"], current_user=user, message=message["message"]
                    )


@strawberry.type
class ChatMutation:
    @strawberry.mutation
    async def send_chat_message(self, room: ChatRoom, message: str) -> bool:
        """Send ``message`` to everybody in ``room`` (GraphQL and chat clients)."""
        layer = get_channel_layer()
        if layer is None:
            return False
        group = room_group(room.room_name)
        await layer.group_send(
            group, {"type": "chat.message", "room_id": group, "message": message}
        )
        return True
