"""gql_observer.transport.uvicorn: uvicorn's websocket protocol holding less per connection.

Its two small parts keep asyncio.Queue's and asyncio.Event's behaviour; a real
uvicorn serving the demo application through it speaks graphql-transport-ws as
before, pauses a stalled client's writes and resumes them, and keeps neither
uvicorn's queue and event nor the handshake's response, nor the request's
headers that websockets' parser holds on to, per connection."""

from __future__ import annotations

import asyncio
import collections
import json
from typing import Any

import pytest
import uvicorn
import websockets
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from gql_observer.transport import uvicorn as lean
from gql_observer.transport.uvicorn import Inbox, WebSocketProtocol, WritableFlag
from tests.support.servers import Servers, ThreadServer
from tests.support.users import create_user, save_many
from tests.support.waiting import wait_until
from tests.support.ws_clients import STALLED_OPERATIONS, RawClient, read_to_final

pytestmark = pytest.mark.uvicorn_protocol

SUBSCRIPTION = "subscription ($pk: ID!) { user(pk: $pk) { action data { id username } } }"


# ---- Inbox: asyncio.Queue's behaviour ------------------------------------------------------
async def test_the_inbox_hands_items_out_in_the_order_they_came() -> None:
    inbox = Inbox()
    for n in range(5):
        inbox.put_nowait(n)
    assert inbox.qsize() == 5 and not inbox.empty() and not inbox.full()
    assert [await inbox.get() for _ in range(3)] == [0, 1, 2]
    inbox.put_nowait(5)
    assert [inbox.get_nowait() for _ in range(3)] == [3, 4, 5]
    assert inbox.empty() and inbox.qsize() == 0
    with pytest.raises(asyncio.QueueEmpty):
        inbox.get_nowait()


async def test_a_reader_of_an_empty_inbox_waits_for_the_next_item() -> None:
    inbox = Inbox()
    reading = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not reading.done()
    await inbox.put({"type": "websocket.receive", "text": "{}"})
    assert await asyncio.wait_for(reading, 1) == {"type": "websocket.receive", "text": "{}"}


async def test_two_readers_get_one_item_each() -> None:
    inbox = Inbox()
    readers = [asyncio.ensure_future(inbox.get()) for _ in range(2)]
    await asyncio.sleep(0)
    inbox.put_nowait("a")
    inbox.put_nowait("b")
    assert sorted(await asyncio.wait_for(asyncio.gather(*readers), 1)) == ["a", "b"]


async def test_a_woken_reader_that_is_cancelled_leaves_its_item_to_the_next() -> None:
    inbox = Inbox()
    first = asyncio.ensure_future(inbox.get())
    second = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("item")  # wakes the first reader...
    first.cancel()  # ...which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "item"
    assert first.cancelled()


async def test_a_cancelled_reader_leaves_nothing_behind() -> None:
    inbox = Inbox()
    reading = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not inbox.holds_nothing  # the reader's future
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    inbox.put_nowait("later")
    assert inbox.get_nowait() == "later"
    # Idle and empty, it holds no waiter and no items.
    assert inbox.holds_nothing


