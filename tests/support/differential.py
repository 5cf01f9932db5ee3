"""What the differential tests of sharing (instances and live lists) have in
common: who subscribes (:class:`Subscriber`), how they connect, the clock the
viewer checks read, ``requestId``\\s of every JSON kind and how to write them
as GraphQL literals."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from gql_observer import issue_token
from gql_observer.testing import GraphQLTransportWSCommunicator
from tests.support.users import login_session

__all__ = [
    "REQUEST_IDS",
    "Clock",
    "Subscriber",
    "connect",
    "final",
    "frame",
    "hunt",
    "literal",
    "serve",
]


class Clock:
    """``time`` as the library's viewer checks read it, moved on by "tokens expire"."""

    offset = 0.0

    @classmethod
    def time(cls) -> float:
        return time.time() + cls.offset


@dataclass(frozen=True)
class Subscriber:
    """One subscriber of an example: who (``anonymous``, ``u<pk>`` by token,
    ``session u1``), its ``connection_params`` locale, its document and
    variables, and the ``word`` of its ``connection_params`` (read by the
    context hook of ``tests.support.context``)."""

    viewer: str
    locale: str | None
    document: str
    variables: dict[str, Any]
    word: str | None = None


def literal(value: Any) -> str:
    """``value`` as a GraphQL literal (a JSON scalar's, or an input object's)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


#: ``requestId``\\s of every JSON kind a client may send.
REQUEST_IDS = st.one_of(
    st.integers(min_value=0, max_value=2**53),
    st.text(alphabet="abcxyz019 é", max_size=8),
    st.none(),
    st.dictionaries(
        st.sampled_from(["a", "b", "t"]), st.integers(-5, 5) | st.booleans(), max_size=2
    ),
)


async def connect(application: Any, subscriber: Subscriber) -> GraphQLTransportWSCommunicator:
    """A connection of ``subscriber``'s viewer, with its ``connection_params``."""
    headers = []
    params: dict[str, Any] = {}
    if subscriber.locale:
        params["locale"] = subscriber.locale
    if subscriber.word is not None:
        params["word"] = subscriber.word
    if subscriber.viewer == "session u1":
        key = await login_session(await User.objects.aget(pk=1))
        headers.append((b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={key}".encode()))
    elif subscriber.viewer != "anonymous":
        user = await User.objects.aget(pk=int(subscriber.viewer[1:]))
        params["token"] = await database_sync_to_async(issue_token)(user)
    client = GraphQLTransportWSCommunicator(application, headers=headers)
    await client.connect()
    await client.init(params or None)
    return client


async def frame(client: GraphQLTransportWSCommunicator) -> str:
    """The next frame the server wrote to ``client``, as it was written."""
    output = await client.communicator.receive_output(5)
    assert output["type"] == "websocket.send", output
    text: str = output["text"]
    return text


def hunt(examples: int, variable: str = "GQLOBS_DIFFERENTIAL_EXAMPLES") -> Any:
    """Hypothesis' settings of a hunt through the real app: ``examples`` by
    default, more for a longer hunt through ``variable`` (e.g. 500); no
    deadline and no example database (each example is a run of its own)."""
    return hypothesis_settings(
        max_examples=int(os.environ.get(variable, str(examples))),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def final(text: str) -> bool:
    """Whether a frame ends its subscription: a ``complete``, a delete or a
    refusal (the documents select ``action`` and ``responseStatus`` as ``act``
    and ``st``)."""
    message = json.loads(text)
    if message["type"] != "next":
        return True
    (envelope,) = message["payload"]["data"].values()
    return envelope["act"] == "delete" or envelope["st"] not in (200, 201)


async def serve(
    application: Any,
    subscribers: list[Subscriber],
    steps: list[Any],
    step: Callable[[Any, int], Awaitable[None]],
) -> list[list[str]]:
    """Every frame each instance subscriber received, in order: all subscribe
    (one frame each, and its ``complete`` when final), then after each of
    ``steps`` (``await step(change, number)``) one frame of every subscriber
    still live."""
    clients = [await connect(application, s) for s in subscribers]
    frames: list[list[str]] = [[] for _ in clients]
    live = []
    for client, subscriber, got in zip(clients, subscribers, frames, strict=True):
        await client.subscribe(subscriber.document, subscriber.variables, operation_name="Watch")
        got.append(await frame(client))
        if final(got[-1]):
            got.append(await frame(client))  # its complete
        else:
            live.append((client, got))
    for number, change in enumerate(steps):
        if not live:
            break
        await step(change, number)
        still = []
        for client, got in live:
            got.append(await frame(client))
            if final(got[-1]):
                got.append(await frame(client))
            else:
                still.append((client, got))
        live = still
    for client in clients:
        await client.disconnect()
    return frames
