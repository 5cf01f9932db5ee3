"""The message that crosses the channel layer: which instance changed, and how."""

from __future__ import annotations

from typing import Final, Literal, TypedDict

__all__ = ["CHANGE", "Action", "ChangeEvent", "LastValues"]

#: The channel-layer ``type`` of a change event.
CHANGE: Final = "gqlobs.change"

Action = Literal["update", "delete"]

#: Field values of a deleted instance, as ``Field.value_to_string`` gives them.
LastValues = dict[str, str | None]


class ChangeEvent(TypedDict):
    """One committed change of one instance.

    Events carry identity, not data: subscribers re-read the instance after
    the commit. Only a delete carries values (``last``), because the row is
    gone; those are restricted to the fields the GraphQL type exposes.
    """

    type: Literal["gqlobs.change"]
    group: str
    model: str
    pk: str
    action: Action
    last: LastValues | None
