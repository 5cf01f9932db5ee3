"""A demo server in a process of its own on the test's database, and this
process as a writer beside it: what the test saves crosses real Redis to the
server, as a shell's or a task runner's saves would."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import websockets
from django.db import connection

from tests.support.environment import E2E_REDIS_URL

__all__ = ["LiveSocket", "database_url", "delete_keys", "redis_layers", "server_env"]


def database_url() -> str:
    """The URL of the test's database (SQLite file or PostgreSQL), for a server
    process that shares it."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    assert connection.vendor == "postgresql", connection.vendor
    user, host, port = settings["USER"], settings["HOST"], settings["PORT"]
    return f"postgres://{user}@{host}:{port}/{settings['NAME']}"


def redis_layers(prefix: str) -> dict[str, Any]:
    """``CHANNEL_LAYERS`` on the shared end-to-end Redis under ``prefix``."""
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": E2E_REDIS_URL, "socket_timeout": 30}],
                "prefix": prefix,
            },
        }
    }


def server_env(prefix: str, secret_key: str) -> dict[str, str]:
    """The environment of a demo server on the test's database and on Redis
    under ``prefix``, signing tokens with ``secret_key`` (this process's)."""
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE"}}
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=E2E_REDIS_URL,
        CHANNELS_PREFIX=prefix,
        SECRET_KEY=secret_key,
    )
    return env


def delete_keys(prefix: str) -> None:
    """Delete the Redis keys under ``prefix``."""
    import redis

    redis_connection = redis.Redis.from_url(E2E_REDIS_URL)
    for key in redis_connection.scan_iter(f"{prefix}*"):
        redis_connection.delete(key)
    redis_connection.close()


class LiveSocket:
    """A graphql-transport-ws client of a real server (the ``websockets`` library)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ops = 0

    @classmethod
    async def connect(cls, url: str, token: str | None = None) -> LiveSocket:
        ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"])
        init: dict[str, Any] = {"type": "connection_init"}
        if token is not None:
            init["payload"] = {"token": token}
        await ws.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "connection_ack"}
        return cls(ws)

    async def subscribe(self, query: str, variables: dict[str, Any]) -> tuple[str, Any]:
        """Subscribe; the operation id and the first frame's data."""
        self.ops += 1
        op = str(self.ops)
        payload = {"query": query, "variables": variables}
        await self.ws.send(json.dumps({"type": "subscribe", "id": op, "payload": payload}))
        return op, await self.next(op)

    async def next(self, op: str, timeout: float = 15) -> Any:
        """The data of the next frame, which must be a ``next`` of ``op``."""
        message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        assert message["type"] == "next" and message["id"] == op, message
        return message["payload"]["data"]

    async def next_any(self, timeout: float = 15) -> tuple[str, Any]:
        """The operation id and data of the next frame, which must be a ``next``
        (frames of different operations may come in any order)."""
        message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        assert message["type"] == "next", message
        return str(message["id"]), message["payload"]["data"]

    async def close(self) -> None:
        await self.ws.close()