# ---- WritableFlag: asyncio.Event's behaviour ------------------------------------------------
async def test_the_writable_flag_waits_only_while_it_is_clear() -> None:
    flag = WritableFlag(True)
    assert flag.is_set() and await flag.wait() is True
    flag.clear()
    waiters = [asyncio.ensure_future(flag.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    assert not flag.holds_nothing
    flag.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True, True]
    assert flag.holds_nothing


async def test_a_cancelled_wait_on_the_flag_leaves_nothing_behind() -> None:
    flag = WritableFlag()
    waiting = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert flag.holds_nothing  # forgotten
    flag.set()
    assert flag.is_set()


# ---- a uvicorn release it does not know ----------------------------------------------------
def test_a_uvicorn_whose_protocol_holds_something_else_is_refused_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = WebSocketsSansIOProtocol.__init__

    def other_release(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.queue = collections.deque()  # what another release might hold there

    monkeypatch.setattr(WebSocketsSansIOProtocol, "__init__", other_release)
    config = uvicorn.Config(app=_no_app)
    config.load()
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(
            RuntimeError, match=r"holds deque as 'queue', not an empty asyncio\.Queue"
        ):
            WebSocketProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    finally:
        loop.close()


@pytest.mark.parametrize("version", ["0.52.4", "0.56.0", "1.0.0", "dev"])
def test_a_uvicorn_release_outside_the_tested_range_is_refused_at_import(version: str) -> None:
    with pytest.raises(ImportError, match=f"supports uvicorn 0.53 to 0.55, not {version}"):
        lean.check_version(version)


@pytest.mark.parametrize("version", ["0.53.0", "0.54.1", "0.55.0"])
def test_the_releases_it_is_tested_with_are_accepted(version: str) -> None:
    lean.check_version(version)


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not called")


# ---- through a real uvicorn ---------------------------------------------------------------
@pytest.fixture
def lean_server(servers: Servers) -> ThreadServer:
    return servers.in_thread(WebSocketProtocol)


def _parsed_headers(protocol: Any) -> int:
    """How many headers the handshake request that ``websockets``' parser keeps
    (a local of its generator, for the connection's life) still holds."""
    return len(protocol.conn.parser.gi_frame.f_locals["request"].headers)


def _websockets(server: ThreadServer) -> list[Any]:
    return [c for c in server.connections if isinstance(c, WebSocketsSansIOProtocol)]


@pytest.mark.django_db(transaction=True)
async def test_a_subscription_served_through_it_gets_its_changes_and_its_connection_keeps_little(
    lean_server: ThreadServer,
) -> None:
    user = await asyncio.to_thread(create_user)
    async with websockets.connect(lean_server.ws, subprotocols=["graphql-transport-ws"]) as ws:
        assert ws.subprotocol == "graphql-transport-ws"
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "connection_ack"}
        subscribe = {"query": SUBSCRIPTION, "variables": {"pk": user}}
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": subscribe}))
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first == {
            "id": "1",
            "type": "next",
            "payload": {"data": {"user": {"action": "subscribe_instance", "data": None}}},
        }

        held = await lean_server.on_loop(
            lambda: [
                (type(p.queue), type(p.writable), p.request, p.response, _parsed_headers(p))
                for p in _websockets(lean_server)
            ],
        )
        assert held == [(Inbox, WritableFlag, None, None, 0)]
        # The application still has every header, in its scope.
        scopes = [p.scope for p in _websockets(lean_server)]
        assert (b"sec-websocket-protocol", b"graphql-transport-ws") in scopes[0]["headers"]

        name = await asyncio.to_thread(save_many, user, 1)
        update = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert update["payload"]["data"]["user"] == {
            "action": "update",
            "data": {"id": str(user), "username": name},
        }
        await ws.send(json.dumps({"type": "complete", "id": "1"}))
    # The client went: nothing of its connection is left.
    await wait_until(lambda: not _websockets(lean_server), 10, "the connection is gone")


@pytest.mark.django_db(transaction=True)
async def test_a_handshake_without_a_known_subprotocol_is_closed_4406_through_it(
    lean_server: ThreadServer,
) -> None:
    async with websockets.connect(lean_server.ws, subprotocols=["chat"]) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 4406 and ws.close_reason == "Subprotocol not acceptable"


@pytest.mark.django_db(transaction=True)
async def test_a_stalled_client_s_writes_wait_and_resume_through_it(
    lean_server: ThreadServer,
) -> None:
    user = await asyncio.to_thread(create_user)
    stalled = RawClient(lean_server.port)
    ids = [f"s{n}" for n in range(STALLED_OPERATIONS)]
    await asyncio.to_thread(stalled.subscribe, ids, user)

    def writable() -> list[bool]:
        return [p.writable.is_set() for p in _websockets(lean_server)]

    saving = asyncio.ensure_future(asyncio.to_thread(save_many, user, 1000))
    paused = False
    while not saving.done() and not paused:
        paused = False in await lean_server.on_loop(writable)
        await asyncio.sleep(0.01)
    assert paused, "the stalled client's socket never filled up"
    final = await saving

    await read_to_final(stalled, ids, final)
    assert await lean_server.on_loop(writable) == [True]
    stalled.close()


# ---- the direct write of text frames -------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "",
        "x",
        "x" * 125,
        "x" * 126,
        "x" * 127,
        "é" * 62 + "x",  # 125 bytes from 63 characters
        "é" * 63,  # 126 bytes
        "x" * 65535,
        "x" * 65536,
        "🙂" * 20_000,  # 80,000 bytes
    ],
    ids=lambda text: f"{len(text.encode())}B",
)
def test_a_text_frame_is_the_bytes_websockets_writes_for_it(text: str) -> None:
    frame = websockets.frames.Frame(websockets.frames.Opcode.TEXT, text.encode())
    assert lean.text_frame(text) == frame.serialize(mask=False, extensions=[])


