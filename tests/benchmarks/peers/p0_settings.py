"""Django settings of P0 (gql_observer) in the benchmark: the demo project's apps and
schema (plus the benchmark's ``userP`` and ``userX``, ``p0_schema.py``), with the peers'
database, channel layer and save trigger (same view, same connection reuse), so every
system is triggered the same way."""

from __future__ import annotations

import os

from schema_examples.settings import *  # noqa: F403
from tests.benchmarks.peers.settings import (  # noqa: F401
    ALLOWED_HOSTS,
    CHANNEL_LAYERS,
    DATABASES,
    LOGGING,
    ROOT_URLCONF,
)

DEBUG = False
GQL_OBSERVER = {
    # the demo's schema plus W1p's and W1x's observed types
    "SCHEMA": "tests.benchmarks.peers.p0_schema.schema",
    "GRAPHIQL": False,
    # P0l: "0", so a save in the server reaches its subscribers through the channel layer, as
    # a save in another process would.
    "DELIVER_IN_PROCESS": os.environ.get("BENCH_DELIVER_IN_PROCESS", "1") != "0",
    # P0_GC_PAUSE=0: the garbage collector runs during deliveries too (as before GC_PAUSE);
    # not a BENCH_ variable, which the harness keeps from the servers.
    "GC_PAUSE": os.environ.get("P0_GC_PAUSE", "1") != "0",
}
