"""Changes Django sends no post_save for: many-to-many, ``QuerySet.update``,
``bulk_update``, ``bulk_create`` and ``notify``. The server is a demo process of
its own on the test's database; this process writes, and every change crosses
real Redis to it. Runs on SQLite and, with GQLOBS_TEST_DB=postgres, on PostgreSQL.

Where nothing may arrive, a later change that must arrive is made and the next
frame must be that one (a barrier), rather than waiting for silence."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User
from django.db import transaction

import gql_observer
from gql_observer.changes.signals import announce, change
from schema_examples.notes.models import Note
from tests.support.live import LiveSocket, delete_keys, redis_layers, server_env
from tests.support.notes import NOTE_FIELDS
from tests.support.servers import DemoServer, Servers

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.db_matrix,
    pytest.mark.timeout(120),
]

USER = (
    "subscription ($pk: ID!) { user(pk: $pk, requestId: 1) "
    "{ action responseStatus data { id username email groups { id name } } } }"
)
NOTE = f"subscription ($pk: ID!) {{ note(pk: $pk, requestId: 1) {{ {NOTE_FIELDS} }} }}"


class Live:
    """The server process and the Redis prefix it listens under."""

    def __init__(self, server: DemoServer, prefix: str) -> None:
        self.server = server
        self.prefix = prefix


@pytest.fixture(scope="module")
def live(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """One demo server for the module, on the test database (its seed users are
    flushed with the first test) and the shared Redis under a prefix of its own."""
    prefix = f"unsig{os.getpid()}"
    started = Servers(Path(tmp_path_factory.mktemp("unsignalled")))
    with django_db_blocker.unblock():
        env = server_env(prefix, str(django_settings.SECRET_KEY))
    try:
        yield Live(started.demo(env), prefix)
    finally:
        started.close()
        delete_keys(prefix)


@pytest.fixture
def writer(live: Live, settings: Any, users: list[User]) -> Live:
    """This process writes on the server's Redis (no server of its own)."""
    settings.CHANNEL_LAYERS = redis_layers(live.prefix)
    return live


@pytest.fixture
async def socket(writer: Live) -> AsyncIterator[LiveSocket]:
    client = await LiveSocket.connect(writer.server.ws)
    yield client
    await client.close()


async def subscribe_user(socket: LiveSocket, pk: int) -> str:
    op, first = await socket.subscribe(USER, {"pk": pk})
    assert first["user"] == {"action": "subscribe_instance", "responseStatus": 201, "data": None}
    return op


async def user_seen(socket: LiveSocket, op: str) -> dict[str, Any]:
    """The user of the next frame, which must be an update of ``op``."""
    envelope = (await socket.next(op))["user"]
    assert envelope["action"] == "update" and envelope["responseStatus"] == 200, envelope
    return dict(envelope["data"])


async def users_seen(socket: LiveSocket, count: int) -> dict[str, dict[str, Any]]:
    """The next ``count`` frames (of different operations, in any order), each
    an update: operation id -> user."""
    seen = {}
    for _ in range(count):
        op, data = await socket.next_any()
        assert data["user"]["action"] == "update", data
        assert op not in seen, f"two frames of {op}"
        seen[op] = dict(data["user"]["data"])
    return seen


def groups_of(user: dict[str, Any]) -> list[str]:
    return sorted(group["name"] for group in user["groups"])


@database_sync_to_async
def write(code: Any) -> Any:
    """Run ``code()`` in a database thread of this process."""
    return code()


def make_groups(*names: str) -> list[Group]:
    return [Group.objects.create(name=name) for name in names]


# ---- many-to-many ---------------------------------------------------------------------


async def test_adding_a_group_to_a_user_reaches_the_users_subscribers(socket: LiveSocket) -> None:
    op = await subscribe_user(socket, 1)
    await write(lambda: User.objects.get(pk=1).groups.add(*make_groups("editors")))
    assert groups_of(await user_seen(socket, op)) == ["editors"]


async def test_adding_a_user_from_the_groups_side_reaches_the_users_subscribers(
    socket: LiveSocket,
) -> None:
    one, two = await subscribe_user(socket, 1), await subscribe_user(socket, 2)

    def add() -> None:
        (group,) = make_groups("readers")
        group.user_set.add(User.objects.get(pk=2))
        User.objects.get(pk=1).save()  # the barrier: user 1 hears only this

    await write(add)
    seen = await users_seen(socket, 2)
    assert {op: groups_of(user) for op, user in seen.items()} == {two: ["readers"], one: []}


