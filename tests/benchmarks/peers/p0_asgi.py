"""P0: gql_observer's ASGI application, with the benchmark's save view as Django."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.benchmarks.peers.p0_settings")
django_application = get_asgi_application()

from tests.benchmarks.peers import queries  # noqa: E402

queries.install()  # the live-lists benchmark's queries per save (bench/queries/)

from gql_observer.asgi import application as gql_application  # noqa: E402

application = gql_application(django_application=django_application)
