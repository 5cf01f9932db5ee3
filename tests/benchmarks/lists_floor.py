"""LU, the live-lists floor: the least any Django server can do for L1 and L2.

A bare ASGI application under the same uvicorn command line and websocket implementation as
the instance floor U (``asgi_floor.py``), with Django set up on the peers' settings
(``peers/settings.py``: the same ``BENCH_DATABASE_URL``, psycopg pool and ``CONN_MAX_AGE`` as
P1 and P2, a PostgreSQL schema of its own, ``lists_lu``) and nothing else: no Channels, no
channel layer, no GraphQL library, no filter engine.

Websocket (just enough graphql-transport-ws): ``connection_init`` gets ``connection_ack``; a
``subscribe`` whose variables carry ``filters`` (filter k of ``peers/list_filters.py``, found
with ``key_of``) and ``requestId`` gets one ``next`` (``action`` ``subscribe_list``,
``responseStatus`` 201, its requestId) and joins filter k's clients. A ``subscribe`` without
``filters`` is an instance subscription as on U (the harness's warm-up: one client of user 1,
two saves).

``GET /bench/create/?marker=..&email=..`` (L1) or ``..&n=..&filters=..`` (L2) runs the loop of
``peers/urls.py:create_view``, ``User.objects.create(username=.., email=..)`` per row, each its
own transaction (autocommit), in a worker thread as Django runs a sync view (a
``ThreadSensitiveContext`` per request, ``sync_to_async(thread_sensitive=True)``, the
connection released as ``request_started`` / ``request_finished`` release it). After each
create the row (pk, username, email) is handed to the event loop
(``loop.call_soon_threadsafe``), which encodes its ``next`` envelope (``action`` ``create``)
once and writes it to every client whose k is in ``matching_keys(username, email)``, each with
its own operation id and requestId spliced in front, as U does. The answer is create_view's:
``{"t_call", "t_return", "saved"}``. ``GET /bench/save/`` (warm-up) runs the peers'
``save_burst`` in the same way, then writes each saved pk's frame to its instance clients.
Every other path (``/bench/ping/``, ``/bench/queries/``, ``/bench/credentials/``,
``/bench/stats/``) goes to Django's own ASGI handler and the peers' urlconf, so the statements
it reports are counted by ``peers/queries.py`` as on every Django system.

What it leaves out, and why it is a floor: the row is not read again after its commit (the
frame is built from the values just written and the pk the INSERT returned), there is no
filter engine (the matching filters come from the row by hand, ``matching_keys``) and no
channel layer or GraphQL execution between the commit and the sockets. Every Django system
has to run the same creates in a view thread and write the same frames; LU does only that, and
writes its frames the cheapest way there is here (on P0's websocket protocol,
``gql_observer.uvicorn``, through its direct frame write, as P0's connections do), so no
system can beat its L1 or L2 by more than noise.

LUr (``BENCH_LIST_READ=1``, which ``systems.py`` sets for it) is the same application with the
one step LU leaves out that gql_observer's contract requires: every list message carries the
row as the database holds it after the commit (a fresh read through the type's queryset, not
the values the writer had in hand). The view thread hands each created pk to the event loop,
which collects them (``Reads``); whenever no read is running and some pks are pending, it
starts one read of all of them, ``list(User.objects.filter(pk__in=pks))`` through
``sync_to_async(thread_sensitive=True)`` outside any request (in a context of its own, so on
Django's one sync thread, with its own connection, as a Django server reads outside a request;
never the request's thread, so the creates go on while a read runs), then writes each row's
frame, built from the row as read (id, username, email), to the clients of the filters it
matches, then starts the next read if more pks came meanwhile. One query per batch, however
many rows it holds: ``/bench/queries/`` counts them besides the INSERTs. It waits for no
window: when a read and its frames take less than a create, most batches hold one row (L2:
some 800-900 reads per 1,000 creates on PostgreSQL here). The answer to
``/bench/create/`` waits until the rows it created have been read and written (as LU's waits
for their frames). No server that sends committed state can do less per change than one read
of the changed rows after their commit, so LUr is the floor of such a server (P0): LU's
creates and writes plus that read, and nothing else.

    uvicorn tests.benchmarks.lists_floor:application
    BENCH_LIST_READ=1 uvicorn tests.benchmarks.lists_floor:application   # LUr
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.benchmarks.peers.settings")
os.environ.setdefault("BENCH_SYSTEM", "LU")

from django.core.asgi import get_asgi_application

# django.setup(); serves every other path (Any: its send is typed for Mappings, ours for dicts)
django_application: Any = get_asgi_application()

from tests.benchmarks.peers import queries  # noqa: E402

queries.install()  # the live-lists benchmark's queries per save (bench/queries/)

from asgiref.sync import ThreadSensitiveContext, sync_to_async  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.db import close_old_connections  # noqa: E402

from tests.benchmarks.asgi_floor import PK, Receive, Send, envelope, messages, prefix  # noqa: E402
from tests.benchmarks.peers.list_filters import key_of, l2_username, matching_keys  # noqa: E402
from tests.benchmarks.peers.urls import save_burst  # noqa: E402

T = TypeVar("T")
Row = tuple[int, str, str]  # pk, username, email

#: filter k -> {send: the frame prefix of that client's list operation, up to its requestId}
LISTS: defaultdict[int, dict[Send, str]] = defaultdict(dict)
#: pk -> {send: prefix}: instance clients (the harness's warm-up), as on U
INSTANCES: defaultdict[str, dict[Send, str]] = defaultdict(dict)
#: LUr: each created row is read again after its commit, and its frame built from that read
READ_AFTER_COMMIT: Final = os.environ.get("BENCH_LIST_READ") == "1"


def list_envelope(action: str, pk: int | None, data: dict[str, str] | None) -> str:
    """The list envelope after its ``requestId``, closing the frame (see ``prefix``)."""
    users = {
        "action": action,
        "errors": [],
        "responseStatus": 201,
        "pk": None if pk is None else str(pk),
        "data": data,
    }
    return json.dumps(users, separators=(",", ":"))[1:] + "}}}"


async def write(clients: dict[Send, str] | None, shared: str) -> None:
    """``shared`` to every client in ``clients``, each behind its own prefix: written at
    once by ``gql_observer.uvicorn``'s protocol where it can (the direct frame write P0's
    connections use), else through ``send``."""
    for client_send, head in list((clients or {}).items()):
        direct = getattr(getattr(client_send, "__self__", None), "gql_observer_write_text", None)
        if direct is not None and direct(head + shared):
            continue
        with contextlib.suppress(OSError):  # gone since: uvicorn's ClientDisconnected
            await client_send({"type": "websocket.send", "text": head + shared})


async def deliver(row: Row) -> None:
    """One created row's frame to the clients of every filter it matches."""
    pk, username, email = row
    shared = list_envelope("create", pk, {"id": str(pk), "username": username, "email": email})
    for k in matching_keys(username, email):
        await write(LISTS.get(k), shared)


