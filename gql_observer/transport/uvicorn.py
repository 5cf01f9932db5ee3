"""uvicorn's websocket protocol, holding less per connection.

    uvicorn myproject.asgi:application --ws gql_observer.uvicorn:WebSocketProtocol

uvicorn's default websocket implementation (``websockets-sansio``) keeps, for
every open connection, an ``asyncio.Queue`` of received events (three deques
and an ``asyncio.Event``, about 3.3 KB), an ``asyncio.Event`` for flow control
(about 0.9 KB), the handshake's response with its headers (about 1.7 KB) and,
through ``websockets``' parser, the handshake request's headers (about 2.6 KB;
the ASGI scope has its own copy). An idle graphql-transport-ws connection needs
none of it: the queue is empty, the socket is writable and the handshake is
long over. This is the same protocol class with a receive queue and a writable
flag that hold nothing but the future the ASGI application awaits, which lets
go of the response and empties the request's headers once the handshake is
done: about 8.5 KB less per connection (docs/performance.md, M). Everything else
(handshake, frames, flow control, keepalive pings, shutdown) is uvicorn's own.

It works with any ASGI application. It relies on uvicorn's class keeping two
attributes, ``queue`` and ``writable``, as an ``asyncio.Queue`` and an
``asyncio.Event``, and uses only their methods. It is tested against the
lowest and the highest uvicorn the package allows (:data:`SUPPORTED`, CI runs
its tests on both); another release is refused at import, and a class whose
attributes are not what they were refuses to serve: loudly, not by serving
with the memory it was meant to save.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any, Final, Literal

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.protocol import State

__all__ = [
    "SUPPORTED",
    "Inbox",
    "WebSocketProtocol",
    "WritableFlag",
    "check_version",
    "text_frame",
]

logger = logging.getLogger(__name__)

#: The uvicorn releases (major, minor) this protocol is tested with, lowest and
#: highest; pyproject.toml's ``uvicorn`` extra names the same bounds.
SUPPORTED: Final = ((0, 53), (0, 55))


def check_version(version: str) -> None:
    """Refuse a uvicorn release outside :data:`SUPPORTED` (an ``ImportError``
    that says what to do)."""
    try:
        found = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        found = ()
    (low, high) = SUPPORTED
    if len(found) != 2 or not low <= found <= high:
        raise ImportError(
            f"gql_observer.uvicorn supports uvicorn {low[0]}.{low[1]} to {high[0]}.{high[1]}, "
            f"not {version}: install a release in that range, or serve with uvicorn's own "
            "websocket protocol (--ws auto)."
        )


check_version(uvicorn.__version__)


class Inbox:
    """A first-in first-out queue with ``asyncio.Queue``'s interface (unbounded)
    that holds, while empty, no buffer: only the futures of waiting readers."""

    __slots__ = ("_getters", "_head", "_items")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._head = 0  # items before it are taken: a get is O(1) without a deque
        self._getters: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        return len(self._items) - self._head

    def empty(self) -> bool:
        return self._head == len(self._items)

    def full(self) -> bool:
        return False

    @property
    def holds_nothing(self) -> bool:
        """Whether it holds no item, no waiter and no list of waiters (an idle
        connection's inbox)."""
        return self._getters is None and not self._items

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self._wake_one()

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        if self.empty():
            raise asyncio.QueueEmpty
        items = self._items
        item = items[self._head]
        self._head += 1
        if self._head == len(items):
            items.clear()  # frees the list's buffer too
            self._head = 0
        else:
            items[self._head - 1] = None
        return item

    async def get(self) -> Any:
        while self.empty():
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters = _with(self._getters, getter)
            try:
                await getter
            except BaseException:
                if getter.done() and not getter.cancelled():
                    # Woken for an item, then cancelled: the next reader takes it.
                    if not self.empty():
                        self._wake_one()
                else:
                    getter.cancel()
                    self._getters = _without(self._getters, getter)
                raise
        return self.get_nowait()

    def _wake_one(self) -> None:
        getters = self._getters
        while getters:
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                break
        if not getters:
            self._getters = None


class WritableFlag:
    """``asyncio.Event``'s interface, holding no deque while nobody waits."""

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    @property
    def holds_nothing(self) -> bool:
        """Whether it holds no list of waiters (made on the first wait, dropped
        with the last)."""
        return self._waiters is None

    def set(self) -> None:
        self._value = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> Literal[True]:
        if self._value:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters = _with(self._waiters, waiter)
        try:
            await waiter
        finally:
            self._waiters = _without(self._waiters, waiter)
        return True


# Both keep their waiters in a list made on the first wait and dropped with the
# last: an idle connection holds no empty list.
def _with(
    waiters: list[asyncio.Future[None]] | None, waiter: asyncio.Future[None]
) -> list[asyncio.Future[None]]:
    if waiters is None:
        return [waiter]
    waiters.append(waiter)
    return waiters


def _without(
    waiters: list[asyncio.Future[None]] | None, waiter: asyncio.Future[None]
) -> list[asyncio.Future[None]] | None:
    if waiters is not None and waiter in waiters:
        waiters.remove(waiter)
    return waiters or None


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol with a lean receive queue and
    writable flag, which lets go of the handshake once it is done. Pass it as
    ``--ws gql_observer.uvicorn:WebSocketProtocol``, or as
    ``uvicorn.run(..., ws=WebSocketProtocol)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        queue = getattr(self, "queue", None)
        writable = getattr(self, "writable", None)
        if type(queue) is not asyncio.Queue or not queue.empty():
            raise _changed("queue", "an empty asyncio.Queue", queue)
        if type(writable) is not asyncio.Event:
            raise _changed("writable", "an asyncio.Event", writable)
        self.queue = Inbox()  # type: ignore[assignment]  # the same interface
        self.writable = WritableFlag(writable.is_set())  # type: ignore[assignment]

    def gql_observer_write_text(self, text: str) -> bool:
        """Write one text message at once, the bytes uvicorn's ``send`` writes for
        ``{"type": "websocket.send", "text": text}`` (one unmasked, uncompressed,
        final text frame), without its coroutine and without websockets' frame
        objects: a fan-out writes thousands of them in a row.

        Whether it wrote. It writes nothing (the caller then awaits ``send``) when
        ``send`` would do anything but write at once: the socket pushes back or
        another write waits for it, the handshake is not over or was answered
        with HTTP, a close was sent or the client is gone, the connection
        negotiated an extension (compression) or websockets holds output of its
        own. :class:`~gql_observer.transport.connection.Connection` finds it on
        the ``send`` it is given (uvicorn's bound method, no middleware between).
        """
        conn = self.conn
        writable = self.writable
        if (
            not writable.is_set()
            or not writable.holds_nothing  # type: ignore[attr-defined]
            or not self.handshake_complete
            or self.initial_response is not None
            or self.close_sent
            or self.disconnected
            or conn.state is not State.OPEN
            or conn.extensions
            or conn.writes
            or conn.expect_continuation_frame
        ):
            return False
        self.transport.write(text_frame(text))
        return True

    def start_keepalive(self) -> None:
        """Called once the handshake's response is written: from then on uvicorn
        reads neither the request nor the response again."""
        super().start_keepalive()
        if not self.handshake_complete:
            return
        # websockets' parser keeps the handshake request referenced for as long as
        # the connection lives, and never reads it again; its headers are in the
        # ASGI scope already (as bytes): empty the request's copy.
        headers = getattr(self.request, "headers", None)
        if isinstance(headers, Headers):
            headers.clear()
        self.request = None  # type: ignore[assignment]
        self.response = None  # type: ignore[assignment]


#: The first byte of a final text frame, and the two-byte heads of short ones.
_FIN_TEXT: Final = 0x81
_TEXT_HEADS: Final = tuple(bytes((_FIN_TEXT, length)) for length in range(126))


def text_frame(text: str) -> bytes:
    """``text`` as one final, unmasked text frame (RFC 6455 §5.2), as a server
    writes it: what ``websockets``' ``Frame(Opcode.TEXT, …).serialize(mask=False)``
    makes without extensions."""
    data = text.encode()
    length = len(data)
    if length < 126:
        return _TEXT_HEADS[length] + data
    if length < 65536:
        return struct.pack("!BBH", _FIN_TEXT, 126, length) + data
    return struct.pack("!BBQ", _FIN_TEXT, 127, length) + data


def _changed(attribute: str, expected: str, found: Any) -> RuntimeError:
    return RuntimeError(
        f"uvicorn {uvicorn.__version__}'s websocket protocol holds {type(found).__name__} "
        f"as {attribute!r}, not {expected}: gql_observer.uvicorn.WebSocketProtocol does "
        "not know this release; serve with uvicorn's own websocket protocol (--ws auto)."
    )
