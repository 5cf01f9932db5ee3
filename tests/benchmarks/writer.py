"""W4's writer: saves a few hot rows at a paced rate, through the Django ORM, in its own process.

The orchestrator may run several (``--w4-writers``), each with its own rows and its share of
the rate; their results are merged by ``fanout.merge_writers``.

Run by the orchestrator (fanout.py) with the interpreter and environment of the server it
targets (``systems.py``: same database, same channel layer settings), so that the save handlers
publishing the change are the real ones: gql_observer's receivers and publisher thread for P0
(connected when Django is ready), DCRF's ``post_save`` observer for P1 and the recipe's
``post_save`` → ``async_to_sync(group_send)`` for P2 (connected by importing the server's
module, ``System.writer_imports``). For F (no database, no layer) each "save" is one message
``"<pk> <value>"`` on the floor server's ``/feed/`` websocket, which broadcasts it.

Save ``i`` (0, 1, ...) sets row ``pks[i % len(pks)]``'s username to ``<marker>-<n>`` with
``n = i * K + k + 1`` for writer ``k`` of ``K`` (``--writer k/K``): every value is distinct among
all writers, and as each row has one writer, its number orders a row's values. Save ``i`` is
due at ``t0 + i / rate``; a writer that falls behind saves as fast as it can, and the achieved
rate is reported as it is.

Protocol on stdin/stdout (one JSON line each): after setup it writes ``{"ready": ...}`` and
waits for a line on stdin; then it writes for ``--seconds``, reads the rows back from the
database (the committed final state; F: the last values sent) and writes the result. Times are
``time.monotonic()`` (CLOCK_MONOTONIC, comparable with the load worker's on Linux).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

SaveFn = Callable[[int, str, str], None]  # (index into pks, pk, new value)


class OverCapacity(logging.Handler):
    """Counts channels_redis's "N of M channels over capacity in group G" records: a
    ``group_send`` from this process found a receiving process's queue in Redis full (its
    ``capacity``, 100 by default) and left the message out for it. Whoever publishes here
    (gql_observer's publisher thread, DCRF's observer, the recipe's handler) goes through
    ``group_send``, so this is the same count for every Django system."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.sends = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "over capacity" in str(record.msg):
            self.sends += 1


OVER_CAPACITY = OverCapacity()


def django_backend(pks: list[str], imports: list[str]) -> tuple[SaveFn, Callable[[], Any]]:
    """Save through the ORM; the final state is read back from the database."""
    import django

    django.setup()
    channels_log = logging.getLogger("channels_redis.core")
    channels_log.setLevel(logging.INFO)
    channels_log.propagate = False  # counted, not printed
    channels_log.addHandler(OVER_CAPACITY)
    for module in imports:
        importlib.import_module(module)  # connects the server's own post_save handlers
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    rows = {str(u.pk): u for u in user_model._default_manager.filter(pk__in=pks)}
    missing = [pk for pk in pks if pk not in rows]
    if missing:
        raise RuntimeError(f"users {missing} missing: run the benchmark's prepare step")
    ordered = [rows[pk] for pk in pks]

    def save(index: int, pk: str, value: str) -> None:
        user = ordered[index]
        user.username = value
        user.save()

    def final() -> dict[str, str]:
        from django.apps import apps

        if apps.is_installed("gql_observer"):
            from gql_observer.changes.outbox import flush

            flush(10.0)  # what the publisher thread still holds goes out (and is counted)
        committed = user_model._default_manager.filter(pk__in=pks).values_list("pk", "username")
        return {str(pk): username for pk, username in committed}

    return save, final


def floor_backend(pks: list[str], port: int) -> tuple[SaveFn, Callable[[], Any]]:
    """F: one message per change on the floor server's feed; final = what was sent last."""
    from websockets.sync.client import connect

    ws = connect(f"ws://127.0.0.1:{port}/feed/", compression=None, max_size=None)
    last: dict[str, str] = {}

    def save(index: int, pk: str, value: str) -> None:
        ws.send(f"{pk} {value}")
        last[pk] = value

    def final() -> dict[str, str]:
        ws.close()
        return dict(last)

    return save, final


def write(
    save: SaveFn,
    pks: list[str],
    marker: str,
    rate: float,
    seconds: float,
    offset: int = 0,
    stride: int = 1,
) -> dict[str, Any]:
    durations: list[float] = []
    per_pk = dict.fromkeys(pks, 0)
    t0 = time.monotonic()
    end = t0 + seconds
    t_last = t0
    i = 0
    while True:
        due = t0 + i / rate
        now = time.monotonic()
        if due >= end or now >= end:
            break
        if due > now:
            time.sleep(due - now)
        slot = i % len(pks)
        pk = pks[slot]
        start = time.monotonic()
        save(slot, pk, f"{marker}-{i * stride + offset + 1}")
        t_last = time.monotonic()
        durations.append(t_last - start)
        per_pk[pk] += 1
        i += 1
    secs = t_last - t0
    durations.sort()
    return {
        "saves": i,
        "secs": secs,
        "saves_per_s": i / secs if secs > 0 else 0.0,
        "t_first": t0,
        "t_last_save": t_last,
        "saves_per_pk": per_pk,
        "save_ms_p50": statistics.median(durations) * 1e3 if durations else None,
        "save_ms_p99": durations[int(0.99 * (len(durations) - 1))] * 1e3 if durations else None,
        "save_ms_max": durations[-1] * 1e3 if durations else None,
    }


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pks", required=True, help="comma list of the hot rows' pks")
    parser.add_argument("--marker", required=True)
    parser.add_argument("--rate", type=float, default=1000.0, help="target saves/s")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--import", dest="imports", action="append", default=[])
    parser.add_argument("--floor-port", type=int, default=0, help="F: the floor server's port")
    parser.add_argument(
        "--writer", default="0/1", help="this writer's index / the number of writers (i/K)"
    )
    args = parser.parse_args()
    pks = [p.strip() for p in args.pks.split(",") if p.strip()]
    try:
        if args.floor_port:
            save, final = floor_backend(pks, args.floor_port)
        else:
            save, final = django_backend(pks, args.imports)
    except Exception as exc:
        emit({"error": f"setup: {type(exc).__name__}: {exc}"[:500]})
        sys.exit(1)
    emit({"ready": True, "pid": os.getpid()})
    if not sys.stdin.readline():
        return
    try:
        offset, stride = (int(x) for x in args.writer.split("/"))
        result = write(save, pks, args.marker, args.rate, args.seconds, offset, stride)
        result["final"] = final()
        result["over_capacity_sends"] = OVER_CAPACITY.sends
    except Exception as exc:
        emit({"error": f"{type(exc).__name__}: {exc}"[:500]})
        sys.exit(1)
    emit(result)
    # P0: gql_observer's publisher thread sends what is still queued at exit (atexit)


if __name__ == "__main__":
    main()
