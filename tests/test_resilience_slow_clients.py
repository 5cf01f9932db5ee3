"""Slow clients through a real server (uvicorn in a thread of this process, so
the hub's counters can be read): a client that stops reading costs one pending
delivery per subscription, never a queue; others are unaffected; it gets the
latest state when it reads again, or is closed after ``SEND_TIMEOUT``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
import websockets
from django.contrib.auth.models import User
from django.db import close_old_connections, connection

from gql_observer.fanout.hub import Hub
from gql_observer.uvicorn import WebSocketProtocol

from .conftest import wait_until
from .e2e.clients import open_subscription
from .support import runtime as live

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(90),
    pytest.mark.uvicorn_protocol,
]

SUBSCRIPTION = "subscription ($pk: ID!) { user(pk: $pk) { action data { id username email } } }"
SHORT_SUBSCRIPTION = "subscription($pk:ID!){user(pk:$pk){action data{username email}}}"
SAVES = 1000
#: Operations of the stalled connection (each save sends it one message per operation).
STALLED_OPERATIONS = 16
#: Long values make every update big, so the stalled socket fills up early.
PADDING = "x" * 140


def _listener() -> tuple[socket.socket, int]:
    """A loopback socket for a server to listen on, and its port. Accepted sockets
    inherit its small send buffer: a client that stops reading stalls the server's
    writes after kilobytes, not after the megabytes Linux would otherwise buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    sock.bind(("127.0.0.1", 0))
    return sock, int(sock.getsockname()[1])


class LiveServer:
    """The demo application on uvicorn, in a thread with its own loop; ``ws`` is
    uvicorn's websocket implementation (gql_observer's by default)."""

    def __init__(self, ws: str | type[asyncio.Protocol] = WebSocketProtocol) -> None:
        from schema_examples.asgi import application

        self.sock, self.port = _listener()
        config = uvicorn.Config(
            application, lifespan="on", log_level="warning", timeout_graceful_shutdown=2, ws=ws
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="live-server", daemon=True
        )

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql/"

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(10)
        self.sock.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's event loop (of its first connection: uvicorn has one)."""
        return next(iter(self.server.server_state.connections)).loop

    async def on_hub(self, function: Callable[[Hub], Any]) -> Any:
        """Run ``function(hub)`` on the server's loop, where its hub lives."""

        def call() -> Any:
            hub = live.started_hub()
            assert hub is not None
            return function(hub)

        return await _call_on(self.loop, call)

    async def on_loop(self, function: Callable[[], Any]) -> Any:
        """Run ``function()`` on the server's loop (uvicorn's protocol objects are its)."""
        return await _call_on(self.loop, function)


async def _call_on(loop: asyncio.AbstractEventLoop, function: Callable[[], Any]) -> Any:
    async def call() -> Any:
        return function()

    future = asyncio.run_coroutine_threadsafe(call(), loop)
    return await asyncio.wait_for(asyncio.wrap_future(future), 5)


@pytest.fixture(params=[WebSocketProtocol, "websockets-sansio"], ids=["lean", "uvicorn"])
def uvicorn_server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    # Flow control (a stalled client's writes wait for a writable socket) under
    # gql_observer's websocket protocol and under uvicorn's own.
    server = LiveServer(request.param).start()
    yield server
    server.stop()


def _save_many(pk: int, count: int, every: float = 0.003) -> str:
    """``count`` committed saves of one user from this thread, one every ``every``
    seconds (a pace a reading client keeps up with); the last username."""
    try:
        if connection.vendor == "sqlite":
            # Commits without fsync: the test is about sockets, not disks.
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA synchronous=OFF")
        user = User.objects.get(pk=pk)
        began = time.monotonic()
        for n in range(count):
            user.username = f"{n:04d}-{PADDING}"
            user.email = f"{n:04d}-{PADDING}@example.com"
            user.save(update_fields=["username", "email"])
            ahead = began + (n + 1) * every - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        return user.username
    finally:
        connection.close()