def read_users(pks: list[int]) -> list[User]:
    """LUr's read after commit: the rows ``pks`` as the database holds them, in one query."""
    return list(User.objects.filter(pk__in=pks))


class Reads:
    """LUr's reads after commit, on the event loop: the pks the view threads hand over are
    collected; whenever no read runs and some are pending, one read of all of them (Django's one
    sync thread), then each row's frame as read, then the next read if more pks came
    meanwhile."""

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.running: asyncio.Task[None] | None = None
        self.read = sync_to_async(read_users, thread_sensitive=True)

    def hand(self, pk: int) -> None:
        """``pk`` was committed (called on the loop): read it with the next read."""
        self.pending.append(pk)
        if self.running is None:
            # An empty context: this runs in the handing view thread's (call_soon_threadsafe
            # copies it), whose ThreadSensitiveContext would put the read on that very thread,
            # behind the create loop. Without one, sync_to_async(thread_sensitive=True) uses
            # Django's one sync thread, as a server reading outside a request does.
            self.running = asyncio.get_running_loop().create_task(
                self._run(), context=contextvars.Context()
            )

    async def _run(self) -> None:
        try:
            while self.pending:
                pks, self.pending = self.pending, []
                for user in await self.read(pks):
                    await deliver((user.pk, user.username, user.email))
        finally:
            self.running = None

    async def drained(self) -> None:
        """Until every pk handed so far is read and written (raises a failed read's error)."""
        while self.running is not None:
            await asyncio.shield(self.running)


READS: Final = Reads() if READ_AFTER_COMMIT else None


