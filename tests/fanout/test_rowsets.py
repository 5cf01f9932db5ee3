"""A list watch that reads its set while its group takes batches of changes
decides them later as one (:func:`combined`): that one batch must say what a
subscription of its own would have kept of every change those batches held,
taken at once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gql_observer.fanout.delivery import Delivery
from gql_observer.fanout.rowsets import Rows, RowsSubscription, combined

CHANGES = st.lists(
    st.tuples(st.sampled_from("abc"), st.sampled_from(("update", "delete")), st.booleans()),
    max_size=12,
)


def _taken(subscription: RowsSubscription) -> Rows:
    rows = Rows(subscription._rows, subscription._resync, subscription._closed)
    subscription._rows, subscription._resync = {}, False
    return rows


def _said(rows: Rows) -> tuple[list[tuple[str, str, object]], bool]:
    return [(pk, d.action, d.last) for pk, d in rows.changed.items()], rows.resync


@given(CHANGES)
def test_combined_batches_say_what_one_subscription_would_have_kept(
    changes: list[tuple[str, str, bool]],
) -> None:
    group, own = RowsSubscription("g"), RowsSubscription("g")
    batches: list[Rows] = []
    for n, (pk, action, cut) in enumerate(changes):
        delivery = Delivery(action, {"n": str(n)} if action == "delete" else None)  # type: ignore[arg-type]
        group.push_row(pk, delivery)
        if cut:  # the group takes a batch here
            batches.append(_taken(group))
    batches.append(_taken(group))
    for batch in batches:  # what the watch's own subscription would have been handed
        if batch.resync:
            own.push(Delivery("update", None, resync=True))
        for pk, delivery in batch.changed.items():
            own.push_row(pk, delivery)
    assert _said(combined(batches)) == _said(_taken(own))


def test_a_row_deleted_then_back_keeps_the_delete_and_asks_for_a_resync() -> None:
    gone, back = Delivery("delete", {"id": "1"}), Delivery("update", None)
    merged = combined([Rows({"1": gone}), Rows({"1": back})])
    assert merged.changed == {"1": gone} and merged.resync