async def test_removing_a_group_from_either_side_reaches_the_users_subscribers(
    socket: LiveSocket,
) -> None:
    op = await subscribe_user(socket, 1)
    groups = await write(lambda: make_groups("a", "b", "c"))
    await write(lambda: User.objects.get(pk=1).groups.add(*groups))
    assert groups_of(await user_seen(socket, op)) == ["a", "b", "c"]
    await write(lambda: User.objects.get(pk=1).groups.remove(groups[0]))
    assert groups_of(await user_seen(socket, op)) == ["b", "c"]
    await write(lambda: groups[1].user_set.remove(User.objects.get(pk=1)))
    assert groups_of(await user_seen(socket, op)) == ["c"]


async def test_clearing_a_users_groups_reaches_its_subscribers(socket: LiveSocket) -> None:
    op = await subscribe_user(socket, 1)
    await write(lambda: User.objects.get(pk=1).groups.add(*make_groups("a", "b")))
    assert groups_of(await user_seen(socket, op)) == ["a", "b"]
    await write(lambda: User.objects.get(pk=1).groups.clear())
    assert groups_of(await user_seen(socket, op)) == []


async def test_clearing_a_groups_users_reaches_every_user_it_held(socket: LiveSocket) -> None:
    # The rows are gone after the clear: their pks are read before it.
    one, two, three = [await subscribe_user(socket, pk) for pk in (1, 2, 3)]

    def fill() -> Group:
        (group,) = make_groups("staff")
        group.user_set.add(*User.objects.filter(pk__in=[1, 2]))
        return group

    group = await write(fill)
    seen = await users_seen(socket, 2)
    assert {op: groups_of(user) for op, user in seen.items()} == {one: ["staff"], two: ["staff"]}

    def clear() -> None:
        group.user_set.clear()
        User.objects.get(pk=3).save()  # the barrier: user 3 was never in the group

    await write(clear)
    seen = await users_seen(socket, 3)
    assert {op: groups_of(user) for op, user in seen.items()} == {one: [], two: [], three: []}


async def test_setting_a_users_groups_delivers_the_set_it_ends_with(socket: LiveSocket) -> None:
    op = await subscribe_user(socket, 1)
    groups = await write(lambda: make_groups("a", "b", "c"))
    await write(lambda: User.objects.get(pk=1).groups.add(groups[0]))
    assert groups_of(await user_seen(socket, op)) == ["a"]
    # set() removes and adds in one transaction: one change of the user.
    await write(lambda: User.objects.get(pk=1).groups.set(groups[1:]))
    assert groups_of(await user_seen(socket, op)) == ["b", "c"]
    await write(lambda: User.objects.filter(pk=1).update(email="barrier@example.com"))
    await write(lambda: gql_observer.notify(User, [1]))
    assert (await user_seen(socket, op))["email"] == "barrier@example.com"


async def test_a_rolled_back_many_to_many_change_sends_nothing(socket: LiveSocket) -> None:
    op = await subscribe_user(socket, 1)

    def rolled_back() -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            User.objects.get(pk=1).groups.add(*make_groups("never"))
            raise RuntimeError("abort")

    await write(rolled_back)
    await write(lambda: User.objects.get(pk=1).groups.add(*make_groups("kept")))
    assert groups_of(await user_seen(socket, op)) == ["kept"]


# ---- notify -------------------------------------------------------------------------


async def test_notify_after_a_queryset_update_reaches_the_subscribers_after_the_commit(
    socket: LiveSocket,
) -> None:
    op = await subscribe_user(socket, 3)

    def update() -> None:
        with transaction.atomic():
            User.objects.filter(pk=3).update(email="new@example.com")
            gql_observer.notify(User, [3])
            # Nothing may leave before the commit.
            assert transaction.get_connection().run_on_commit

    await write(update)
    assert (await user_seen(socket, op))["email"] == "new@example.com"


async def test_notify_rolled_back_sends_nothing(socket: LiveSocket) -> None:
    op = await subscribe_user(socket, 3)

    def rolled_back() -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            User.objects.filter(pk=3).update(email="rolled@example.com")
            gql_observer.notify(User, [3])
            raise RuntimeError("abort")

    await write(rolled_back)
    await write(lambda: User.objects.filter(pk=3).update(email="after@example.com"))
    await write(lambda: gql_observer.notify(User, ["3"]))
    assert (await user_seen(socket, op))["email"] == "after@example.com"


