"""A burst of changes larger than channels_redis's channel capacity reaches
every subscriber (real Redis, real publisher thread, real hub)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import close_old_connections

import gql_observer
from gql_observer.testing import GraphQLTransportWSCommunicator
from tests.support.users import subscribe_user

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

BURST = 150  # channels_redis's default capacity is 100 messages per channel


def _save_all(pks: list[int]) -> None:
    try:
        for pk in pks:
            user = User.objects.get(pk=pk)
            user.username = f"burst {pk}"
            user.save()  # one transaction, one event, one group each
        assert gql_observer.flush(10), "the publisher did not send everything"
    finally:
        close_old_connections()


async def test_a_burst_larger_than_the_layer_capacity_reaches_every_subscriber(
    application: Any, redis_layer: str, observer_settings: Callable[..., Any]
) -> None:
    # No probes: a lost probe would resynchronise everyone and hide a loss.
    observer_settings(
        HUB_PROBE_INTERVAL=None, SUBSCRIBE_RATE=10_000, MAX_OPERATIONS_PER_CONNECTION=BURST
    )
    pks = [
        u.pk
        for u in await User.objects.abulk_create([User(username=f"user {n}") for n in range(BURST)])
    ]
    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    await client.init()
    ops = {await subscribe_user(client, pk): pk for pk in pks}

    # The server's loop is busy while the writer commits the whole burst: every
    # event waits in the hub's channel in Redis.
    writer = threading.Thread(target=_save_all, args=(pks,))
    writer.start()
    writer.join()

    seen: dict[str, str] = {}
    while len(seen) < BURST:
        message = await client.receive(timeout=10)
        assert message["type"] == "next", message
        envelope = message["payload"]["data"]["user"]
        assert envelope["action"] == "update" and not envelope.get("resync"), envelope
        seen[message["id"]] = envelope["data"]["username"]
    assert seen == {op: f"burst {pk}" for op, pk in ops.items()}
    await client.disconnect()


async def test_a_probe_that_never_came_makes_the_hub_resynchronise(
    application: Any, redis_layer: str, observer_settings: Callable[..., Any]
) -> None:
    """A probe the layer took but never delivered, while a later one came,
    means the hub's channel overflowed: every subscriber re-reads."""
    from gql_observer.changes.events import PROBE
    from tests.support import runtime as live

    observer_settings(HUB_PROBE_INTERVAL=0.2)
    await User.objects.acreate(pk=1, username="before")
    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    await client.init()
    op = await subscribe_user(client, 1)
    hub = live.started_hub()
    assert hub is not None
    for _ in range(100):  # the hub's own probes go round
        if hub.watchdog.probes_seen >= 2:
            break
        await asyncio.sleep(0.05)
    assert hub.stats()["overflows"] == 0

    # Changed while the hub's channel was full: the event was dropped (an
    # update() sends none)...
    await User.objects.filter(pk=1).aupdate(username="dropped")
    # ...and so was a probe; the next one comes through the real layer.
    skipped = hub.watchdog.probes_sent + 2
    await hub.layer.group_send(hub.watchdog.group, {"type": PROBE, "nonce": skipped})

    message = await client.receive(timeout=5)
    envelope = message["payload"]["data"]["user"]
    assert (message["id"], envelope["action"]) == (op, "update")
    assert envelope["data"]["username"] == "dropped"  # re-read: the resync
    assert hub.stats()["overflows"] == 1
    await client.disconnect()
