"""What a 10,000-row ``QuerySet.update()`` of the demo's ``Note`` costs the writer.

    python -m tests.benchmarks.bulk_writes [--rows 10000] [--rounds 5] [--subscribers 100]
        [--redis redis://127.0.0.1:6379/11] [--database-url postgres://...]

Three modes, alternating round by round on the same rows:

- ``django``: ``Note._base_manager`` (Django's own QuerySet): nothing is announced;
- ``observed``: ``Note.objects`` (``gql_observer.ObservedManager``) with nobody
  subscribed: the pks are read, one event per row is announced after the commit;
- ``subscribed``: the same while a demo server process (``python -m
  schema_examples serve`` on the same database and Redis) holds ``--subscribers``
  subscriptions to notes among the updated rows; every one of them must receive
  the round's update before the next round starts.

For each: the median time of the ``update()`` call in the writer (the whole
transaction: BEGIN, the pks, the UPDATE, COMMIT and the hand-over of the events
to the publisher thread), the median time until the publisher has sent every
event (``gql_observer.flush``), the queries the writer ran and the channel-layer
messages the publisher sent. SQLite runs with ``synchronous=OFF`` so that the
disk does not drown the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    tmp = tempfile.mkdtemp(prefix="gqlobs-bulk-writes-")
    prefix = f"bulkwrites{os.getpid()}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "schema_examples.settings"
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
    os.environ["REDIS_URL"] = args.redis
    os.environ["CHANNELS_PREFIX"] = prefix

    import django

    django.setup()
    import logging

    logging.getLogger("gql_observer").setLevel(logging.WARNING)
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    import gql_observer
    from gql_observer.changes.outbox import outbox
    from schema_examples.notes.models import Note

    call_command("migrate", interactive=False, verbosity=0)
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous=OFF")
    Note._base_manager.all().delete()
    owner, _ = User.objects.get_or_create(username="bench owner")
    Note._base_manager.bulk_create(
        [Note(owner=owner, title=str(n)) for n in range(args.rows)], batch_size=1000
    )
    pks = list(Note._base_manager.order_by("pk").values_list("pk", flat=True))
    token = gql_observer.issue_token(owner)

    def sent() -> int:
        publisher = outbox.publisher
        return 0 if publisher is None else publisher.sent

    def one_update(mode: str, value: str) -> dict[str, float]:
        manager = Note._base_manager if mode == "django" else Note.objects
        before = sent()
        with CaptureQueriesContext(connection) as captured:
            began = time.perf_counter()
            rows = manager.all().update(title=value)
            writer = time.perf_counter() - began
        assert rows == args.rows
        assert gql_observer.flush(60), "the publisher did not send everything"
        published = time.perf_counter() - began
        control = {"BEGIN", "COMMIT"}
        statements = [q for q in captured if q["sql"].split()[0] not in control]
        return {
            "writer_ms": writer * 1e3,
            "published_ms": published * 1e3,
            "queries": len(statements),
            "messages": sent() - before,
        }

    samples: dict[str, list[dict[str, float]]] = {"django": [], "observed": []}
    with ServerWithSubscribers(tmp, args.subscribers, pks, token) as server:
        samples["subscribed"] = []
        for round_ in range(args.rounds + 1):  # the first round warms up, unreported
            for mode in samples:
                value = f"{mode} {round_}"
                result = one_update(mode, value)
                if mode == "subscribed":
                    server.wait_for(value)
                if round_:
                    samples[mode].append(result)

    print(f"{args.rows} rows, {connection.vendor}, channels_redis; median of {args.rounds} rounds")
    print(f"{'mode':<11} {'update() ms':>12} {'published ms':>13} {'queries':>8} {'messages':>9}")
    for mode, results in samples.items():
        row = {key: statistics.median(r[key] for r in results) for key in results[0]}
        print(
            f"{mode:<11} {row['writer_ms']:>12.1f} {row['published_ms']:>13.1f} "
            f"{row['queries']:>8.0f} {row['messages']:>9.0f}"
        )
    print(f"subscribed: {args.subscribers} subscriptions, each got every round's update")

    import redis

    connection_ = redis.Redis.from_url(args.redis)
    for key in connection_.scan_iter(f"{prefix}*"):
        connection_.delete(key)


class ServerWithSubscribers:
    """A demo server process on the benchmark's database and Redis, and a
    client thread holding subscriptions to ``count`` notes."""

    def __init__(self, tmp: str, count: int, pks: list[int], token: str) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.count, self.token = count, token
        step = max(1, len(pks) // count)
        self.pks = pks[::step][:count]
        self.log = Path(tmp) / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.loop = asyncio.new_event_loop()
        self.socket: Any = None

    def __enter__(self) -> ServerWithSubscribers:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "schema_examples", "serve"),
                    *("--port", str(self.port), "--log-level", "warning"),
                ],
                cwd=ROOT,
                env=os.environ.copy(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.loop.run_until_complete(self._subscribe())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.socket is not None:
            self.loop.run_until_complete(self.socket.close())
        self.loop.close()
        if self.process is not None:
            self.process.terminate()
            self.process.wait(15)

    async def _subscribe(self) -> None:
        import websockets

        deadline = time.monotonic() + 60
        while True:
            try:
                self.socket = await websockets.connect(
                    f"ws://127.0.0.1:{self.port}/graphql/",
                    subprotocols=["graphql-transport-ws"],
                    max_queue=None,
                )
                break
            except OSError as error:
                if time.monotonic() > deadline:
                    log = self.log.read_text()
                    raise RuntimeError(f"the server did not start:\n{log}") from error
                await asyncio.sleep(0.2)
        await self.socket.send(
            json.dumps({"type": "connection_init", "payload": {"token": self.token}})
        )
        assert json.loads(await self.socket.recv())["type"] == "connection_ack"
        query = "subscription ($pk: ID!) { note(pk: $pk) { action data { title } } }"
        for n, pk in enumerate(self.pks):
            payload = {"query": query, "variables": {"pk": pk}}
            message = {"type": "subscribe", "id": str(n), "payload": payload}
            await self.socket.send(json.dumps(message))
            await asyncio.sleep(0.06)  # the server's SUBSCRIBE_RATE (20 a second)
            first = json.loads(await self.socket.recv())
            assert first["type"] == "next", first
            assert first["payload"]["data"]["note"]["action"] == "subscribe_instance", first

    def wait_for(self, title: str) -> None:
        """Until every subscription has received ``title``."""
        self.loop.run_until_complete(self._wait_for(title))

    async def _wait_for(self, title: str) -> None:
        waiting = {str(n) for n in range(len(self.pks))}
        while waiting:
            message = json.loads(await asyncio.wait_for(self.socket.recv(), 60))
            if message["payload"]["data"]["note"]["data"]["title"] == title:
                waiting.discard(message["id"])


if __name__ == "__main__":
    main()
