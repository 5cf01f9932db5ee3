"""A list subscriber served by the transport, while its socket pushes back: the
changes that come meanwhile wait, the latest per row, merged as the strawberry
path merges them; a final frame is never dropped and comes after them."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import User
from graphql import GraphQLError

from gql_observer.graphql import analysis, runtime
from gql_observer.graphql.list_member import ListSubscriber
from gql_observer.graphql.list_watch import REFUSED
from gql_observer.graphql.listing import Change
from gql_observer.graphql.viewers import Viewer
from tests.support.lists import SUBSCRIBE_USERS
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


class Socket:
    """A socket that takes frames only while its gate is open (the member's side
    of a connection, as :class:`gql_observer.graphql.member.Socket` says it)."""

    send_timeout = 0.0
    root_value = None
    scope: dict[str, Any] = {}
    next_type = "next"

    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.gate: asyncio.Future[None] | None = None
        self.finished: list[Any] = []

    def context_of(self, operation: Any) -> Any:
        return {}

    def is_open(self, operation: Any) -> bool:
        return not self.finished

    async def write_frame(self, frame: str) -> None:
        if self.gate is not None:
            await self.gate
        self.frames.append(json.loads(frame)["payload"]["data"]["users"])

    def close_slow_client(self) -> None:
        raise AssertionError("no send timeout here")

    async def finish(self, operation: Any, errors: list[GraphQLError] | None) -> None:
        self.finished.append(errors)


def _subscriber(socket: Socket) -> ListSubscriber:
    from schema_examples.schema import schema

    found = analysis.analyze(schema, SUBSCRIBE_USERS, None)
    assert found is not None and found.listing
    variables = {"filters": {"username": {"startsWith": "s-"}}, "rid": "r"}
    binding = found.bind(variables)
    assert binding is not None
    operation = SimpleNamespace(id="1", variables=variables)
    viewer = Viewer(None, None, None)
    return ListSubscriber(socket, operation, found, binding, viewer)


def _user(pk: int, name: str) -> User:
    return User(pk=pk, username=name, email=f"{pk}@x.org")


def _seen(frames: list[Any]) -> list[tuple[str, Any, Any]]:
    return [(f["action"], f["pk"], (f["data"] or {}).get("username")) for f in frames]


async def test_changes_wait_merged_per_row_and_the_final_frame_comes_last() -> None:
    socket = Socket()
    subscriber = _subscriber(socket)
    subscriber.runtime = here = runtime.current()
    assert subscriber.activate(
        '{"data":{"users":{"action":"subscribe_list","pk":null,"data":null}}}'
    )
    socket.gate = asyncio.get_running_loop().create_future()
    one = [subscriber]
    await subscriber.fan_out(here, [(one, [Change("create", "1", _user(1, "s-a"))])])
    assert subscriber.busy  # the socket pushes back on that frame
    await subscriber.fan_out(here, [(one, [Change("update", "1", _user(1, "s-b"))])])
    await subscriber.fan_out(here, [(one, [Change("update", "1", _user(1, "s-c"))])])
    await subscriber.fan_out(here, [(one, [Change("create", "2", _user(2, "s-x"))])])
    await subscriber.fan_out(here, [(one, [Change("delete", "2", None)])])  # never seen: nothing
    await subscriber.fan_out(here, [(one, [Change("delete", "3", None)])])
    await subscriber.fan_out(here, [(one, [Change("create", "3", _user(3, "s-back"))])])
    subscriber.end(REFUSED)
    await wait_until(lambda: subscriber.closing, 5, "the 401 waits behind the changes")
    # Nothing newer replaces the final frame, nothing comes after it.
    await subscriber.fan_out(here, [(one, [Change("update", "4", _user(4, "s-late"))])])
    socket.gate.set_result(None)
    await wait_until(lambda: bool(socket.finished), 5, "the subscription completed")
    assert _seen(socket.frames) == [
        ("subscribe_list", None, None),
        ("create", "1", "s-a"),
        ("update", "1", "s-c"),  # the latest of the row
        ("update", "3", "s-back"),  # left and came back
        ("update", None, None),  # 401: no longer who they were
    ]
    assert socket.frames[-1]["responseStatus"] == 401
    assert all(frame["requestId"] == "r" for frame in socket.frames[1:])
    assert socket.finished == [None]  # then complete
