"""A Channels consumer of the project's own, as the Channels tutorial writes one:
it joins its room's group, forwards what its client sends to the group, and
sends its client what the group receives."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

__all__ = ["ChatConsumer", "room_group"]


def room_group(room: str) -> str:
    """The channel-layer group of a chat room."""
    return f"chat_{room}"


class ChatConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """One chat client: ``{"message": text}`` in, ``{"room", "message"}`` out."""

    group = ""

    async def connect(self) -> None:
        self.group = room_group(self.scope["url_route"]["kwargs"]["room"])
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        message = content.get("message") if isinstance(content, dict) else None
        if not isinstance(message, str):
            await self.send_json({"error": 'Send {"message": "<text>"}.'})
            return
        await self.channel_layer.group_send(
            self.group, {"type": "chat.message", "room_id": self.group, "message": message}
        )

    async def chat_message(self, event: dict[str, Any]) -> None:
        """Called for each ``chat.message`` sent to the room's group."""
        await self.send_json({"room": event["room_id"], "message": event["message"]})
