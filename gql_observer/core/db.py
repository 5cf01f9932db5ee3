"""Database work outside requests: the hub's reads and the websocket's authentication.

Django looks after its connections around each request (``close_old_connections``
on ``request_started`` and ``request_finished``). gql_observer's reads run on
Django's one sync thread of the server process, outside any request, so nothing
would ever notice there that a connection died: after a PostgreSQL restart, a
failover or a terminated backend, every read would fail until the process
restarted. :func:`unit_of_work` gives each call what a request gets:

* before it, a connection that had errors is checked and closed if it no longer
  works, and a connection older than a positive ``CONN_MAX_AGE`` is closed;
* if the call fails with a connection error (``OperationalError`` or
  ``InterfaceError``) and that closed a dead connection, it runs once more, on a
  new connection. A read is a query; running it again changes nothing.

``CONN_MAX_AGE = 0`` (Django's default, and what Django advises under ASGI) does
not make the thread reconnect for every read: that advice is about the threads
ASGI starts per request, whose connections nobody would close. This thread is
one per process and lives as long as the process, as a worker's would.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from django.db import InterfaceError, OperationalError, connections

from gql_observer.core.backoff import persist

__all__ = ["retrying", "unit_of_work"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def _close_broken() -> bool:
    """Close the thread's connections that no longer work or outlived a positive
    ``CONN_MAX_AGE``; whether one that no longer worked was closed."""
    replaced = False
    now = time.monotonic()
    for connection in connections.all(initialized_only=True):
        if connection.connection is None or connection.in_atomic_block:
            continue
        # With CONN_HEALTH_CHECKS, Django pings before the first query of the unit.
        connection.health_check_done = False  # type: ignore[attr-defined]
        if connection.errors_occurred:
            if connection.is_usable():
                connection.errors_occurred = False
            else:
                logger.warning(
                    "gql_observer: database connection %r stopped working; reconnecting",
                    connection.alias,
                )
                connection.close()
                replaced = True
                continue
        max_age = connection.settings_dict.get("CONN_MAX_AGE")
        if max_age and connection.close_at is not None and now >= connection.close_at:
            connection.close()
    return replaced


def unit_of_work(function: Callable[P, R]) -> Callable[P, R]:
    """``function`` (sync, read-only) run as a request would run it: on a connection
    that works, and once more if the connection died under it."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        _close_broken()
        try:
            return function(*args, **kwargs)
        except (OperationalError, InterfaceError):
            if not _close_broken():
                raise  # not a lost connection (a timeout, a lock): the caller's to handle
            return function(*args, **kwargs)

    return run


async def retrying(call: Callable[[], Awaitable[R]], window: float, what: str, label: str) -> R:
    """``await call()``; while it fails because the database cannot be reached
    (``OperationalError``, ``InterfaceError``: :func:`unit_of_work` already tried
    a new connection), again with backoff (:mod:`gql_observer.core.backoff`) for
    ``window`` seconds, then that failure. The first failure and the recovery
    are logged ("cannot ``what`` ``label``")."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    failures = 0

    def failed(attempt: int, error: BaseException) -> None:
        nonlocal failures
        failures = attempt
        if attempt == 1:
            logger.warning(
                "gql_observer: cannot %s %s (%s); retrying for %gs", what, label, error, window
            )

    result = await persist(
        call, failing=(OperationalError, InterfaceError), window=window, failed=failed
    )
    if failures:
        logger.warning(
            "gql_observer: %s %s works again after %.1fs", what, label, loop.time() - began
        )
    return result
