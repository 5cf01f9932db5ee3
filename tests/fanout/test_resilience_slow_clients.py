"""Slow clients through a real server (uvicorn in a thread of this process, so
the hub's counters can be read): a client that stops reading costs one pending
delivery per subscription, never a queue; others are unaffected; it gets the
latest state when it reads again, or is closed after ``SEND_TIMEOUT``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
import websockets

from gql_observer.fanout.hub import Hub
from gql_observer.uvicorn import WebSocketProtocol
from tests.support import runtime as live
from tests.support.servers import Servers, ThreadServer
from tests.support.users import create_user, save_many
from tests.support.waiting import wait_until
from tests.support.ws_clients import (
    SHORT_SUBSCRIPTION,
    STALLED_OPERATIONS,
    RawClient,
    open_subscription,
    read_to_final,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(90),
    pytest.mark.uvicorn_protocol,
]

SAVES = 1000


@pytest.fixture(params=[WebSocketProtocol, "websockets-sansio"], ids=["lean", "uvicorn"])
def uvicorn_server(request: pytest.FixtureRequest, servers: Servers) -> ThreadServer:
    # Flow control (a stalled client's writes wait for a writable socket) under
    # gql_observer's websocket protocol and under uvicorn's own.
    return servers.in_thread(request.param)


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
        member.operation.id: (member.waiting, member.dropped)
        for one in live.watches().values()
        for member in one.members.values()
    }


async def _healthy(url: str, pk: int) -> Reader:
    # The very operation the stalled client runs: one watch, one shared result.
    return Reader(await open_subscription(url, SHORT_SUBSCRIPTION, {"pk": pk}, op_id="h"))


async def test_a_stalled_client_costs_one_pending_frame_and_gets_the_latest_state_on_resume(
    uvicorn_server: ThreadServer,
) -> None:
    user = await asyncio.to_thread(create_user)
    stalled_ids = [f"s{n}" for n in range(STALLED_OPERATIONS)]
    stalled = RawClient(uvicorn_server.port)
    await asyncio.to_thread(stalled.subscribe, stalled_ids, user)
    healthy = await _healthy(uvicorn_server.ws, user)
    group = f"gqlobs.auth.user.{user}"

    saving = asyncio.ensure_future(asyncio.to_thread(save_many, user, SAVES))
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
    uvicorn_server: ThreadServer,
    observer_settings: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    observer_settings(SEND_TIMEOUT=0.5)
    user = await asyncio.to_thread(create_user)
    stalled = RawClient(uvicorn_server.port)
    await asyncio.to_thread(stalled.subscribe, [f"s{n}" for n in range(STALLED_OPERATIONS)], user)
    healthy = await _healthy(uvicorn_server.ws, user)
    saving = asyncio.ensure_future(asyncio.to_thread(save_many, user, SAVES))
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
    uvicorn_server: ThreadServer, observer_settings: Callable[..., Any]
) -> None:
    observer_settings(KEEP_ALIVE_INTERVAL=0.2)
    async with websockets.connect(uvicorn_server.ws, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "connection_ack"}
        for _ in range(2):
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "ping"}
            await ws.send(json.dumps({"type": "pong"}))
