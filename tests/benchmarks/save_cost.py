"""What an observed save costs the writer when nobody is subscribed.

    python tests/benchmarks/save_cost.py [--saves 2000] [--rounds 5] [--redis redis://...]

Saves one demo user again and again, alternating rounds with gql_observer's
receivers disconnected ("bare": Django alone) and connected ("observed": the
event is built, registered on commit and handed to the publisher). Prints the
median time of one ``save()`` in each mode and the difference. With ``--redis``
the channel layer is channels_redis (the publisher thread sends every event to
Redis); without it, the in-memory layer with no hub running (nothing can listen
in this process, so the event is dropped after it is built). SQLite runs with
``synchronous=OFF`` so that the disk does not drown the difference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saves", type=int, default=2000, help="saves per round and mode")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis", default=None, help="channels_redis URL (default: in-memory)")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    tmp = tempfile.mkdtemp(prefix="gqlobs-save-cost-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "schema_examples.settings"
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/bench.sqlite3"
    os.environ.pop("REDIS_URL", None)
    if args.redis:
        os.environ["REDIS_URL"] = args.redis
        os.environ["CHANNELS_PREFIX"] = f"savecost{os.getpid()}"

    import django

    django.setup()
    import logging

    logging.getLogger("gql_observer").setLevel(logging.WARNING)
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.db.models.signals import post_delete, post_save

    from gql_observer import flush

    from gql_observer.changes import signals

    call_command("migrate", interactive=False, verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA synchronous=OFF")
    user = User.objects.create(username="bench", email="bench@example.com")
    uid = "gql_observer.auth.user"

    def disconnect() -> None:
        post_save.disconnect(sender=User, dispatch_uid=uid)
        post_delete.disconnect(sender=User, dispatch_uid=uid)

    def connect() -> None:
        post_save.connect(signals._saved, sender=User, dispatch_uid=uid, weak=False)
        post_delete.connect(signals._deleted, sender=User, dispatch_uid=uid, weak=False)

    def round_of(saves: int) -> list[float]:
        timings = []
        for n in range(saves):
            user.username = f"bench {n}"
            began = time.perf_counter_ns()
            user.save(update_fields=["username"])
            timings.append((time.perf_counter_ns() - began) / 1e6)
        return timings

    samples: dict[str, list[float]] = {"bare": [], "observed": []}
    connect()
    round_of(200)  # warm up: the publisher thread, the connection, caches
    flush(5)
    for _ in range(args.rounds):
        disconnect()
        samples["bare"] += round_of(args.saves)
        connect()
        samples["observed"] += round_of(args.saves)
        flush(10)

    layer = "channels_redis" if args.redis else "in-memory, no hub"
    print(f"save() of one user, {args.rounds} x {args.saves} saves per mode, layer: {layer}")
    medians = {mode: statistics.median(values) for mode, values in samples.items()}
    for mode, values in samples.items():
        p90 = statistics.quantiles(values, n=10)[-1]
        print(f"  {mode:9} median {medians[mode]:.3f} ms   p90 {p90:.3f} ms")
    print(f"  observed - bare: {medians['observed'] - medians['bare']:+.3f} ms per save")


if __name__ == "__main__":
    main()