async def test_notify_in_a_rolled_back_savepoint_sends_nothing_of_it(socket: LiveSocket) -> None:
    one, two = await subscribe_user(socket, 1), await subscribe_user(socket, 2)

    def write_both() -> None:
        with transaction.atomic():
            try:
                with transaction.atomic():
                    gql_observer.notify(User, [1])
                    raise RuntimeError("abort savepoint")
            except RuntimeError:
                pass
            gql_observer.notify(User, [2])

    await write(write_both)
    assert (await user_seen(socket, two))["id"] == "2"
    # The barrier: user 1's next frame shows a change made after.
    await write(lambda: User.objects.filter(pk=1).update(email="barrier@example.com"))
    await write(lambda: gql_observer.notify(User, [1]))
    assert (await user_seen(socket, one))["email"] == "barrier@example.com"


async def test_notify_of_a_queryset_reaches_each_row_once_per_transaction(
    socket: LiveSocket,
) -> None:
    one, two = await subscribe_user(socket, 1), await subscribe_user(socket, 2)

    def notify_twice() -> None:
        with transaction.atomic():
            User.objects.filter(pk__in=[1, 2]).update(email="both@example.com")
            gql_observer.notify(User.objects.filter(pk__in=[1, 2]))
            gql_observer.notify(User, [1, 1, "1"])

    await write(notify_twice)
    seen = await users_seen(socket, 2)
    assert {op: user["email"] for op, user in seen.items()} == {
        one: "both@example.com",
        two: "both@example.com",
    }
    # Once each: the next frame is the barrier's.
    await write(lambda: User.objects.filter(pk=1).update(email="barrier@example.com"))
    await write(lambda: gql_observer.notify(User, [1]))
    assert (await user_seen(socket, one))["email"] == "barrier@example.com"


# ---- the demo's Note: ObservedManager ---------------------------------------------------


@pytest.fixture
async def notes_socket(writer: Live) -> AsyncIterator[tuple[LiveSocket, list[Note]]]:
    """An owner's socket and three of its notes."""

    def make() -> tuple[str, list[Note]]:
        owner = User.objects.get(pk=1)
        notes = [Note.objects.create(owner=owner, title=f"note {n}") for n in range(3)]
        return gql_observer.issue_token(owner), notes

    token, notes = await write(make)
    client = await LiveSocket.connect(writer.server.ws, token)
    yield client, notes
    await client.close()


async def subscribe_notes(socket: LiveSocket, notes: list[Note]) -> dict[str, int]:
    """Subscribe to each note; operation id -> note pk."""
    ops = {}
    for note in notes:
        op, first = await socket.subscribe(NOTE, {"pk": note.pk})
        assert first["note"]["action"] == "subscribe_instance", first
        ops[op] = note.pk
    return ops


async def titles_seen(socket: LiveSocket, ops: dict[str, int]) -> dict[int, str]:
    """The next frame of each of ``ops`` (in any order): note pk -> title."""
    seen = {}
    for _ in ops:
        op, data = await socket.next_any()
        assert op in ops and ops[op] not in seen, f"an unexpected frame of {op}: {data}"
        assert data["note"]["action"] == "update" and data["note"]["responseStatus"] == 200
        seen[ops[op]] = data["note"]["data"]["title"]
    return seen


async def test_a_queryset_update_of_notes_reaches_each_notes_subscribers(
    notes_socket: tuple[LiveSocket, list[Note]],
) -> None:
    socket, notes = notes_socket
    ops = await subscribe_notes(socket, notes)
    rows = await write(lambda: Note.objects.filter(owner_id=1).update(title="renamed"))
    assert rows == 3
    assert await titles_seen(socket, ops) == {note.pk: "renamed" for note in notes}


async def test_a_queryset_update_reaches_only_the_rows_it_matched(
    notes_socket: tuple[LiveSocket, list[Note]],
) -> None:
    socket, notes = notes_socket
    ops = await subscribe_notes(socket, notes)
    first = {op: pk for op, pk in ops.items() if pk == notes[0].pk}
    others = {op: pk for op, pk in ops.items() if pk != notes[0].pk}
    await write(lambda: Note.objects.filter(pk=notes[0].pk).update(title="only this"))
    assert await titles_seen(socket, first) == {notes[0].pk: "only this"}
    # The barrier: the other notes' next frames show a change made after.
    await write(lambda: Note.objects.exclude(pk=notes[0].pk).update(title="barrier"))
    assert await titles_seen(socket, others) == {notes[1].pk: "barrier", notes[2].pk: "barrier"}