# ---------------------------------------------------------------------------------------------
# the sync side: what a Django view does, on the thread Django would give it
# ---------------------------------------------------------------------------------------------
def _as_request(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` between what ``request_started`` and ``request_finished`` do to the
    database connections (``close_old_connections``: with the pool, the connection goes back
    to it)."""
    close_old_connections()
    try:
        return fn(*args)
    finally:
        close_old_connections()


async def in_view_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` as Django's ASGI handler runs a sync view: one thread per request
    (``ThreadSensitiveContext``), ``sync_to_async(thread_sensitive=True)``."""
    async with ThreadSensitiveContext():
        return await sync_to_async(_as_request, thread_sensitive=True)(fn, *args)


def create_rows(rows: list[tuple[str, str]], hand: Callable[[Row], object]) -> dict[str, Any]:
    """create_view's loop: one ``User.objects.create`` (autocommit) per row, each created row
    handed on at once."""
    t_call = time.monotonic()
    for username, email in rows:
        user = User.objects.create(username=username, email=email)
        hand((user.pk, username, email))
    return {"t_call": t_call, "t_return": time.monotonic(), "saved": len(rows)}


async def create(query: dict[str, list[str]]) -> dict[str, Any]:
    """``GET /bench/create/``: the rows of ``create_view``, created in a view thread, each
    written to its subscribers from the event loop as soon as it is committed."""
    marker = query["marker"][0]
    if "email" in query:
        rows = [(f"{marker}-l1", query["email"][0])]
    else:
        filters = int(query["filters"][0])
        rows = [(l2_username(marker, filters, i), "") for i in range(int(query["n"][0]))]
    if READS is not None:
        return await create_and_read(rows, READS)
    loop = asyncio.get_running_loop()
    created: asyncio.Queue[Row | None] = asyncio.Queue()

    def hand(row: Row) -> None:  # on the view thread
        loop.call_soon_threadsafe(created.put_nowait, row)

    work = asyncio.ensure_future(in_view_thread(create_rows, rows, hand))
    # after every row the thread handed on (call_soon_threadsafe keeps their order)
    work.add_done_callback(lambda _: created.put_nowait(None))
    while (row := await created.get()) is not None:
        await deliver(row)
    return await work


async def create_and_read(rows: list[tuple[str, str]], reads: Reads) -> dict[str, Any]:
    """LUr's ``GET /bench/create/``: the same creates, each created pk handed to ``reads``
    (which reads it back after its commit and writes its frame); done once all are written."""
    loop = asyncio.get_running_loop()

    def hand(row: Row) -> None:  # on the view thread
        loop.call_soon_threadsafe(reads.hand, row[0])

    # the thread queued its hands before its result, so every pk is with ``reads`` by now
    result = await in_view_thread(create_rows, rows, hand)
    await reads.drained()
    return result


async def save(query: dict[str, list[str]]) -> dict[str, Any]:
    """``GET /bench/save/`` (the harness's warm-up): the peers' ``save_burst`` in a view
    thread, then each saved pk's frame to its instance clients, as U writes it."""
    pks = [int(p) for p in query["pk"][0].split(",")]
    marker = query["marker"][0]
    result = await in_view_thread(save_burst, pks, marker)
    for pk in pks:
        await write(INSTANCES.get(str(pk)), envelope(str(pk), f"{marker}-{pk}", "update", 200))
    return dict(result)


# ---------------------------------------------------------------------------------------------
# ASGI
# ---------------------------------------------------------------------------------------------
async def _respond(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def http(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    handler = {"/bench/create/": create, "/bench/save/": save}.get(scope["path"])
    if handler is None:
        await django_application(scope, receive, send)
        return
    try:
        body = await handler(parse_qs(scope["query_string"].decode()))
    except Exception as exc:
        await _respond(send, 500, {"error": f"{type(exc).__name__}: {exc}"[:500]})
        return
    await _respond(send, 200, body)


async def websocket(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    joined: dict[Send, str] | None = None  # the clients this one is among
    try:
        async for message in messages(receive, send):
            kind = message.get("type")
            if kind == "subscribe":
                if joined is not None:
                    joined.pop(send, None)
                payload = message["payload"]
                variables = payload.get("variables") or {}
                rid = variables.get("requestId", 1)
                if "filters" in variables:
                    try:
                        k = key_of(variables["filters"])
                    except ValueError as exc:
                        errors = [{"message": str(exc)}]
                        error = {"id": message["id"], "type": "error", "payload": errors}
                        await send({"type": "websocket.send", "text": json.dumps(error)})
                        continue
                    head = prefix(message["id"], "users", rid)
                    first = list_envelope("subscribe_list", None, None)
                    joined = LISTS[k]
                else:
                    found = PK.search(payload.get("query") or "")
                    pk = str(variables.get("pk") or (found.group(1) if found else "1"))
                    head = prefix(message["id"], "user", rid)
                    first = envelope(pk, None, "subscribe_instance", 201)
                    joined = INSTANCES[pk]
                await send({"type": "websocket.send", "text": head + first})
                joined[send] = head
            elif kind == "complete" and joined is not None:
                joined.pop(send, None)
                joined = None
    finally:
        if joined is not None:
            joined.pop(send, None)


async def application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)
