"""The demo's list fields (``users``, ``notes``) as the tests query them,
subscribe to them and apply their events."""

from __future__ import annotations

from typing import Any

from gql_observer.testing import GraphQLTransportWSCommunicator

__all__ = [
    "LIST_NOTES",
    "LIST_USERS",
    "SUBSCRIBE_NOTES",
    "SUBSCRIBE_USERS",
    "apply",
    "list_notes",
    "list_users",
    "row",
    "subscribe_notes",
    "subscribe_users",
]

USER_ROW = "data { id username email }"
LIST_USERS = (
    "query ($filters: UserFilter, $pagination: OffsetPaginationInput, $rid: JSON) {"
    " users(filters: $filters, pagination: $pagination, requestId: $rid) {"
    f" action errors responseStatus requestId {USER_ROW} }} }}"
)
SUBSCRIBE_USERS = (
    "subscription ($filters: UserFilter, $rid: JSON) {"
    " users(filters: $filters, requestId: $rid) {"
    f" action errors responseStatus requestId pk {USER_ROW} }} }}"
)
NOTE_ROW = "data { id title body }"
LIST_NOTES = (
    "query ($filters: NoteFilter, $pagination: OffsetPaginationInput) {"
    " notes(filters: $filters, pagination: $pagination, requestId: 1) {"
    f" action errors responseStatus requestId {NOTE_ROW} }} }}"
)
SUBSCRIBE_NOTES = (
    "subscription ($filters: NoteFilter) { notes(filters: $filters, requestId: 1) {"
    f" action errors responseStatus requestId pk {NOTE_ROW} }} }}"
)


def row(
    field: str, action: str, status: int, pk: Any, data: Any, rid: Any = 1, errors: Any = None
) -> dict[str, Any]:
    """The ``data`` of one frame of a list subscription."""
    return {
        field: {
            "action": action,
            "errors": errors or [],
            "responseStatus": status,
            "requestId": rid,
            "pk": None if pk is None else str(pk),
            "data": data,
        }
    }


async def _query(
    client: GraphQLTransportWSCommunicator, document: str, variables: dict[str, Any]
) -> dict[str, Any]:
    op = await client.subscribe(document, variables)
    answer = await client.next(op)
    await client.expect_complete(op)
    return answer


async def list_users(
    client: GraphQLTransportWSCommunicator,
    filters: Any = None,
    pagination: Any = None,
    rid: Any = 1,
) -> dict[str, Any]:
    """The ``users`` envelope of the list Query."""
    variables = {"filters": filters, "pagination": pagination, "rid": rid}
    return (await _query(client, LIST_USERS, variables))["users"]  # type: ignore[no-any-return]


async def list_notes(
    client: GraphQLTransportWSCommunicator, filters: Any = None, pagination: Any = None
) -> dict[str, Any]:
    """The ``notes`` envelope of the list Query."""
    variables = {"filters": filters, "pagination": pagination}
    return (await _query(client, LIST_NOTES, variables))["notes"]  # type: ignore[no-any-return]


async def subscribe_users(
    client: GraphQLTransportWSCommunicator, filters: Any = None, rid: Any = 1
) -> str:
    """Subscribe to the ``users`` list; assert the first 201 and return the operation id."""
    op = await client.subscribe(SUBSCRIBE_USERS, {"filters": filters, "rid": rid})
    assert await client.next(op) == row("users", "subscribe_list", 201, None, None, rid)
    return op


async def subscribe_notes(client: GraphQLTransportWSCommunicator, filters: Any = None) -> str:
    """Subscribe to the ``notes`` list; assert the first 201 and return the operation id."""
    op = await client.subscribe(SUBSCRIBE_NOTES, {"filters": filters})
    assert await client.next(op) == row("notes", "subscribe_list", 201, None, None)
    return op


def apply(held: dict[str, Any], envelope: dict[str, Any]) -> None:
    """Apply one list event to ``held`` (pk -> row) as a client cache would:
    create/update put ``data`` at ``pk``, delete removes ``pk``."""
    action, pk = envelope["action"], envelope["pk"]
    assert pk is not None, envelope
    if action in ("create", "update"):
        held[pk] = envelope["data"]
    elif action == "delete":
        held.pop(pk, None)
    else:
        raise AssertionError(f"unexpected list event {envelope!r}")