async def _subscribe(ws: Any, ids: list[str], pk: int) -> None:
    await ws.send(json.dumps({"type": "connection_init"}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "connection_ack"}
    for operation in ids:
        await ws.send(
            json.dumps(
                {
                    "type": "subscribe",
                    "id": operation,
                    "payload": {"query": SUBSCRIPTION, "variables": {"pk": pk}},
                }
            )
        )
    for _ in ids:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["payload"]["data"]["user"]["action"] == "subscribe_instance", first


class RawClient:
    """A graphql-transport-ws client on a plain socket with a small receive
    buffer: between calls to :meth:`recv` it reads nothing, so the server's
    writes pile up against it exactly as against a stalled browser tab."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /graphql/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode()
        mask = os.urandom(4)
        assert len(data) < 65536
        if len(data) < 126:
            frame = bytes([0x81, 0x80 | len(data)]) + mask
        else:
            frame = bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(data)) + mask
        self.sock.sendall(frame + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed by the server")
            data += chunk
        return data

    def recv(self) -> tuple[int, bytes]:
        """The next frame: (opcode, payload)."""
        first, second = self._exactly(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._exactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._exactly(8))[0]
        return first & 0x0F, self._exactly(size)

    def recv_json(self) -> dict[str, Any]:
        opcode, payload = self.recv()
        assert opcode == 1, (opcode, payload)
        message: dict[str, Any] = json.loads(payload)
        return message

    def subscribe(self, ids: list[str], pk: int) -> None:
        self.send({"type": "connection_init"})
        assert self.recv_json() == {"type": "connection_ack"}
        for operation in ids:
            self.send(
                {
                    "type": "subscribe",
                    "id": operation,
                    "payload": {"query": SHORT_SUBSCRIPTION, "variables": {"pk": pk}},
                }
            )
        for _ in ids:
            first = self.recv_json()
            assert first["payload"]["data"]["user"]["action"] == "subscribe_instance", first

    def close(self) -> None:
        self.sock.close()


async def read_to_final(client: RawClient, ids: list[str], final: str) -> int:
    """Read ``client``'s messages until each of ``ids`` holds ``final`` (20 s at
    most); how many messages that took."""
    latest: dict[str, str] = {}
    received = 0
    deadline = time.monotonic() + 20
    while any(latest.get(i) != final for i in ids):
        assert time.monotonic() < deadline, latest
        message = await asyncio.to_thread(client.recv_json)
        received += 1
        if message["type"] == "next":
            latest[message["id"]] = message["payload"]["data"]["user"]["data"]["username"]
    return received


class Reader:
    """A healthy client reading every message in the background."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.names: list[str] = []
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                message = json.loads(raw)
                if message["type"] == "next":
                    self.names.append(message["payload"]["data"]["user"]["data"]["username"])

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.ws.close()


def _subscriptions(hub: Hub, group: str) -> list[tuple[int, int, int]]:
    return [(s.pending, s.delivered, s.dropped) for s in hub.groups.get(group, ())]


def _members(hub: Hub) -> dict[str, tuple[int, int]]:
    """Every watch member by operation id: (frames waiting, frames dropped)."""
    return _watch_members()


def _watch_members() -> dict[str, tuple[int, int]]:
    return {
        member.operation.id: (int(member._next is not None), member.dropped)
        for one in live.watches().values()
        for member in one.members.values()
    }


async def _healthy(url: str, pk: int) -> Reader:
    # The very operation the stalled client runs: one watch, one shared result.
    return Reader(await open_subscription(url, SHORT_SUBSCRIPTION, {"pk": pk}, op_id="h"))


