"""The differential proof of sharing: whatever the mix of viewers, documents and
``requestId``\\s, every subscriber served together with the others of its
instance receives byte for byte the frames it receives when it is served alone
(``COHORTS`` off: strawberry's own execution of its operation, with its own
context, and nobody else subscribed).

Hypothesis draws the subscribers (anonymous, users by token, a user by session,
each with its own ``connection_params``), their documents (plain columns, fields
behind strawberry permission classes and strawberry-django permission
extensions, resolvers that read the context, aliases, fragments, envelope
fields, ``requestId`` as a variable or a literal of any JSON kind) and what
happens after they subscribed (saves, a user deactivated, a password changed,
a note given to someone else, a delete). The cohorts this replaced failed it at
once: its first failing example, kept below, is an anonymous subscriber
subscribing after a signed-in one with the same document and variables and
receiving the gated ``email`` (``tests/graphql/test_sharing.py`` names each case).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from hypothesis import example, given
from hypothesis import strategies as st

from gql_observer.core.conf import get_settings
from gql_observer.graphql import viewers
from schema_examples.notes.models import Note
from tests.support import schema as support
from tests.support.differential import REQUEST_IDS, Clock, Subscriber, hunt, literal, serve

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

#: The instance every subscriber of an example watches, by observed field.
TARGET = {"profile": 4, "user": 4, "note": 1, "ownNote": 1, "openNote": 1}
TYPE = {
    "profile": "ProfileType",
    "user": "UserType",
    "note": "NoteType",
    "ownNote": "OwnNoteType",
    "openNote": "OpenNoteType",
}
DATA_FIELDS = {
    "profile": ["id", "username", "email", "firstName", "lastName", "viewer", "locale"],
    "user": ["id", "username", "email"],
    "note": ["id", "title", "body"],
    "ownNote": ["id", "title", "body", "viewer"],
    "openNote": ["id", "title", "body", "owner { id username email viewer locale }"],
}
ENVELOPE_FIELDS = ["errors", "requestId", "resync", "__typename"]
VIEWERS = ["anonymous", "u1", "u2", "u3", "session u1"]
#: What can happen before a step's save (or the delete that ends it). "tokens expire"
#: moves the clock past every token's expiry (sessions do not expire with it).
CHANGES = [
    "nothing",
    "deactivate u2",
    "password u3",
    "password u1",
    "staff u1",
    "give to u2",
    "tokens expire",
]


def _document(draw: Any, field: str, request_id: Any) -> tuple[str, dict[str, Any]]:
    """A subscription to ``field`` that always selects ``action`` and ``responseStatus``
    as ``act`` and ``st`` (the test tells a final frame by them), besides what it draws."""
    aliases = iter(f"a{n}" for n in range(100))

    def named(name: str) -> str:
        return f"{next(aliases)}: {name}" if draw(st.booleans()) and name != "__typename" else name

    envelope = ["act: action", "st: responseStatus"]
    envelope += [named(f) for f in draw(st.lists(st.sampled_from(ENVELOPE_FIELDS), max_size=3))]
    data = [named(f) for f in draw(st.lists(st.sampled_from(DATA_FIELDS[field]), max_size=5))]
    fragments = ""
    if data:
        if draw(st.booleans()):
            fragments = f" fragment F on {TYPE[field]} {{ {' '.join(data)} }}"
            data = ["...F"]
        envelope.append(f"data {{ {' '.join(data)} }}")
    draw(st.randoms()).shuffle(envelope)
    style = draw(st.sampled_from(["variable", "literal", "absent"]))
    variables: dict[str, Any] = {"pk": str(TARGET[field])}
    if style == "variable":
        head = f"subscription Watch($pk: ID!, $rid: JSON) {{ {field}(pk: $pk, requestId: $rid)"
        variables["rid"] = request_id
    elif style == "literal":
        written = literal(request_id)
        head = f"subscription Watch($pk: ID!) {{ {field}(pk: $pk, requestId: {written})"
    else:
        head = f"subscription Watch($pk: ID!) {{ {field}(pk: $pk)"
    return f"{head} {{ {' '.join(envelope)} }} }}{fragments}", variables


@st.composite
def scenarios(draw: Any) -> tuple[str, list[Subscriber], list[str]]:
    field = draw(st.sampled_from(sorted(TARGET)))
    documents = [_document(draw, field, draw(REQUEST_IDS)) for _ in range(draw(st.integers(1, 2)))]
    subscribers = []
    for _ in range(draw(st.integers(1, 4))):
        document, variables = draw(st.sampled_from(documents))
        if "rid" in variables and draw(st.booleans()):
            variables = {**variables, "rid": draw(REQUEST_IDS)}  # its own requestId
        subscribers.append(
            Subscriber(
                draw(st.sampled_from(VIEWERS)),
                draw(st.sampled_from([None, "fr", "de"])),
                document,
                variables,
            )
        )
    steps = draw(st.lists(st.sampled_from(CHANGES), min_size=1, max_size=3))
    if draw(st.booleans()):
        steps.append("delete")
    return field, subscribers, steps


@pytest.fixture(autouse=True)
def _clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Viewer checks read :class:`Clock` (what the library does with the time is
    real; only when "now" is moves)."""
    monkeypatch.setattr(viewers, "time", Clock)


