"""The GraphQL websocket endpoint served by the ``websockets`` library, without an ASGI server.

``python manage.py gql_observer_serve --port 8001`` runs it. It speaks what the ASGI
application's websocket speaks (graphql-transport-ws and legacy graphql-ws, the same
:class:`~gql_observer.transport.Connection`, the same Host and Origin checks, session cookie
and tokens, limits and close codes), and nothing else: queries and mutations over HTTP, GraphiQL and
Django's pages stay with your ASGI or WSGI server. Behind a proxy that routes the websocket
path here, clients see one endpoint.

Why: an ASGI server keeps per connection what its ASGI adaptation needs (the handshake's
headers decoded into the scope, a queue of received messages, events, the ASGI task); under
uvicorn a bare ASGI app costs about 22 KiB per idle websocket, a ``websockets`` server about
13. Here ``websockets`` runs the protocol and our connection reads its frames directly: one
task per connection (``websockets``'s), nothing per subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from http import HTTPStatus
from typing import Any, Final, cast, overload
from urllib.parse import urlsplit

from strawberry.schema import BaseSchema
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from . import guard
from .guard import host_allowed
from .hub import current_hub
from .publish import flush
from .settings import get_settings
from .transport import NOT_ACCEPTABLE, choose_subprotocol, open_connection

__all__ = ["GraphQLWebsocketServer", "keepalive", "run"]

logger = logging.getLogger(__name__)


class _Socket:
    """ASGI's ``receive`` and ``send`` of one websocket, over a ``websockets``
    connection (the handshake is already done when the connection reads them)."""

    __slots__ = ("connection",)

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection

    async def receive(self) -> dict[str, Any]:
        try:
            message = await self.connection.recv()
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else 1006
            return {"type": "websocket.disconnect", "code": code}
        if isinstance(message, str):
            return {"type": "websocket.receive", "text": message}
        return {"type": "websocket.receive", "bytes": bytes(message)}

    async def send(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        with contextlib.suppress(ConnectionClosed):  # as an ASGI server ignores a late send
            if kind == "websocket.send":
                # Once closing, no data frame may follow the close frame, and
                # ``Connection.send`` would wait for the close under ``asyncio.timeout_at``:
                # a watch writes its first step inline, in its own task, which that timeout
                # would cancel (``watch.Socket.write_frame``).
                if self.connection.state is not State.OPEN:
                    return
                text = event.get("text")
                await self.connection.send(text if text is not None else event.get("bytes", b""))
            elif kind == "websocket.close":
                await self.connection.close(event.get("code", 1000), event.get("reason", ""))
            # websocket.accept: the handshake is over before the connection runs.


class _Headers(Sequence[tuple[bytes, bytes]]):
    """The handshake's headers as ASGI has them (``(name, value)`` pairs of bytes, names
    in lower case), read off the ``websockets`` request when asked instead of copied for
    every connection (about 1 KiB each)."""

    __slots__ = ("_headers",)

    def __init__(self, headers: Headers) -> None:
        self._headers = headers

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        for name, value in self._headers.raw_items():
            yield name.lower().encode("latin1"), value.encode("latin1")

    def __len__(self) -> int:
        return sum(1 for _ in self._headers.raw_items())

    @overload
    def __getitem__(self, index: int) -> tuple[bytes, bytes]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[bytes, bytes]]: ...

    def __getitem__(self, index: int | slice) -> Any:
        return list(self)[index]


_ASGI: Final = {"version": "3.0", "spec_version": "2.3"}


def _address(address: Any) -> tuple[str, int] | None:
    if not address:
        return None
    return address if len(address) == 2 else (address[0], address[1])


def _scope(connection: ServerConnection) -> dict[str, Any]:
    """The ASGI scope of a connection: resolvers find the request's headers, client
    and user where they would under an ASGI server (``info.context["request"].scope``)."""
    request = connection.request
    assert request is not None
    path, _, query = request.path.partition("?")
    return {
        "type": "websocket",
        "asgi": _ASGI,
        "http_version": "1.1",
        "scheme": "wss" if connection.transport.get_extra_info("sslcontext") else "ws",
        "path": path,
        "raw_path": path.encode("latin1"),
        "query_string": query.encode("latin1"),
        "root_path": "",
        "headers": _Headers(request.headers),
        "client": _address(connection.remote_address),
        "server": _address(connection.local_address),
        "subprotocols": [
            p.strip()
            for value in request.headers.get_all("Sec-WebSocket-Protocol")
            for p in value.split(",")
        ],
    }


class GraphQLWebsocketServer:
    """The handshake and connection handlers for :func:`websockets.asyncio.server.serve`.

    A handshake for another path is refused (404), one whose Host is not in ``ALLOWED_HOSTS``
    too (400), and one from a browser page on an Origin that ``origin_allowed`` refuses
    (403: the server's own origin and ``CSRF_TRUSTED_ORIGINS`` pass); the client's first choice of
    graphql-transport-ws and legacy graphql-ws is served, and a handshake offering neither
    is accepted and closed with 4406, as the ASGI application does.
    """

    def __init__(
        self,
        schema: BaseSchema,
        *,
        path: str = "graphql/",
        origin_allowed: Callable[[str, Any], bool] | None = None,
    ) -> None:
        if origin_allowed is None:
            origin_allowed = guard.origin_allowed
        self.schema = schema
        self.path = "/" + path.strip("/")
        self.origin_allowed = origin_allowed

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path.rstrip("/") != self.path:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        scope = _scope(connection)
        if not host_allowed(scope):
            return connection.respond(HTTPStatus.BAD_REQUEST, "Bad Request (400)\n")
        origin = request.headers.get("Origin")
        if origin is not None and not self.origin_allowed(origin, scope):
            return connection.respond(HTTPStatus.FORBIDDEN, "Origin not allowed\n")
        return None

    def select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        return cast(Subprotocol | None, choose_subprotocol(offered))

    async def handler(self, connection: ServerConnection) -> None:
        chosen = connection.subprotocol
        if chosen is None:  # select_subprotocol found none of ours
            await connection.close(4406, NOT_ACCEPTABLE)
            return
        socket = _Socket(connection)
        served = await open_connection(self.schema, _scope(connection), socket.send, chosen)
        if served is not None:
            await served.serve(socket.receive)

    def serve(self, host: str, port: int, **options: Any) -> Any:
        """``websockets``'s ``serve(...)`` for this endpoint (an async context manager)."""
        options.setdefault("compression", None)  # zlib contexts cost ~300 KiB a connection
        options.setdefault("max_size", get_settings()["MAX_MESSAGE_SIZE"])
        return serve(
            self.handler,
            host,
            port,
            process_request=self.process_request,
            select_subprotocol=self.select_subprotocol,
            **options,
        )


#: Seconds :func:`keepalive` waits for a ping to be written (at most the interval).
PING_WRITE_TIMEOUT: Final = 1.0


async def keepalive(server: Server, interval: float) -> None:
    """Ping every connection of ``server`` every ``interval`` seconds and close those
    whose pong for the previous ping has not come (1011): dead peers are gone within two
    intervals. One task for the whole server, where ``websockets``'s own keepalive
    (``ping_interval``) runs a task per connection (about 1.5 KiB each).

    A connection whose client reads nothing cannot take the ping: after
    ``PING_WRITE_TIMEOUT`` it counts as not answering, and the others' pings go on."""
    write_timeout = min(PING_WRITE_TIMEOUT, interval)
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting: dict[ServerConnection, Any] = {}
    closing: set[asyncio.Future[None]] = set()
    while True:
        await asyncio.sleep(interval)
        alive = server.connections
        for connection in [c for c in waiting if c not in alive]:
            del waiting[connection]
        for connection in list(alive):
            if connection.state is not State.OPEN:
                continue
            pong = waiting.pop(connection, None)
            if pong is not None and not pong.done():
                logger.info("No pong from %s within %g s: closing", connection.id, interval)
                task = asyncio.ensure_future(connection.close(1011, "keepalive ping timeout"))
                closing.add(task)
                task.add_done_callback(closing.discard)
                continue
            try:
                async with asyncio.timeout(write_timeout):
                    waiting[connection] = await connection.ping()
            except ConnectionClosed:
                pass
            except TimeoutError:
                waiting[connection] = never  # closed at the next round


async def run(
    host: str,
    port: int,
    *,
    schema: BaseSchema | None = None,
    path: str = "graphql/",
    ping_interval: float | None = 20.0,
    ready: Callable[[Server], None] | None = None,
    endpoint_class: type[GraphQLWebsocketServer] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then close every connection (1012), complete every
    subscription, leave every group and send what the publisher still holds.

    ``ping_interval``: seconds between websocket pings of every connection by
    :func:`keepalive`; ``None`` or 0: none (graphql-transport-ws ``ping`` messages still
    go out every ``KEEP_ALIVE_INTERVAL``)."""
    if schema is None:
        from .asgi import load_schema

        schema = load_schema()
    endpoint = (endpoint_class or GraphQLWebsocketServer)(schema, path=path)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def stopping() -> None:
        if not stop.done():
            stop.set_result(None)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping)
    async with endpoint.serve(host, port, ping_interval=None) as server:
        pinging = asyncio.ensure_future(keepalive(server, ping_interval)) if ping_interval else None
        if ready is not None:
            ready(server)
        await stop
        if pinging is not None:
            pinging.cancel()
        logger.info("Shutting down: closing %d connection(s)", len(server.connections))
        # As uvicorn closes websockets on shutdown: 1012, which graphql-ws clients retry.
        server.close(code=1012, reason="Service restart")
        await server.wait_closed()
    hub = current_hub()
    if hub is not None:
        await hub.close()
    await asyncio.to_thread(flush)