async def test_a_stalled_client_costs_one_pending_frame_and_gets_the_latest_state_on_resume(
    uvicorn_server: LiveServer,
) -> None:
    user = await asyncio.to_thread(_create_user)
    stalled_ids = [f"s{n}" for n in range(STALLED_OPERATIONS)]
    stalled = RawClient(uvicorn_server.port)
    await asyncio.to_thread(stalled.subscribe, stalled_ids, user)
    healthy = await _healthy(uvicorn_server.url, user)
    group = f"gqlobs.auth.user.{user}"

    saving = asyncio.ensure_future(asyncio.to_thread(_save_many, user, SAVES))
    most_pending = most_waiting = 0
    while not saving.done():
        samples = await uvicorn_server.on_hub(lambda hub: _subscriptions(hub, group))
        members = await uvicorn_server.on_hub(_members)
        most_pending = max([most_pending, *(pending for pending, _, _ in samples)])
        most_waiting = max([most_waiting, *(waiting for waiting, _ in members.values())])
        await asyncio.sleep(0.02)
    final = await saving

    # The healthy subscriber is not held back by the stalled one of its watch.
    await wait_until(lambda: healthy.names[-1:] == [final], 10, "healthy has the final state")
    samples = await uvicorn_server.on_hub(lambda hub: _subscriptions(hub, group))
    members = await uvicorn_server.on_hub(_members)
    assert len(samples) == 1  # one watch, one hub subscription
    assert set(members) == {*stalled_ids, "h"}
    # Never more than one delivery waiting in the hub, one frame per member.
    assert most_pending <= 1 and most_waiting <= 1
    # The stalled members' sends wait for the socket; newer frames replace the
    # waiting one, counted in ``dropped``.
    assert all(members[i][1] > len(healthy.names) / 2 for i in stalled_ids), members
    assert members["h"][1] < len(healthy.names) / 2, members

    # Reading again: each stalled operation ends with the committed state.
    received = await read_to_final(stalled, stalled_ids, final)
    # Far fewer messages than saves: nothing was queued per save (a queue per
    # member would hold a frame for every save).
    assert received < SAVES * len(stalled_ids) / 4, received
    stalled.close()
    await healthy.close()
    print(
        f"\nstalled: {received} frames read for {SAVES} saves x {STALLED_OPERATIONS} "
        f"operations; the healthy subscriber got {len(healthy.names)}; dropped for the "
        f"stalled s0: {members['s0'][1]}, for the healthy: {members['h'][1]}"
    )


async def test_a_client_that_takes_nothing_for_send_timeout_is_closed_and_leaves_nothing(
    uvicorn_server: LiveServer, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.GQL_OBSERVER = {**settings.GQL_OBSERVER, "SEND_TIMEOUT": 0.5}
    user = await asyncio.to_thread(_create_user)
    stalled = RawClient(uvicorn_server.port)
    await asyncio.to_thread(stalled.subscribe, [f"s{n}" for n in range(STALLED_OPERATIONS)], user)
    healthy = await _healthy(uvicorn_server.url, user)
    saving = asyncio.ensure_future(asyncio.to_thread(_save_many, user, SAVES))
    # While saves go on, the stalled connection's operations end.
    deadline = time.monotonic() + 20
    while set(await uvicorn_server.on_hub(_members)) != {"h"}:
        assert time.monotonic() < deadline, "the stalled connection's operations are gone"
        await asyncio.sleep(0.05)
    assert not saving.done()
    final = await saving
    await wait_until(lambda: healthy.names[-1:] == [final], 10, "healthy has the final state")
    assert "took more than 0.5s to take a message; closing it" in caplog.text
    # Reading again: what was buffered, then the close frame.
    while True:
        opcode, payload = await asyncio.to_thread(stalled.recv)
        if opcode == 8:
            break
    assert struct.unpack("!H", payload[:2])[0] == 1013, payload
    stalled.close()
    await healthy.close()


async def test_the_server_pings_an_acknowledged_connection(
    uvicorn_server: LiveServer, settings: Any
) -> None:
    settings.GQL_OBSERVER = {**settings.GQL_OBSERVER, "KEEP_ALIVE_INTERVAL": 0.2}
    async with websockets.connect(uvicorn_server.url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "connection_ack"}
        for _ in range(2):
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "ping"}
            await ws.send(json.dumps({"type": "pong"}))


def _create_user() -> int:
    try:
        close_old_connections()
        user = User.objects.create(username=f"slow {time.monotonic_ns()}", email="s@example.com")
        return int(user.pk)
    finally:
        connection.close()
