"""Live lists end to end: two demo servers on Redis, saves from shell processes,
a websockets client per server; and the convergence property with random
changes written by another process."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from hypothesis import given
from hypothesis import strategies as st

from tests.support.differential import hunt
from tests.support.lists import SUBSCRIBE_USERS, apply
from tests.support.servers import DemoServer, Servers, run_shell

pytestmark = [pytest.mark.redis, pytest.mark.timeout(300)]

LIST_QUERY = (
    "query ($filters: UserFilter) { users(filters: $filters, pagination: {limit: -1}) {"
    " responseStatus data { id username email } } }"
)


async def subscribe_list(url: str, filters: dict[str, Any]) -> Any:
    """A websockets connection with a ``users`` list subscription, past its 201."""
    ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"])
    await ws.send(json.dumps({"type": "connection_init"}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "connection_ack"}
    payload = {"query": SUBSCRIBE_USERS, "variables": {"filters": filters, "rid": "e2e"}}
    await ws.send(json.dumps({"type": "subscribe", "id": "l", "payload": payload}))
    first = await next_event(ws)
    assert (first["action"], first["responseStatus"], first["pk"]) == ("subscribe_list", 201, None)
    return ws


async def next_event(ws: Any, timeout: float = 20) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert message["type"] == "next", message
    return dict(message["payload"]["data"]["users"])


async def server_list(server: DemoServer, filters: dict[str, Any]) -> dict[str, Any]:
    answer = await asyncio.to_thread(server.post, LIST_QUERY, {"filters": filters})
    assert answer["data"]["users"]["responseStatus"] == 200, answer
    return {row["id"]: row for row in answer["data"]["users"]["data"]}


def shell(env: dict[str, str], code: str) -> None:
    run_shell(env, "from django.contrib.auth.models import User\n" + code)


async def test_shell_saves_reach_list_subscribers_of_two_servers_through_redis(
    redis_env: dict[str, str], servers: Servers
) -> None:
    first = servers.demo(redis_env)
    second = servers.demo(redis_env)
    live = {"username": {"startsWith": "live-"}}
    sockets = [await subscribe_list(first.ws, live), await subscribe_list(second.ws, live)]
    await asyncio.to_thread(shell, redis_env, "u = User.objects.create(username='live-shell')")
    created = [await next_event(ws) for ws in sockets]
    pk = created[0]["pk"]
    for event in created:
        assert event == {
            "action": "create",
            "errors": [],
            "responseStatus": 201,
            "requestId": "e2e",
            "pk": pk,
            "data": {"id": pk, "username": "live-shell", "email": ""},
        }
    # Out of the filter: a delete without data; a row outside it: nothing, as
    # the next frame (a change that must arrive) shows.
    code = (
        f"u = User.objects.get(pk={pk}); u.username = 'dead-shell'; u.save()\n"
        "User.objects.create(username='dead-other')\n"
        "User.objects.get(pk=2).save()\n"  # outside, unchanged
        "u = User.objects.get(pk=3); u.username = 'live-3'; u.save()\n"
    )
    await asyncio.to_thread(shell, redis_env, code)
    for ws in sockets:
        assert await next_event(ws) == {
            "action": "delete",
            "errors": [],
            "responseStatus": 204,
            "requestId": "e2e",
            "pk": pk,
            "data": None,
        }
        entered = await next_event(ws)
        assert (entered["action"], entered["pk"]) == ("create", "3")
        await ws.close()


Step = tuple[str, int, str]
scripts = st.lists(
    st.tuples(
        st.sampled_from(["create", "rename", "delete"]),
        st.integers(0, 9),
        st.sampled_from(["live-", "dead-"]),
    ),
    min_size=5,
    max_size=30,
)


def _script(tag: str, steps: list[Step]) -> str:
    """Python for ``manage.py shell``: ``steps`` on rows tagged ``tag``, each its
    own transaction, then a barrier row that every subscriber must receive last."""
    lines = [f"made = list(User.objects.filter(email='{tag}').values_list('pk', flat=True))"]
    for n, (kind, slot, prefix) in enumerate(steps):
        if kind == "create":
            lines.append(
                f"made.append(User.objects.create(username='{prefix}{tag}-{n}', email='{tag}').pk)"
            )
            continue
        target = f"User.objects.filter(pk=made[{slot} % len(made)]).first() if made else None"
        lines.append(f"u = {target}")
        if kind == "rename":
            lines.append(f"if u: u.username = '{prefix}{tag}-{n}'; u.save()")
        else:
            lines.append("if u: u.delete()")
    lines.append(f"User.objects.create(username='live-{tag}-barrier', email='{tag}')")
    return "\n".join(lines)


@pytest.fixture
def redis_demo(redis_env: dict[str, str], servers: Servers) -> tuple[dict[str, str], DemoServer]:
    return redis_env, servers.demo(redis_env)


examples = iter(range(10_000))


@hunt(3, "GQLOBS_E2E_LISTS_EXAMPLES")
@given(steps=scripts)
async def test_random_changes_from_another_process_converge_on_the_final_query(
    redis_demo: tuple[dict[str, str], DemoServer], steps: list[Step]
) -> None:
    env, server = redis_demo
    tag = f"t{next(examples)}"
    mine = {"email": {"exact": tag}, "username": {"startsWith": "live-"}}
    ws = await subscribe_list(server.ws, mine)
    try:
        writer = asyncio.ensure_future(asyncio.to_thread(shell, env, _script(tag, steps)))
        held = await server_list(server, mine)  # read while the other process writes
        await writer
        while True:
            event = await next_event(ws)
            apply(held, event)
            if (event["data"] or {}).get("username") == f"live-{tag}-barrier":
                break
        assert held == await server_list(server, mine)
    finally:
        await ws.close()
