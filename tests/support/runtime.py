"""The running event loop's runtime, as tests look at it: its hub and watches; and
what the process's publisher has sent."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from gql_observer.changes.outbox import outbox
from gql_observer.fanout.hub import Hub
from gql_observer.graphql import runtime

__all__ = [
    "hub",
    "list_groups",
    "list_watches",
    "published",
    "reading",
    "started_hub",
    "watches",
]


def hub() -> Hub:
    """The running loop's hub (started if it was not)."""
    return runtime.current().hub


def started_hub() -> Hub | None:
    """The running loop's hub, if one was started."""
    current = runtime.running()
    return None if current is None else current.started_hub


def watches() -> dict[Hashable, Any]:
    """The running loop's live watches."""
    current = runtime.running()
    return {} if current is None else current.watches


def reading() -> int:
    """Kinds of coalesced reads going on in the running loop."""
    current = runtime.running()
    return 0 if current is None else len(current.reads)


def published() -> int:
    """Messages the process's publisher has sent to the channel layer so far."""
    publisher = outbox.publisher
    return 0 if publisher is None else publisher.sent


def list_watches() -> dict[Hashable, Any]:
    """The running loop's live list watches."""
    current = runtime.running()
    return {} if current is None else current.list_watches


def list_groups() -> dict[Hashable, Any]:
    """The running loop's list groups (the list watches of one type and viewer)."""
    current = runtime.running()
    return {} if current is None else current.list_groups
