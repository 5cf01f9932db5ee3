"""The demo's notes (each its owner's only) as the tests subscribe to them and edit them."""

from __future__ import annotations

import random
from typing import Any

from channels.db import database_sync_to_async
from django.db import transaction

from gql_observer.testing import GraphQLTransportWSCommunicator
from schema_examples.notes.models import Note

__all__ = [
    "NOTE_FIELDS",
    "NOT_FOUND",
    "SUBSCRIBE_NOTE",
    "UNAUTHORIZED",
    "change_notes",
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


def change_notes(
    draw: random.Random,
    owners: list[Any],
    alive: list[Note],
    made: list[int],
    marked: set[int] | None = None,
) -> None:
    """One transaction of one to three random changes of ``owners``' notes (run it
    on Django's thread): a delete, a create (a title starting "a" or "b"), a
    transfer or a new title. ``alive`` holds the notes that exist, ``made`` the
    pks of every note made; three changed notes in ten go into ``marked``."""
    with transaction.atomic():
        for _ in range(draw.randint(1, 3)):
            kind = draw.random()
            if kind < 0.15 and alive:
                alive.pop(draw.randrange(len(alive))).delete()
            elif kind < 0.45 or not alive:
                title = draw.choice(("a", "b")) + str(draw.random())
                note = Note.objects.create(owner=draw.choice(owners), title=title)
                alive.append(note)
                made.append(note.pk)
            else:
                note = draw.choice(alive)
                if draw.random() < 0.5:
                    note.owner = draw.choice(owners)
                else:
                    note.title = draw.choice(("a", "b")) + str(draw.random())
                if marked is not None and draw.random() < 0.3:
                    marked.add(note.pk)
                note.save()
