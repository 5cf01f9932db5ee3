"""End to end: nothing lost, nothing stuck. A Redis of the test's own stops and
comes back under a stream of saves; subscribers keep their sockets and end with
the committed state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from typing import Any

import pytest
import redis
import websockets

from tests.support.servers import DemoServer, RedisServer, Servers, run_shell
from tests.support.waiting import wait_until
from tests.support.ws_clients import open_subscription

pytestmark = [pytest.mark.redis, pytest.mark.timeout(180)]

SUBSCRIPTION = """subscription ($pk: ID!) {
  user(pk: $pk) { action responseStatus resync data { id username } }
}"""
RENAME = "mutation ($pk: ID!, $name: String!) { updateUser(pk: $pk, username: $name) { id } }"


class Watcher:
    """One raw graphql-transport-ws subscription whose envelopes are read in the
    background; ``names`` are the usernames delivered, in order."""

    def __init__(self, ws: Any, pk: int) -> None:
        self.ws = ws
        self.pk = pk
        self.names: list[str] = []
        self.actions: list[str] = []
        #: Envelopes flagged ``resync: true``.
        self.resyncs = 0
        self.closed: BaseException | None = None
        self.task = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url: str, pk: int) -> Watcher:
        return cls(await open_subscription(url, SUBSCRIPTION, {"pk": pk}), pk)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if message["type"] == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                    continue
                assert message["type"] == "next", message
                envelope = message["payload"]["data"]["user"]
                self.actions.append(envelope["action"])
                self.resyncs += envelope["resync"]
                self.names.append(envelope["data"]["username"])
        except websockets.ConnectionClosed as error:
            self.closed = error

    @property
    def last(self) -> str | None:
        return self.names[-1] if self.names else None

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.ws.close()


def rename(server: DemoServer, pk: int, name: str) -> float:
    """Rename a user through the server's mutation; the seconds it took."""
    began = time.monotonic()
    answer = server.post(RENAME, {"pk": pk, "name": name})
    assert answer == {"data": {"updateUser": {"id": str(pk)}}}, answer
    return time.monotonic() - began


@pytest.mark.parametrize("layer", ["core", "pubsub"])
async def test_subscribers_get_the_committed_state_after_redis_stops_and_comes_back(
    demo_env: dict[str, str],
    servers: Servers,
    own_redis: RedisServer,
    layer: str,
) -> None:
    env = {
        **demo_env,
        "REDIS_URL": own_redis.url,
        "REDIS_LAYER": layer,
        "CHANNELS_PREFIX": f"outage{os.getpid()}",
        # The server's own mutations through Redis too, as another process's saves
        # would come: what was committed during the outage must arrive by itself.
        "DELIVER_IN_PROCESS": "0",
    }
    # RedisPubSubChannelLayer's receive never fails: only a probe that cannot
    # be sent reveals the outage, so it lasts longer than two probe intervals.
    outage = 3.0 if layer == "core" else 7.0
    server = servers.demo(env)
    watchers = [
        await Watcher.open(server.ws, 1),
        await Watcher.open(server.ws, 1),
        await Watcher.open(server.ws, 2),
    ]
    committed: dict[int, str] = {}
    durations: list[float] = []
    phase = "before"

    async def save(n: int) -> None:
        pk = 1 + n % 2
        name = f"{phase}-{n}"
        durations.append(await asyncio.to_thread(rename, server, pk, name))
        committed[pk] = name

    n = 0
    for _ in range(10):
        await save(n := n + 1)
    await wait_until(
        lambda: all(w.last == committed[w.pk] for w in watchers), 10, "delivered before"
    )

    own_redis.stop()
    phase = "during"
    outage_began = time.monotonic()
    # Saves go on while Redis is away, for longer than the publish timeout's
    # share of a request would allow if publishing blocked the writer.
    while time.monotonic() - outage_began < outage:
        await save(n := n + 1)
    saves_during = n - 10
    assert saves_during >= 4, saves_during

    own_redis.start()
    # No save after the restart: what was committed during the outage must
    # arrive by itself (the hub re-joins and resyncs; the publisher retries).
    took = await wait_until(
        lambda: all(w.last == committed[w.pk] for w in watchers),
        15,
        f"every subscriber holds the committed state; committed={committed}, "
        f"last={[w.last for w in watchers]}",
    )
    # Later saves flow as usual again.
    phase = "later"
    for _ in range(4):
        await save(n := n + 1)
    await wait_until(lambda: all(w.last == committed[w.pk] for w in watchers), 10, "later")

    assert all(w.closed is None for w in watchers), [w.closed for w in watchers]
    assert set().union(*(w.actions for w in watchers)) == {"update"}
    # No writer waited on the broker: every request answered quickly.
    assert max(durations) < 2.0, sorted(durations)[-5:]
    # The hub noticed and resynchronised: at once on RedisChannelLayer (its
    # receive fails), at the first probe back on the pub/sub layer.
    await wait_until(
        lambda: "Channel layer back" in server.log.read_text(), 10, "the hub's recovery log"
    )
    if layer == "pubsub":
        await wait_until(lambda: all(w.resyncs for w in watchers), 10, "a resync for everyone")
    log = server.log.read_text()
    assert "Exception in ASGI application" not in log, log
    for watcher in watchers:
        await watcher.close()
    assert server.stop() == 0
    print(
        f"\nsaves: {len(durations)}, {saves_during} while Redis was down; max request "
        f"{max(durations) * 1000:.0f} ms; converged {took:.2f}s after Redis returned"
    )