# -- one run ------------------------------------------------------------------------------


def _reset() -> None:
    """Users 1-4 and note 1 as every run starts (no signal: no event; the note
    through the base manager, since ``Note.objects.bulk_create`` announces its
    rows to the subscribers)."""
    Clock.offset = 0.0
    Note.objects.all()._raw_delete(Note.objects.db)
    User.objects.filter(pk=4)._raw_delete(User.objects.db)
    for n in (1, 2, 3):
        User.objects.filter(pk=n).update(
            username=f"test {n}",
            email=f"{n}@example.com",
            first_name=f"First {n}",
            last_name=f"Last {n}",
            is_active=True,
            is_staff=n == 3,
            password=make_password(f"secret-{n}"),
        )
    User.objects.bulk_create(
        [User(pk=4, username="target", email="4@example.com", first_name="T", last_name="L")]
    )
    Note._base_manager.bulk_create([Note(pk=1, owner_id=1, title="title", body="body")])


def _change(change: str, field: str, step: int) -> None:
    """One step: ``change`` to the viewers or the note, then a save (or the delete)."""
    if change == "deactivate u2":
        User.objects.filter(pk=2).update(is_active=False)
    elif change.startswith("password"):
        User.objects.filter(pk=int(change[-1])).update(password=make_password("changed"))
    elif change == "staff u1":
        User.objects.filter(pk=1).update(is_staff=True)
    elif change == "tokens expire":
        Clock.offset = get_settings().token_max_age + 60
    instance: Any = (
        User.objects.get(pk=4) if field in ("profile", "user") else Note.objects.get(pk=1)
    )
    if change == "delete":
        instance.delete()
        return
    if isinstance(instance, User):
        instance.username = f"target {step}"
        instance.first_name = f"T{step}"
    else:
        instance.title = f"title {step}"
        if change == "give to u2":
            instance.owner_id = 2
    instance.save()


async def _run(
    application: Any, field: str, subscribers: list[Subscriber], steps: list[str]
) -> list[list[str]]:
    """Every frame each subscriber received, in order, subscribing them all, then
    applying ``steps``."""
    await database_sync_to_async(_reset)()

    async def step(change: str, number: int) -> None:
        await database_sync_to_async(_change)(change, field, number)

    return await serve(application, subscribers, steps, step)


#: Served together: watches and planned results (the defaults).
SHARED = {"COHORTS": True, "PLANNED_RESULTS": True}
#: The reference: strawberry's own execution of each operation, every event
#: executed by graphql-core (no watch, no planned result).
ALONE = {"COHORTS": False, "PLANNED_RESULTS": False}


async def _compare(
    observer_settings: Callable[..., Any],
    field: str,
    subscribers: list[Subscriber],
    steps: list[str],
) -> None:
    application = support.application()
    observer_settings(**SHARED, SUBSCRIBE_RATE=10_000)
    together = await _run(application, field, subscribers, steps)
    alone = []
    observer_settings(**ALONE, SUBSCRIBE_RATE=10_000)
    for subscriber in subscribers:
        (frames,) = await _run(application, field, [subscriber], steps)
        alone.append(frames)
    for subscriber, shared, own in zip(subscribers, together, alone, strict=True):
        assert shared == own, subscriber


ANONYMOUS_AFTER_ALICE = (
    "profile",
    [
        Subscriber(
            viewer,
            None,
            "subscription Watch($pk: ID!, $rid: JSON) { profile(pk: $pk, requestId: $rid)"
            " { act: action st: responseStatus data { email viewer } } }",
            {"pk": "4", "rid": 1},
        )
        for viewer in ("u1", "anonymous")
    ],
    ["nothing"],
)


#: A nested owner (gated fields, resolvers reading the context) seen by three
#: viewers, then every token expiring: the session viewer goes on alone.
NESTED_THEN_EXPIRY = (
    "openNote",
    [
        Subscriber(
            viewer,
            locale,
            "subscription Watch($pk: ID!, $rid: JSON) { openNote(pk: $pk, requestId: $rid)"
            " { act: action st: responseStatus requestId"
            " data { title owner { username email firstName viewer locale } } } }",
            {"pk": "1", "rid": rid},
        )
        for viewer, locale, rid in (
            ("u1", "fr", 1),
            ("anonymous", None, "x"),
            ("session u1", "de", None),
            ("u3", None, 1),
        )
    ],
    ["nothing", "tokens expire", "nothing"],
)


@hunt(40)
@example(scenario=ANONYMOUS_AFTER_ALICE)
@example(scenario=NESTED_THEN_EXPIRY)
@given(scenario=scenarios())
async def test_every_subscriber_gets_the_frames_it_gets_alone(
    users: list[User],
    observer_settings: Callable[..., Any],
    scenario: tuple[str, list[Subscriber], list[str]],
) -> None:
    await _compare(observer_settings, *scenario)