async def test_a_rolled_back_queryset_update_sends_nothing(
    notes_socket: tuple[LiveSocket, list[Note]],
) -> None:
    socket, notes = notes_socket
    ops = await subscribe_notes(socket, notes[:1])

    def rolled_back() -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            Note.objects.all().update(title="never")
            raise RuntimeError("abort")

    await write(rolled_back)
    await write(lambda: Note.objects.filter(pk=notes[0].pk).update(title="after"))
    assert await titles_seen(socket, ops) == {notes[0].pk: "after"}


async def test_bulk_update_of_notes_reaches_each_notes_subscribers(
    notes_socket: tuple[LiveSocket, list[Note]],
) -> None:
    socket, notes = notes_socket
    ops = await subscribe_notes(socket, notes)
    for note in notes:
        note.title = f"bulk {note.pk}"
    await write(lambda: Note.objects.bulk_update(notes, ["title"], batch_size=2))
    assert await titles_seen(socket, ops) == {note.pk: f"bulk {note.pk}" for note in notes}


async def test_bulk_create_reaches_no_instance_subscriber_and_breaks_nothing(
    notes_socket: tuple[LiveSocket, list[Note]],
) -> None:
    socket, notes = notes_socket
    ops = await subscribe_notes(socket, notes[:1])

    def create() -> list[Note]:
        owner = User.objects.get(pk=1)
        return Note.objects.bulk_create(Note(owner=owner, title=f"new {n}") for n in range(5))

    created = await write(create)
    assert all(note.pk is not None for note in created)
    # A created row had no subscriber: the next frame is the barrier's update.
    await write(lambda: Note.objects.filter(pk=notes[0].pk).update(title="barrier"))
    assert await titles_seen(socket, ops) == {notes[0].pk: "barrier"}
    # The created notes are live: a subscriber of one hears its updates.
    more = await subscribe_notes(socket, created[:1])
    await write(lambda: Note.objects.filter(pk=created[0].pk).update(title="edited"))
    assert await titles_seen(socket, more) == {created[0].pk: "edited"}


async def test_a_create_event_of_a_subscribed_instance_sends_its_subscribers_nothing(
    notes_socket: tuple[LiveSocket, list[Note]],
) -> None:
    # bulk_create announces "create" for list subscribers; should one ever name
    # a row somebody subscribed to (an explicit pk reused), the instance's
    # subscribers must not hear of it.
    socket, notes = notes_socket
    ops = await subscribe_notes(socket, notes[:1])

    def create_then_update() -> None:
        announce([change(Note, notes[0].pk, "create")], "default")
        assert gql_observer.flush(10)  # on Redis before the update below
        Note.objects.filter(pk=notes[0].pk).update(title="barrier")

    await write(create_then_update)
    assert await titles_seen(socket, ops) == {notes[0].pk: "barrier"}


async def test_bulk_create_updating_on_conflict_reaches_the_existing_rows_subscribers(
    notes_socket: tuple[LiveSocket, list[Note]],
) -> None:
    socket, notes = notes_socket
    ops = await subscribe_notes(socket, notes[:1])

    def upsert() -> None:
        Note.objects.bulk_create(
            [Note(pk=notes[0].pk, owner_id=1, title="upserted")],
            update_conflicts=True,
            unique_fields=["id"],
            update_fields=["title"],
        )

    await write(upsert)
    assert await titles_seen(socket, ops) == {notes[0].pk: "upserted"}


# ---- the same writes, seen by `notes(...)` list subscribers ----------------------------

NOTES = (
    "subscription ($filters: NoteFilter) { notes(filters: $filters, requestId: 1) "
    "{ action responseStatus pk data { title } } }"
)


async def subscribe_notes_list(socket: LiveSocket, filters: dict[str, Any]) -> str:
    op, first = await socket.subscribe(NOTES, {"filters": filters})
    assert first["notes"] == {
        "action": "subscribe_list",
        "responseStatus": 201,
        "pk": None,
        "data": None,
    }
    return op


async def list_events(socket: LiveSocket, op: str, count: int) -> dict[str, tuple[str, Any]]:
    """The next ``count`` frames of ``op``: pk -> (action, title or None)."""
    seen: dict[str, tuple[str, Any]] = {}
    for _ in range(count):
        envelope = (await socket.next(op))["notes"]
        data = envelope["data"]
        seen[envelope["pk"]] = (envelope["action"], None if data is None else data["title"])
    return seen


