"""What a list subscription receives from its process's hub: every change of
one model, the latest per row (:class:`RowsSubscription`).

An instance subscription holds one pending delivery (a newer change of its
instance supersedes an older one). A list subscription follows every row of a
model, so it holds one pending delivery per row: a newer change of a row
supersedes an older one of the same row, never one of another row. The
subscriber takes them all at once (:meth:`RowsSubscription.next_rows`) and
decides with one read which rows entered, changed in or left its set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from gql_observer.fanout.delivery import CLOSED, Delivery, Subscription

__all__ = ["ROWS_LIMIT", "Rows", "RowsSubscription", "combined"]

#: Rows whose changes may wait for a slow list subscriber; beyond, the updates
#: waiting are dropped and the subscriber re-reads its whole set instead.
ROWS_LIMIT: Final = 10_000


@dataclass(slots=True)
class Rows:
    """What a list subscriber has to handle now: the changed rows (pk -> the
    latest delivery of that row, in arrival order), whether to re-read the
    whole set (``resync``: after a layer outage or an overflow), or ``closed``
    (the hub shuts down)."""

    changed: dict[str, Delivery] = field(default_factory=dict)
    resync: bool = False
    closed: bool = False


def _put(rows: dict[str, Delivery], pk: str, delivery: Delivery) -> tuple[bool, bool]:
    """Put the latest change of the row ``pk`` in ``rows`` (at the end): whether
    it superseded an earlier one, and whether the row must be found by a resync."""
    earlier = rows.pop(pk, None)
    came_back = False
    if earlier is not None and earlier.action == "delete" and delivery.action != "delete":
        # The pk came back (a new row under an old key): the delete's last
        # values still matter to who held the old row; the new row is found
        # by the resync.
        came_back, delivery = True, earlier
    rows[pk] = delivery
    return earlier is not None, came_back


def combined(batches: list[Rows]) -> Rows:
    """One :class:`Rows` saying what ``batches``, taken one after the other,
    say together (the latest change per row, as a subscription keeps them)."""
    if len(batches) == 1:
        return batches[0]
    out = Rows()
    for rows in batches:
        out.resync = out.resync or rows.resync
        out.closed = out.closed or rows.closed
        for pk, delivery in rows.changed.items():
            out.resync = _put(out.changed, pk, delivery)[1] or out.resync
    return out


class RowsSubscription(Subscription):
    """A local subscription to every change of one model (its group): the
    latest pending delivery per row, a delete never superseded by an update."""

    __slots__ = ("_closed", "_resync", "_rows")

    def __init__(self, model_group: str) -> None:
        super().__init__(model_group, None)
        self._rows: dict[str, Delivery] = {}
        self._resync = False
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._rows) + (1 if self._resync or self._closed else 0)

    def push(self, delivery: Delivery) -> None:
        """The hub's close, or a resync of every subscription (not about one row)."""
        if delivery is CLOSED or delivery.action == "close":
            self._closed = True
        elif delivery.resync:
            self._resync = True
        self._wake()

    def push_row(self, pk: str, delivery: Delivery) -> None:
        """A change of the row ``pk``."""
        superseded, came_back = _put(self._rows, pk, delivery)
        self.dropped += superseded
        self._resync = self._resync or came_back
        if len(self._rows) > ROWS_LIMIT:
            # A subscriber this far behind re-reads its whole set; the deletes
            # are kept (their last values exist nowhere else).
            kept = {k: d for k, d in self._rows.items() if d.action == "delete"}
            self.dropped += len(self._rows) - len(kept)
            self._rows = kept
            self._resync = True
        self._wake()

    async def next_rows(self) -> Rows:
        """Everything pending now (waits without a task of its own)."""
        while not (self._rows or self._resync or self._closed):
            await self._sleep()
        rows = Rows(self._rows, self._resync, self._closed)
        self._rows, self._resync = {}, False
        self.delivered += len(rows.changed)
        return rows
