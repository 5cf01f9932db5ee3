"""Migrate and seed users 1..N for one Django project (a peer's, or gql_observer's demo).

Run with the interpreter and settings of the server that will use the database::

    DJANGO_SETTINGS_MODULE=tests.benchmarks.peers.settings \\
        python -m tests.benchmarks.peers.prepare 1000

Only Django is imported, so it also runs from the project's own venv for P0.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    schema = os.environ.get("BENCH_PG_SCHEMA")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    if schema and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    call_command("migrate", verbosity=0, interactive=False)
    user_model = get_user_model()
    existing = set(user_model.objects.filter(pk__lte=count).values_list("pk", flat=True))
    missing = [
        user_model(pk=pk, username=f"user{pk}", email=f"user{pk}@example.com")
        for pk in range(1, count + 1)
        if pk not in existing
    ]
    user_model.objects.bulk_create(missing, batch_size=1000)
    if connection.vendor == "postgresql" and missing:
        # explicit pks leave the sequence behind; later inserts by the server must not collide
        table = user_model._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT MAX(id) FROM {table}))"
            )
    print(f"prepared {user_model._meta.label}: {count} users ({len(missing)} created)")


if __name__ == "__main__":
    main()
