"""P0 for the soak run (soak.py): the benchmark's P0 application plus ``GET /bench/stats/``.

The stats route is answered here, in front of the P0 ASGI application, so the library is not
touched: it reports the server's open asyncio tasks (``len(asyncio.all_tasks())``, counted on
the server's event loop, the stats request's own task included), open file descriptors,
threads, RSS and gc-tracked objects. Serve with::

    uvicorn tests.benchmarks.soak_server:application   (env as for P0: see systems.py)
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import threading
import time
from collections import Counter
from typing import Any

from tests.benchmarks.peers.p0_asgi import application as p0_application

STATS_PATH = "/bench/stats/"


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def stats(types: bool = False) -> dict[str, Any]:
    t = time.monotonic()
    objects = gc.get_objects()
    by_type = None
    if types:  # the 40 commonest types of gc-tracked objects, by qualified name
        counts = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objects)
        by_type = dict(counts.most_common(40))
    count = len(objects)
    del objects
    return {
        "pid": os.getpid(),
        "tasks": len(asyncio.all_tasks()),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "rss_kib": _status_kib("VmRSS"),
        "gc_objects": count,
        "types": by_type,
        "stats_ms": (time.monotonic() - t) * 1e3,
    }


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == STATS_PATH:
        body = json.dumps(stats(types=b"types=1" in scope.get("query_string", b""))).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    await p0_application(scope, receive, send)
