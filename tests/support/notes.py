"""The demo's notes (each its owner's only) as the tests subscribe to them and edit them."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from gql_observer.testing import GraphQLTransportWSCommunicator
from schema_examples.notes.models import Note

__all__ = [
    "NOTE_FIELDS",
    "NOT_FOUND",
    "SUBSCRIBE_NOTE",
    "UNAUTHORIZED",
    "edit_note",
    "note_envelope",
    "subscribe_note",
]

NOTE_FIELDS = "action errors responseStatus requestId data { id title body }"
SUBSCRIBE_NOTE = f"subscription ($pk: ID!) {{ note(pk: $pk, requestId: 1) {{ {NOTE_FIELDS} }} }}"
NOT_FOUND = ["Not found."]
UNAUTHORIZED = ["Authentication required."]


def note_envelope(
    action: str, status: int, data: Any = None, errors: list[str] | None = None
) -> Any:
    """The ``data`` of a ``note`` frame of :data:`SUBSCRIBE_NOTE`."""
    return {
        "note": {
            "action": action,
            "errors": errors or [],
            "responseStatus": status,
            "requestId": 1,
            "data": data,
        }
    }


async def subscribe_note(client: GraphQLTransportWSCommunicator, note: Note) -> str:
    """Subscribe to ``note``; assert the 201 and return the operation id."""
    op = await client.subscribe(SUBSCRIBE_NOTE, {"pk": note.pk})
    assert await client.next(op) == note_envelope("subscribe_instance", 201)
    return op


@database_sync_to_async
def edit_note(note: Note, **changes: Any) -> None:
    """Set ``changes`` on (a fresh copy of) ``note`` and save it."""
    fresh = Note.objects.get(pk=note.pk)
    for name, value in changes.items():
        setattr(fresh, name, value)
    fresh.save()
