"""The message that crosses the channel layer: which instance changed, and how."""

from __future__ import annotations

import threading
import time
from typing import Final, Literal, NotRequired, TypedDict

__all__ = [
    "CHANGE",
    "CHANGES",
    "PROBE",
    "Action",
    "ChangeBatch",
    "ChangeEvent",
    "LastValues",
    "ProbeMessage",
    "next_version",
    "next_versions",
]

#: The channel-layer ``type`` of a change event.
CHANGE: Final = "gqlobs.change"
#: The channel-layer ``type`` of several change events of one model in one message.
CHANGES: Final = "gqlobs.changes"
#: The channel-layer ``type`` of a hub's liveness probe (to itself).
PROBE: Final = "gqlobs.probe"

#: ``create``: a save that inserted the row (``post_save(created=True)``) or a
#: ``bulk_create``: news to list subscribers only (an instance subscriber
#: subscribed to a row that existed). ``update``: re-read it. ``delete``: it
#: is gone (``last``).
Action = Literal["create", "update", "delete"]

#: Field values of a deleted instance, as ``Field.value_to_string`` gives them.
LastValues = dict[str, str | None]


class ChangeEvent(TypedDict):
    """One committed change of one instance.

    Events carry identity, not data: subscribers re-read the instance after
    the commit. Only a delete carries values (``last``), because the row is
    gone; those are restricted to the fields the GraphQL type exposes.

    ``version`` is stamped when the commit is announced (:func:`next_version`).
    ``delivered`` names the hub that already has the change: the writer's own
    process handed it to its hub directly, and that hub skips the copy the
    channel layer brings back (see ``publish.set_in_process_hub``).
    """

    type: Literal["gqlobs.change"]
    group: str
    model: str
    pk: str
    action: Action
    last: LastValues | None
    version: int
    delivered: NotRequired[str]


class ChangeBatch(TypedDict):
    """Changes of several instances of one model, sent once to the model's
    group (every hub with a subscriber of that model is in it) instead of once
    to each instance's group. Each hub picks the events it has subscribers for."""

    type: Literal["gqlobs.changes"]
    events: list[ChangeEvent]


class ProbeMessage(TypedDict):
    """A hub's message to itself through its probe group: the layer still
    delivers to this process and still knows its group memberships."""

    type: Literal["gqlobs.probe"]
    nonce: int


_version_lock = threading.Lock()
_last_version = 0


def next_version() -> int:
    """A version for a change committed now: nanoseconds since the epoch,
    strictly increasing within this process.

    Across processes versions are ordered only as well as the hosts' clocks
    agree, so nothing relies on them for correctness: subscribers re-read the
    committed state (see ``Subscription.next``). They order the changes of one
    writer process and identify an event in logs and metrics.
    """
    return next_versions(1)


def next_versions(count: int) -> int:
    """The first of ``count`` consecutive versions (see :func:`next_version`),
    for the changes one commit announces together."""
    global _last_version
    with _version_lock:
        first = max(time.time_ns(), _last_version + 1)
        _last_version = first + count - 1
        return first