def _by_client(server: ThreadServer, *clients: Any) -> list[Any]:
    """The server's protocol object of each client connection."""
    ours = {p.client: p for p in _websockets(server)}
    return [ours[tuple(ws.local_address[:2])] for ws in clients]


async def _subscribed(ws: Any, pk: int) -> None:
    await ws.send(json.dumps({"type": "connection_init"}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "connection_ack"}
    subscribe = {"query": SUBSCRIPTION, "variables": {"pk": pk}}
    await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": subscribe}))
    first = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert first["payload"]["data"]["user"]["action"] == "subscribe_instance"


@pytest.mark.django_db(transaction=True)
async def test_frames_are_written_directly_and_through_websockets_where_they_must_be(
    lean_server: ThreadServer,
) -> None:
    """An uncompressed connection gets its frames from the direct write (websockets'
    ``send_text`` is not called for them); one that negotiated compression gets
    them from websockets, compressed. Both read the same envelopes."""
    user = await asyncio.to_thread(create_user)
    url, protocol = lean_server.ws, ["graphql-transport-ws"]
    async with (
        websockets.connect(url, subprotocols=protocol, compression=None) as plain,  # type: ignore[list-item]
        websockets.connect(url, subprotocols=protocol, compression="deflate") as deflated,  # type: ignore[list-item]
    ):
        await _subscribed(plain, user)
        await _subscribed(deflated, user)
        calls: collections.Counter[str] = collections.Counter()

        def count_websockets_writes() -> list[bool]:
            for name, p in zip(
                ("plain", "deflated"), _by_client(lean_server, plain, deflated), strict=True
            ):
                write = p.conn.send_text

                def counted(data: bytes, fin: bool = True, name: str = name, write: Any = write):
                    calls[name] += 1
                    write(data, fin)

                p.conn.send_text = counted
            return [bool(p.conn.extensions) for p in _by_client(lean_server, plain, deflated)]

        assert await lean_server.on_loop(count_websockets_writes) == [False, True]
        name = await asyncio.to_thread(save_many, user, 1)
        for ws in (plain, deflated):
            update = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert update["payload"]["data"]["user"]["data"]["username"] == name
        assert calls == {"deflated": 1}


@pytest.mark.django_db(transaction=True)
async def test_a_long_frame_written_directly_reaches_the_client_whole(
    lean_server: ThreadServer,
) -> None:
    """Frames of every length class (7-bit, 16-bit and 64-bit lengths), written
    directly between frames websockets writes, arrive whole and in order."""
    texts = ["a" * 100, "é" * 300, "🙂" * 20_000]
    async with websockets.connect(
        lean_server.ws,
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        compression=None,
        max_size=None,
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "connection_ack"}

        def write_directly() -> list[bool]:
            (p,) = _by_client(lean_server, ws)
            return [p.gql_observer_write_text(text) for text in texts]

        assert await lean_server.on_loop(write_directly) == [True, True, True]
        await ws.send(json.dumps({"type": "ping"}))
        received = [await asyncio.wait_for(ws.recv(), 10) for _ in range(4)]
    assert received == [*texts, json.dumps({"type": "pong"}, separators=(",", ":"))]
