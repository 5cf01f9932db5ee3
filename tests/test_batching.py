"""A burst of saves to many instances of one model goes out as a few channel-layer
messages to the model's group, and each hub hands every change to its own
subscribers only (real Redis, real publisher thread, real hub)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import close_old_connections

import gql_observer
from gql_observer import publish
from gql_observer.groups import model_group
from gql_observer.hub import current_hub
from gql_observer.testing import GraphQLTransportWSCommunicator

from .conftest import subscribe_user

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

BURST = 40


def _save_all(pks: list[int], prefix: str) -> None:
    try:
        for pk in pks:
            user = User.objects.get(pk=pk)
            user.username = f"{prefix} {pk}"
            user.save()  # one transaction, one event each
        assert gql_observer.flush(10), "the publisher did not send everything"
    finally:
        close_old_connections()


def _sent() -> int:
    current = publish._thread_publisher
    return 0 if current is None else current.publisher.sent


async def test_a_burst_to_many_instances_of_a_model_is_sent_as_a_few_messages(
    application: Any, redis_layer: str, settings: Any
) -> None:
    # A window far longer than the burst: the first save goes out at once, the
    # rest together. No probes: a resync would hide a lost change.
    settings.GQL_OBSERVER = {
        **settings.GQL_OBSERVER,
        "HUB_PROBE_INTERVAL": None,
        "PUBLISH_BATCH_WINDOW": 3.0,
        "SUBSCRIBE_RATE": 10_000,
    }
    users = await User.objects.abulk_create([User(username=f"user {n}") for n in range(BURST + 1)])
    pks, bystander = [u.pk for u in users[:BURST]], users[BURST].pk
    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    await client.init()
    ops = {await subscribe_user(client, pk, rid=pk): pk for pk in pks}
    other = await subscribe_user(client, bystander, rid="bystander")
    hub = current_hub()
    assert hub is not None
    family = model_group(settings.GQL_OBSERVER.get("GROUP_PREFIX", "gqlobs"), "auth.user")
    assert family in hub.joined

    sent = _sent()
    writer = threading.Thread(target=_save_all, args=(pks, "burst"))
    writer.start()
    seen: dict[str, str] = {}
    while len(seen) < BURST:
        message = await client.receive(timeout=10)
        assert message["type"] == "next", message
        assert message["id"] != other, message  # the bystander's instance did not change
        envelope = message["payload"]["data"]["user"]
        assert envelope["action"] == "update", envelope
        seen[message["id"]] = envelope["data"]["username"]
    writer.join()
    # Every subscriber ends on its own instance's committed state ...
    assert seen == {op: f"burst {pk}" for op, pk in ops.items()}
    # ... from a handful of messages: the first save alone, the rest batched.
    assert 2 <= _sent() - sent <= 3, _sent() - sent
    assert await client.nothing(0.3)

    # The bystander still gets its own change.
    await asyncio.to_thread(_save_all, [bystander], "later")
    message = await client.receive(timeout=10)
    assert message["id"] == other
    assert message["payload"]["data"]["user"]["data"]["username"] == f"later {bystander}"

    await client.disconnect()
    # The model's group is left with its last subscriber.
    await _until(lambda: family not in hub.joined)


async def _until(condition: Any, tries: int = 500) -> None:
    """Poll ``condition`` (every 10 ms, at most ``tries`` times)."""
    for _ in range(tries):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 5 s")
