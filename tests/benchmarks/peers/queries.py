"""Every SQL statement a benchmark server runs, counted (the live-lists benchmark's queries
per save): an ``execute_wrapper`` on each database connection of the process, in every thread,
added when Django opens the connection (``connection_created``). Statements are counted by
kind: the INSERTs into ``auth_user`` (the saves themselves) apart from all others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db.backends.signals import connection_created

_LOCK = threading.Lock()
COUNTS = {"inserts": 0, "other": 0}


def _count(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
    kind = "inserts" if sql.lstrip().upper().startswith('INSERT INTO "AUTH_USER"') else "other"
    with _LOCK:
        COUNTS[kind] += 1
    return execute(sql, params, many, context)


def _on_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


def install() -> None:
    """Count from now on (call before the server's first request)."""
    connection_created.connect(_on_connection, dispatch_uid="bench-count-queries")


def snapshot() -> dict[str, int]:
    with _LOCK:
        return dict(COUNTS)