async def past_the_fixture(socket: LiveSocket, op: str, notes: list[Note]) -> None:
    """Wait until the list subscription has seen the fixture's own creations:
    their ``create`` events may reach the server after ``subscribe_list``
    (through Redis), and a row already in the set then gets an ``update`` of
    the state it has. A barrier change of note 0 must come after them."""
    await write(lambda: Note.objects.filter(pk=notes[0].pk).update(title="note ready"))
    created = {str(note.pk): ("update", note.title) for note in notes}
    while True:
        envelope = (await socket.next(op))["notes"]
        title = None if envelope["data"] is None else envelope["data"]["title"]
        seen = (envelope["action"], title)
        if (envelope["pk"], seen) == (str(notes[0].pk), ("update", "note ready")):
            return
        assert created.get(envelope["pk"]) == seen, envelope


async def test_bulk_create_enters_the_owners_list_and_nothing_reaches_another_viewer(
    notes_socket: tuple[LiveSocket, list[Note]], writer: Live
) -> None:
    socket, _ = notes_socket
    mine = await subscribe_notes_list(socket, {"title": {"startsWith": "bulk"}})

    def other_viewer() -> str:
        return gql_observer.issue_token(User.objects.get(pk=2))

    other = await LiveSocket.connect(writer.server.ws, await write(other_viewer))
    try:
        theirs = await subscribe_notes_list(other, {"title": {"startsWith": "bulk"}})

        def create() -> list[Note]:
            owner = User.objects.get(pk=1)
            return Note.objects.bulk_create(
                [Note(owner=owner, title=f"bulk {n}") for n in range(3)]
                + [Note(owner=owner, title="not in the filter")]
            )

        created = await write(create)
        assert await list_events(socket, mine, 3) == {
            str(note.pk): ("create", note.title) for note in created[:3]
        }
        # The other viewer's list holds none of them: its next frame is its own
        # note's creation, made after.
        own = await write(
            lambda: Note.objects.create(owner=User.objects.get(pk=2), title="bulk theirs")
        )
        assert await list_events(other, theirs, 1) == {str(own.pk): ("create", "bulk theirs")}
    finally:
        await other.close()


async def test_queryset_update_changes_enters_and_leaves_a_list(
    notes_socket: tuple[LiveSocket, list[Note]],
) -> None:
    socket, notes = notes_socket
    op = await subscribe_notes_list(socket, {"title": {"startsWith": "note"}})
    await past_the_fixture(socket, op, notes)
    # note 0 stays in (update), note 1 leaves (delete, no data), a renamed note
    # 2 is renamed back in later (create).
    await write(lambda: Note.objects.filter(pk=notes[0].pk).update(title="note zero"))
    assert await list_events(socket, op, 1) == {str(notes[0].pk): ("update", "note zero")}
    await write(lambda: Note.objects.filter(pk__in=[notes[1].pk, notes[2].pk]).update(title="x"))
    assert await list_events(socket, op, 2) == {
        str(notes[1].pk): ("delete", None),
        str(notes[2].pk): ("delete", None),
    }
    await write(lambda: Note.objects.filter(pk=notes[2].pk).update(title="note again"))
    assert await list_events(socket, op, 1) == {str(notes[2].pk): ("create", "note again")}


async def test_bulk_update_transferring_notes_leaves_the_old_owners_list(
    notes_socket: tuple[LiveSocket, list[Note]],
) -> None:
    socket, notes = notes_socket
    op = await subscribe_notes_list(socket, {})
    await past_the_fixture(socket, op, notes)

    def transfer() -> None:
        other = User.objects.get(pk=2)
        for note in notes[:2]:
            note.owner = other
        Note.objects.bulk_update(notes[:2], ["owner"])

    await write(transfer)
    assert await list_events(socket, op, 2) == {
        str(notes[0].pk): ("delete", None),
        str(notes[1].pk): ("delete", None),
    }
    # Gone from the list: a later change of a transferred note says nothing;
    # the next frame is the barrier's, on a note still owned.
    await write(lambda: Note.objects.filter(pk=notes[0].pk).update(title="theirs now"))
    await write(lambda: Note.objects.filter(pk=notes[2].pk).update(title="barrier"))
    assert await list_events(socket, op, 1) == {str(notes[2].pk): ("update", "barrier")}
