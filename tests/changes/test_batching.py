"""A burst of saves to many instances of one model goes out as a few channel-layer
messages to the model's group, and each hub hands every change to its own
subscribers only (real Redis, real publisher thread, real hub)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import close_old_connections

import gql_observer
from gql_observer.changes.groups import model_group
from gql_observer.changes.outbox import outbox
from gql_observer.testing import GraphQLTransportWSCommunicator, settle
from tests.support import runtime as live
from tests.support.users import subscribe_user
from tests.support.waiting import wait_until

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


async def test_a_burst_to_many_instances_of_a_model_is_sent_as_a_few_messages(
    application: Any, redis_layer: str, observer_settings: Callable[..., Any]
) -> None:
    # A window far longer than the burst: the first save goes out at once, the
    # rest together. No probes: a resync would hide a lost change.
    configured = observer_settings(
        HUB_PROBE_INTERVAL=None, PUBLISH_BATCH_WINDOW=3.0, SUBSCRIBE_RATE=10_000
    )
    users = await User.objects.abulk_create([User(username=f"user {n}") for n in range(BURST + 1)])
    pks, bystander = [u.pk for u in users[:BURST]], users[BURST].pk
    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    await client.init()
    ops = {await subscribe_user(client, pk, rid=pk): pk for pk in pks}
    other = await subscribe_user(client, bystander, rid="bystander")
    hub = live.started_hub()
    assert hub is not None
    family = model_group(configured.get("GROUP_PREFIX", "gqlobs"), "auth.user")
    assert family in hub.joined

    sent = live.published()
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
    assert 2 <= live.published() - sent <= 3, live.published() - sent

    # The bystander still gets its own change, as the next frame: no subscriber
    # got a second frame of the burst.
    await settle()
    await asyncio.to_thread(_save_all, [bystander], "later")
    message = await client.receive(timeout=10)
    assert message["id"] == other, message
    assert message["payload"]["data"]["user"]["data"]["username"] == f"later {bystander}"

    await client.disconnect()
    # The model's group is left with its last subscriber.
    await wait_until(lambda: family not in hub.joined, 5, "the hub left the model's group")


def _save_steadily(pks: list[int], prefix: str, seconds: float, gap: float) -> int:
    """Save ``pks`` round-robin, one save every ``gap`` s, for ``seconds``; the saves made."""
    try:
        users = [User.objects.get(pk=pk) for pk in pks]
        end = time.monotonic() + seconds
        count = 0
        while time.monotonic() < end:
            user = users[count % len(users)]
            user.username = f"{prefix} {user.pk} {count}"
            user.save()
            count += 1
            time.sleep(gap)
        assert gql_observer.flush(10), "the publisher did not send everything"
        return count
    finally:
        close_old_connections()


async def test_the_window_grows_while_changes_keep_coming(
    application: Any, redis_layer: str, observer_settings: Callable[..., Any]
) -> None:
    # Saves four times per window for 1.2 s: with a fixed 50 ms window that is
    # at least 20 messages; a window that doubles while changes keep coming
    # (50, 100, 200, 400 ms) sends a handful.
    window = 0.05
    observer_settings(HUB_PROBE_INTERVAL=None, PUBLISH_BATCH_WINDOW=window, SUBSCRIBE_RATE=10_000)
    users = await User.objects.abulk_create([User(username=f"steady {n}") for n in range(10)])
    pks = [u.pk for u in users]
    client = GraphQLTransportWSCommunicator(application)
    await client.connect()
    await client.init()
    ops = {await subscribe_user(client, pk, rid=pk): pk for pk in pks}

    sent = live.published()
    saves = await asyncio.to_thread(_save_steadily, pks, "steady", 1.2, window / 4)
    messages = live.published() - sent
    assert saves >= 40, saves  # the writer kept the windows busy (else the test proves nothing)
    assert messages <= 10, (messages, saves)
    publisher = outbox.publisher
    assert publisher is not None
    assert publisher.window > window  # still in the burst's longer window

    # Nothing is lost to the longer windows: every subscriber ends on its row's committed state.
    committed = {u.pk: u.username async for u in User.objects.filter(pk__in=pks)}
    last: dict[str, str] = {}
    while {ops[op]: name for op, name in last.items()} != committed:
        message = await client.receive(timeout=10)
        assert message["type"] == "next", message
        last[message["id"]] = message["payload"]["data"]["user"]["data"]["username"]

    # After a quiet spell the window is back to its setting: one change, one message, at once.
    await wait_until(lambda: publisher.window == window, 5, "the window is back to its setting")
    sent = live.published()
    await asyncio.to_thread(_save_all, [pks[0]], "quiet")
    assert live.published() - sent == 1
    # A row's committed state may still arrive again (a later window re-read it);
    # nothing else may come before the quiet save.
    while True:
        message = await client.receive(timeout=10)
        assert message["type"] == "next", message
        username = message["payload"]["data"]["user"]["data"]["username"]
        if username == f"quiet {pks[0]}":
            break
        assert username == committed[ops[message["id"]]], message
    await client.disconnect()
