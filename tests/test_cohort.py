"""Work per change: one read per permission context, one execution per distinct
operation, one channel-layer message per process — for 1 and for 50 subscribers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from gql_observer import cohort, schema, visibility
from gql_observer import hub as hub_module
from gql_observer.testing import GraphQLTransportWSCommunicator

from .conftest import SUBSCRIBE_USER, save_user, wait_until
from .test_batching import _sent

pytestmark = pytest.mark.django_db(transaction=True)


class Counts:
    reads = 0
    executions = 0


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Counts:
    """Count (without replacing) the reads of instances and the results a
    cohort executes and encodes."""
    seen = Counts()
    real_read, real_publish = schema.read, cohort.Cohort._publish

    async def counting_read(*args: Any, **kwargs: Any) -> Any:
        seen.reads += 1
        return await real_read(*args, **kwargs)

    def counting_publish(self: cohort.Cohort, *args: Any) -> None:
        seen.executions += 1
        real_publish(self, *args)

    monkeypatch.setattr(schema, "read", counting_read)
    monkeypatch.setattr(cohort.Cohort, "_publish", counting_publish)
    return seen


async def clients(application: Any, n: int) -> list[GraphQLTransportWSCommunicator]:
    connected = []
    for _ in range(n):
        client = GraphQLTransportWSCommunicator(application)
        await client.connect()
        await client.init()
        connected.append(client)
    return connected


@pytest.mark.parametrize("n", [1, 50])
async def test_one_save_costs_one_read_one_execution_and_one_layer_message(
    application: Any, users: list[User], counts: Counts, n: int
) -> None:
    subscribers = await clients(application, n)
    frames = []
    for client in subscribers:
        op = await client.subscribe(SUBSCRIBE_USER, {"pk": 1, "rid": "same"})
        assert (await client.next(op))["user"]["responseStatus"] == 201
    assert len(cohort.cohorts) == 1
    hub = hub_module.get_hub()
    assert set(hub.layer.groups["gqlobs.auth.user.1"]) == {hub.channel}
    reads, executions = counts.reads, counts.executions
    await save_user(1, username="once")
    for client in subscribers:
        message = await client.receive()
        assert message["payload"]["data"]["user"]["data"]["username"] == "once"
        frames.append(message["payload"])
    assert counts.reads - reads == 1
    assert counts.executions - executions == 1
    # Every subscriber got the same bytes, only the operation id differs.
    assert all(frame == frames[0] for frame in frames)
    for client in subscribers:
        await client.disconnect()


@pytest.mark.redis
@pytest.mark.parametrize("n", [1, 50])
async def test_on_redis_a_save_in_the_server_process_is_handed_over_directly_once(
    application: Any, users: list[User], counts: Counts, n: int, redis_layer: str, settings: Any
) -> None:
    settings.GQL_OBSERVER = {**settings.GQL_OBSERVER, "DELIVER_IN_PROCESS": True}
    subscribers = await clients(application, n)
    for client in subscribers:
        op = await client.subscribe(SUBSCRIBE_USER, {"pk": 1, "rid": "same"})
        assert (await client.next(op))["user"]["responseStatus"] == 201
    hub = hub_module.get_hub()
    before, reads, executions = hub.stats(), counts.reads, counts.executions
    sent = _sent()
    for done, name in enumerate(("once", "twice"), start=1):
        await save_user(1, username=name)
        for client in subscribers:
            message = await client.receive()
            assert message["payload"]["data"]["user"]["data"]["username"] == name
        # The change also went to Redis once, for the other processes; its copy came
        # back to this process's hub, which skipped it. (Waited for before the next
        # save: a save while the first is still queued would be merged into it.)
        await wait_until(
            lambda done=done: hub.stats()["echoes_skipped"] - before["echoes_skipped"] == done,
            10,
            f"change {done} came back through Redis",
        )
    assert hub.stats()["delivered_here"] - before["delivered_here"] == 2
    assert _sent() - sent == 2
    assert counts.reads - reads == 2
    assert counts.executions - executions == 2
    for client in subscribers:
        assert await client.nothing(0.05)  # no second frame of either change
        await client.disconnect()


async def test_distinct_operations_get_one_execution_each(
    application: Any, users: list[User], counts: Counts
) -> None:
    subscribers = await clients(application, 10)
    for n, client in enumerate(subscribers):
        op = await client.subscribe(SUBSCRIBE_USER, {"pk": 1, "rid": n % 5})
        assert (await client.next(op))["user"]["requestId"] == n % 5
    assert len(cohort.cohorts) == 5
    reads, executions = counts.reads, counts.executions
    await save_user(1, username="five ways")
    for n, client in enumerate(subscribers):
        user = (await client.next("1"))["user"]
        assert (user["requestId"], user["data"]["username"]) == (n % 5, "five ways")
    assert counts.executions - executions == 5
    # Five executions, but one read: they share a permission context.
    assert counts.reads - reads == 1
    for client in subscribers:
        await client.disconnect()


async def test_a_late_member_gets_its_own_201_then_the_changes(
    application: Any, users: list[User]
) -> None:
    first, late = await clients(application, 2)
    op = await first.subscribe(SUBSCRIBE_USER, {"pk": 1, "rid": 1})
    await first.next(op)
    op_late = await late.subscribe(SUBSCRIBE_USER, {"pk": 1, "rid": 1})
    assert (await late.next(op_late))["user"]["action"] == "subscribe_instance"
    await save_user(1, username="both")
    assert (await first.next(op))["user"]["data"]["username"] == "both"
    assert (await late.next(op_late))["user"]["data"]["username"] == "both"
    await first.disconnect()
    await save_user(1, username="late only")
    assert (await late.next(op_late))["user"]["data"]["username"] == "late only"
    await late.disconnect()


async def test_the_last_member_leaving_ends_the_cohort_and_its_group(
    application: Any, users: list[User]
) -> None:
    (client,) = await clients(application, 1)
    op = await client.subscribe(SUBSCRIBE_USER, {"pk": 1})
    await client.next(op)
    assert len(cohort.cohorts) == 1
    await client.complete(op)
    hub = hub_module.get_hub()
    await save_user(1, username="nobody")
    assert await client.nothing(0.3)
    assert cohort.cohorts == {}
    assert hub.groups == {}
    await client.disconnect()


async def test_a_delete_completes_every_member(application: Any, users: list[User]) -> None:
    from channels.db import database_sync_to_async

    subscribers = await clients(application, 3)
    for client in subscribers:
        await client.next(await client.subscribe(SUBSCRIBE_USER, {"pk": 3, "rid": "d"}))
    await database_sync_to_async(User.objects.filter(pk=3).delete)()
    for client in subscribers:
        assert (await client.next("1"))["user"]["action"] == "delete"
        await client.expect_complete("1")
        await client.disconnect()
    assert cohort.cohorts == {}


async def test_a_burst_of_changes_to_many_instances_is_read_in_a_few_queries(
    application: Any, users: list[User], monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    batches: list[list[object]] = []
    real_read_many = visibility._read_many_async

    async def counting_read_many(*args: Any) -> Any:
        batches.append(list(args[3]))  # the instances one query reads
        return await real_read_many(*args)

    monkeypatch.setattr(visibility, "_read_many_async", counting_read_many)
    pks = list(range(10, 30))
    await database_sync_to_async(User.objects.bulk_create)(
        [User(pk=pk, username=f"u{pk}") for pk in pks]
    )
    (client,) = await clients(application, 1)
    for pk in pks:
        op = await client.subscribe(SUBSCRIBE_USER, {"pk": pk, "rid": pk})
        assert (await client.next(op))["user"]["responseStatus"] == 201
    # The subscriptions' own reads linger one (10 ms) window after the last of
    # them; the burst's reads start after that, with the longer window below.
    for _ in range(500):
        if not visibility._readers:
            break
        await asyncio.sleep(0.01)
    assert not visibility._readers, "the subscriptions' reads did not end"
    # A window far longer than the burst: the first change is read at once,
    # every change within the window after it by one more query.
    settings.GQL_OBSERVER = {**settings.GQL_OBSERVER, "READ_BATCH_WINDOW": 3.0}
    # The first change after a quiet spell does not wait for the window: its
    # frame comes long before the window (3 s) is over.
    batches.clear()
    await save_user(pks[0], username="first")
    first = await client.receive(timeout=2.0)
    assert first["payload"]["data"]["user"]["data"]["username"] == "first"
    assert batches == [[pks[0]]]
    # The rest of the burst, saved one by one (20 commits) within the window.
    await database_sync_to_async(_rename_each)(pks[1:], "burst")
    names = {}
    for _ in pks[1:]:
        message = await client.receive(timeout=10.0)
        user = message["payload"]["data"]["user"]
        names[user["requestId"]] = user["data"]["username"]
    assert names == {pk: f"burst-{pk}" for pk in pks[1:]}
    # 19 changes, one query (two if the loop took the first ones before the
    # window's read began), where every change used to cost a query of its own.
    assert sorted(pk for batch in batches[1:] for pk in batch) == pks[1:]
    assert len(batches) - 1 <= 2, [len(batch) for batch in batches]
    await client.disconnect()


def _rename_each(pks: list[int], prefix: str) -> None:
    for pk in pks:
        user = User.objects.get(pk=pk)
        user.username = f"{prefix}-{pk}"
        user.save()
