"""Live lists, L1 and L2 of issue 18, for gql_observer alone (in one process, the
demo's ASGI application, in-memory channel layer, SQLite): a tool, not a test.

    python tests/benchmarks/lists.py [--subscribers 1000] [--filters 100] [--burst 1000]

L1: ``--subscribers`` list subscribers of ``users`` spread over ``--filters``
distinct filters (filter k: username starts with ``f<k>-``, or the e-mail of
its group of ten, ``g<k // 10>@x``); one save creates a user with the e-mail of
one group, which enters 10 of the sets: the time from ``save()`` to the last
subscriber's frame, and the database queries the server ran for it.
L2: a burst of ``--burst`` creates, one per filter in turn (username
``f<k>-<n>``): the time until every subscriber got every create of its
filter, and the queries per create.

Side by side with the peers (DCRF's ``model_observer``, strawberry's
group-per-filter recipe) over real sockets: ``python -m tests.benchmarks.lists_fanout``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _filter(k: int) -> dict[str, Any]:
    return {"username": {"startsWith": f"f{k}-"}, "OR": {"email": {"exact": f"g{k // 10}@x"}}}


async def run(subscribers: int, filters: int, burst: int) -> None:
    from channels.db import database_sync_to_async
    from django.contrib.auth.models import User
    from django.db import connection

    from gql_observer.testing import GraphQLTransportWSCommunicator, close_runtime
    from schema_examples.asgi import application
    from tests.support.clients import library_queries
    from tests.support.lists import subscribe_users

    clients = []
    by_filter: dict[int, list[tuple[Any, str]]] = {k: [] for k in range(filters)}
    for n in range(subscribers):
        client = GraphQLTransportWSCommunicator(application, timeout=60)
        await client.__aenter__()
        op = await subscribe_users(client, _filter(n % filters), rid=n)
        clients.append(client)
        by_filter[n % filters].append((client, op))
    print(f"{subscribers} subscribers over {filters} filters subscribed")

    # L1: one save that enters the 10 sets of group 3.
    entering = [pair for k in range(30, 40) for pair in by_filter.get(k, [])]
    with library_queries() as queries:
        began = time.perf_counter()
        await database_sync_to_async(User.objects.create)(username="l1", email="g3@x")
        await asyncio.gather(*(client.next(op) for client, op in entering))
        elapsed = time.perf_counter() - began
    print(
        f"L1: {len(entering)} frames, last after {elapsed * 1000:.1f} ms; "
        f"{len(queries)} database queries"
    )

    # L2: a burst of creates spread over the filters.
    expected: dict[int, int] = {}
    for n in range(burst):
        expected[n % filters] = expected.get(n % filters, 0) + 1

    async def drain(client: Any, op: str, count: int) -> None:
        for _ in range(count):
            frame = await client.next(op)
            assert frame["users"]["action"] == "create", frame

    def write() -> None:
        # A writer thread of its own (not the server's sync thread, which reads).
        nonlocal written
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous=OFF")
        try:
            for n in range(burst):
                User.objects.create(username=f"f{n % filters}-{n}")
            written = time.perf_counter() - began
        finally:
            connection.close()

    written = 0.0
    with library_queries() as queries:
        began = time.perf_counter()
        writer = asyncio.ensure_future(asyncio.to_thread(write))
        await asyncio.gather(
            *(
                drain(client, op, expected.get(k, 0))
                for k, pairs in by_filter.items()
                for client, op in pairs
            )
        )
        elapsed = time.perf_counter() - began
        await writer
    frames = sum(expected.get(k, 0) * len(pairs) for k, pairs in by_filter.items())
    print(
        f"L2: {burst} creates (written in {written * 1000:.0f} ms), {frames} frames, all "
        f"delivered after {elapsed * 1000:.0f} ms; "
        f"{len(queries)} database queries ({len(queries) / burst:.2f} per create)"
    )
    for client in clients:
        await client.disconnect()
    await close_runtime()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--filters", type=int, default=100)
    parser.add_argument("--burst", type=int, default=1000)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    tmp = tempfile.mkdtemp(prefix="gqlobs-lists-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "schema_examples.settings"
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/bench.sqlite3"
    os.environ.pop("REDIS_URL", None)
    os.environ["ALLOWED_HOSTS"] = "testserver"  # the in-process communicators' host
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.core.signals import setting_changed

    settings.GQL_OBSERVER = {
        **getattr(settings, "GQL_OBSERVER", {}),
        "SUBSCRIBE_RATE": 10_000.0,
        "KEEP_ALIVE_INTERVAL": None,
    }
    setting_changed.send(None, setting="GQL_OBSERVER", value=settings.GQL_OBSERVER, enter=True)
    call_command("migrate", interactive=False, verbosity=0)
    from django.db import connection

    with connection.cursor() as cursor:  # the disk must not decide the figures
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=OFF")
    asyncio.run(run(args.subscribers, args.filters, args.burst))


if __name__ == "__main__":
    main()