async def test_subscribers_recover_when_redis_forgets_the_group_memberships(
    demo_env: dict[str, str], servers: Servers, own_redis: RedisServer
) -> None:
    # FLUSHALL is a restart without a broken connection: no receive fails,
    # only the hub's probe can notice that nothing reaches it any more.
    env = {
        **demo_env,
        "REDIS_URL": own_redis.url,
        "CHANNELS_PREFIX": f"flush{os.getpid()}",
        # The server's own mutations through Redis too, as another process's saves
        # would come: only the lost memberships stand between them and the subscriber.
        "DELIVER_IN_PROCESS": "0",
    }
    server = servers.demo(env)
    watcher = await Watcher.open(server.ws, 1)
    await asyncio.to_thread(rename, server, 1, "before flush")
    await wait_until(lambda: watcher.last == "before flush", 10, "delivered before")
    connection = redis.Redis.from_url(own_redis.url)
    connection.flushall()
    connection.close()
    await asyncio.to_thread(rename, server, 1, "after flush")
    # Two probe intervals (3 s each by default) bound the detection.
    took = await wait_until(lambda: watcher.last == "after flush", 10, "resynced after flush")
    assert watcher.closed is None
    # The subscriber is told: the state came from a resync, not from its event.
    assert watcher.resyncs >= 1, watcher.actions
    log = server.log.read_text()
    assert "did not deliver this process's probe" in log, log
    await watcher.close()
    assert server.stop() == 0
    print(f"\nresynced {took:.2f}s after the memberships were lost")


#: Seconds of random saves in the soak test (the issue asks for 60; GQLOBS_SOAK_SECONDS).
SOAK_SECONDS = float(os.environ.get("GQLOBS_SOAK_SECONDS", "60"))
RANDOM_SAVES = """
import random, time
from django.contrib.auth.models import User
rng = random.Random(5)
seq = 0
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    seq += 1
    user = User.objects.get(pk=rng.choice((1, 2, 3)))
    user.username = f"w-{{seq:07d}}"
    user.save(update_fields=["username"])
print(seq)
"""


def _seq(name: str) -> int:
    return int(name[2:]) if name.startswith("w-") else -1


@pytest.mark.timeout(SOAK_SECONDS + 120)
async def test_two_servers_deliver_random_saves_from_a_shell_in_order_and_end_equal_to_the_db(
    demo_env: dict[str, str], servers: Servers, own_redis: RedisServer
) -> None:
    env = {**demo_env, "REDIS_URL": own_redis.url, "CHANNELS_PREFIX": f"soak{os.getpid()}"}
    first = servers.demo(env)
    second = servers.demo(env)
    watchers = [
        await Watcher.open(server.ws, pk)
        for server in (first, second)
        for pk in (1, 2, 3)
        for _ in range(2)
    ]
    shell = await asyncio.to_thread(
        run_shell, env, RANDOM_SAVES.format(seconds=SOAK_SECONDS), SOAK_SECONDS + 60
    )
    saves = int(shell.stdout.split()[-1])
    committed = {
        pk: first.post("query ($pk: ID!) { user(pk: $pk) { data { username } } }", {"pk": pk})[
            "data"
        ]["user"]["data"]["username"]
        for pk in (1, 2, 3)
    }
    await wait_until(
        lambda: all(w.last == committed[w.pk] for w in watchers),
        15,
        f"every subscriber ends with the database's state {committed}: "
        f"{[(w.pk, w.last) for w in watchers]}",
    )
    for watcher in watchers:
        seqs = [_seq(name) for name in watcher.names]
        # A subscriber never gets an older state after a newer one (the same
        # state may come twice: an event whose commit an earlier read already saw).
        assert seqs == sorted(seqs), seqs
        assert watcher.closed is None
    delivered = sum(len(w.names) for w in watchers)
    repeated = sum(len(w.names) - len(set(w.names)) for w in watchers)
    for watcher in watchers:
        await watcher.close()
    for server in (first, second):
        assert server.stop() == 0
    print(
        f"\n{saves} saves in {SOAK_SECONDS:.0f}s from a shell; {len(watchers)} subscribers on "
        f"two servers received {delivered} updates ({repeated} repeating the state before), "
        f"each in commit order, each ending equal to the database"
    )
