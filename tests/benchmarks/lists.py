"""Live lists, L1 and L2 of issue 18, for gql_observer alone (in one process, the
demo's ASGI application, in-memory channel layer, SQLite or ``--database-url``'s
PostgreSQL): a tool, not a test.

    python tests/benchmarks/lists.py [--subscribers 1000] [--filters 100] [--burst 1000]
                                     [--owners 1000 [--changes 11] [--rule hook|queryset]
                                      [--scopes-alone]] [--database-url postgres://...]

L1: ``--subscribers`` list subscribers of ``users`` spread over ``--filters``
distinct filters (filter k: username starts with ``f<k>-``, or the e-mail of
its group of ten, ``g<k // 10>@x``); one save creates a user with the e-mail of
one group, which enters 10 of the sets: the time from ``save()`` to the last
subscriber's frame, and the database queries the server ran for it.
L2: a burst of ``--burst`` creates, one per filter in turn (username
``f<k>-<n>``): the time until every subscriber got every create of its
filter, and the queries per create.
L3 (``--owners``): that many signed-in viewers, each subscribed to their own
notes (owner-only through the demo's ``permission`` hook, or with ``--rule
queryset`` through a type's ``get_queryset``: a list group per viewer);
a note created for one, then given to another: the time to those frames.

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


async def run(
    subscribers: int, filters: int, burst: int, owners: int, changes: int, rule: str
) -> None:
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
        if connection.vendor == "sqlite":
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
    if owners:
        await owner_lists(application, owners, changes, rule)
    await close_runtime()


async def owner_lists(application: Any, owners: int, changes: int, rule: str) -> None:
    """L3: ``owners`` signed-in viewers, each subscribed to their own notes:
    ``rule`` "hook", the demo's ``notes`` (owner-only through its ``permission``
    hook); "queryset", the test schema's ``ownNotes`` (through the type's
    ``get_queryset``); either way one list group per viewer. ``changes`` times a
    note is created for one of them, then given to another: the time from
    ``save()`` to the frames of those it concerns (the others get nothing), and
    the statements per change."""
    import statistics

    from channels.db import database_sync_to_async
    from django.contrib.auth.models import User

    from gql_observer import issue_token
    from gql_observer.testing import GraphQLTransportWSCommunicator
    from schema_examples.notes.models import Note
    from tests.support.clients import library_queries

    # Each viewer its own requestId (a millisecond timestamp and its slot), as
    # real clients send them.
    field = "notes"
    if rule == "queryset":
        from tests.support.schema import application as test_application

        application = test_application()
        field = "ownNotes"
    document = (
        f"subscription ($rid: JSON) {{ {field}(requestId: $rid) "
        "{ action requestId pk data { id title } } }"
    )
    rid_base = int(time.time() * 1000)

    users = await database_sync_to_async(
        lambda: [User.objects.create(username=f"owner-{n}") for n in range(owners)]
    )()
    viewers = []
    for slot, user in enumerate(users):
        token = await database_sync_to_async(issue_token)(user)
        client = GraphQLTransportWSCommunicator(application, timeout=60)
        await client.connect()
        await client.init({"token": token})
        op = await client.subscribe(document, {"rid": rid_base + slot})
        await client.next(op)
        viewers.append((client, op))

    async def frame(slot: int) -> None:
        client, op = viewers[slot]
        got = (await client.next(op))[field]
        assert got["requestId"] == rid_base + slot, got  # its own, nobody else's

    print(f"L3: {owners} viewers subscribed to their own notes (rule: {rule})")
    created, given, statements = [], [], []
    for n in range(changes + 1):
        first, second = n % owners, (n + owners // 2) % owners
        with library_queries() as queries:
            began = time.perf_counter()
            note = await database_sync_to_async(Note.objects.create)(owner=users[first], title="t")
            await frame(first)
            took = time.perf_counter() - began
            note.owner = users[second]
            began = time.perf_counter()
            await database_sync_to_async(note.save)()
            await frame(first)
            await frame(second)
            moved = time.perf_counter() - began
        if n:  # the first is a warm-up
            created.append(took)
            given.append(moved)
            statements.append(len(queries) / 2)
    print(
        f"L3: a note created for one viewer: median {statistics.median(created) * 1000:.1f} ms "
        f"to its frame; given to another: {statistics.median(given) * 1000:.1f} ms to both "
        f"frames; {statistics.median(statements):.1f} statements per change "
        f"(medians of {changes})"
    )
    for client, _ in viewers:
        await client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--filters", type=int, default=100)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument(
        "--owners", type=int, default=0, help="L3: viewers of owner-only lists (0: no L3)"
    )
    parser.add_argument("--changes", type=int, default=11, help="L3: changes measured")
    parser.add_argument(
        "--rule",
        choices=("hook", "queryset"),
        default="hook",
        help="L3: who sees a note: the demo's permission hook, or a get_queryset",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL database the run may empty (its users and notes are truncated "
        "first); default: a new SQLite file",
    )
    parser.add_argument(
        "--scopes-alone",
        action="store_true",
        help="L3 with --rule queryset: read each viewer's rows on its own (COMBINE_SCOPES "
        "off, the path before 2026-12-07's third session)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    tmp = tempfile.mkdtemp(prefix="gqlobs-lists-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "schema_examples.settings"
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
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

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":  # the disk must not decide the figures
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=OFF")
        else:
            cursor.execute("TRUNCATE notes_note, auth_user CASCADE")
    if args.scopes_alone:
        from gql_observer.graphql import matching

        matching.COMBINE_SCOPES = False
    asyncio.run(
        run(args.subscribers, args.filters, args.burst, args.owners, args.changes, args.rule)
    )


if __name__ == "__main__":
    main()
