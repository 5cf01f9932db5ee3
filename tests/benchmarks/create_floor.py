"""The floor of the live-lists benchmark's L2: what its write loop (``--n`` creates of
``auth.User``, each its own transaction, as ``GET /bench/create/`` makes them) takes with
Django alone, no server, no subscriber, nothing observed, on the same PostgreSQL.

    python -m tests.benchmarks.create_floor [--pg-url postgres://...] [--n 1000] [--rounds 5]

Prints each round and the median. The tables live in a schema of their own
(``gqlobs_create_floor``), made and dropped by the run. L2's "from save()" figure of any
system cannot be below this: its INSERTs are this loop, plus whatever delivering the
frames in the same process takes from it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from urllib.parse import urlparse

SCHEMA = "gqlobs_create_floor"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/test")
    parser.add_argument("--n", type=int, default=1000, help="creates per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import django
    from django.conf import settings

    url = urlparse(args.pg_url)
    settings.configure(
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": url.path.lstrip("/"),
                "USER": url.username or "postgres",
                "PASSWORD": url.password or "",
                "HOST": url.hostname or "127.0.0.1",
                "PORT": url.port or 5432,
                # The benchmark's servers use psycopg's pool too.
                "OPTIONS": {"pool": True, "options": f"-c search_path={SCHEMA}"},
            }
        },
        USE_TZ=True,
    )
    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        cursor.execute(f"CREATE SCHEMA {SCHEMA}")
    try:
        call_command("migrate", verbosity=0)
        times = []
        for round_ in range(args.rounds):
            started = time.monotonic()
            for i in range(args.n):
                User.objects.create(username=f"floor-{round_}-{i}", email="")
            times.append((time.monotonic() - started) * 1e3)
            print(f"round {round_ + 1}: {args.n} creates in {times[-1]:.0f} ms", flush=True)
        print(f"median: {statistics.median(times):.0f} ms for {args.n} creates")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


if __name__ == "__main__":
    main()
