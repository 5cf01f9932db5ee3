"""The differential proof of sharing, for contexts a context hook makes
(``CONTEXT_GETTER``, sync or async): every subscriber served together with the
others of its instance receives byte for byte the frames it receives alone
(``COHORTS`` and ``PLANNED_RESULTS`` off: strawberry's own execution with its
own context), when its fields read the hook's DataLoaders and its type's
``get_queryset`` reads the hook's ``word`` (from the subscriber's own
``connection_params``). Sharing may never serve one subscriber's context to
another: a loader's answer, a row another word lets through."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from hypothesis import example, given
from hypothesis import strategies as st

from gql_observer.testing import settle
from schema_examples.notes.models import Note
from tests.support import context as support
from tests.support.clients import PONG
from tests.support.differential import (
    REQUEST_IDS,
    Subscriber,
    connect,
    frame,
    hunt,
    literal,
    serve,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

HOOKS = ["tests.support.context.get_context", "tests.support.context.async_get_context"]
DATA_FIELDS = {"loadedNote": ["id", "title", "ownerName"], "wordNote": ["id", "title"]}
VIEWERS = ["anonymous", "u1", "u2"]
#: Words a subscriber's connection sends (``None``: none); ``wordNote`` holds the
#: note while its title contains the word.
WORDS = [None, "plan", "x", "pl"]
#: What a step does to note 1 before it is saved (or deleted).
CHANGES = ["title plan", "title x", "title other", "give to u2"]


@st.composite
def _subscriber(draw: Any, field: str) -> Subscriber:
    """A subscription to note 1 that always selects ``action`` and
    ``responseStatus`` as ``act`` and ``st`` (a final frame is told by them)."""
    envelope = ["act: action", "st: responseStatus"]
    data = draw(st.lists(st.sampled_from(DATA_FIELDS[field]), max_size=3, unique=True))
    if data:
        envelope.append(f"data {{ {' '.join(data)} }}")
    if draw(st.booleans()):
        envelope.append("requestId")
    request_id = draw(REQUEST_IDS)
    variables: dict[str, Any] = {"pk": "1"}
    if draw(st.booleans()):
        head = f"subscription Watch($pk: ID!, $rid: JSON) {{ {field}(pk: $pk, requestId: $rid)"
        variables["rid"] = request_id
    else:
        head = f"subscription Watch($pk: ID!) {{ {field}(pk: $pk, requestId: {literal(request_id)})"
    return Subscriber(
        draw(st.sampled_from(VIEWERS)),
        None,
        f"{head} {{ {' '.join(envelope)} }} }}",
        variables,
        draw(st.sampled_from(WORDS)),
    )


@st.composite
def scenarios(draw: Any) -> tuple[str, str, list[Subscriber], list[str]]:
    field = draw(st.sampled_from(sorted(DATA_FIELDS)))
    subscribers = draw(st.lists(_subscriber(field), min_size=1, max_size=4))
    steps = draw(st.lists(st.sampled_from(CHANGES), min_size=1, max_size=3))
    if draw(st.booleans()):
        steps.append("delete")
    return draw(st.sampled_from(HOOKS)), field, subscribers, steps


def _reset() -> None:
    """Note 1 of user 1, titled "plan x 0": every word lets it through (made
    through the base manager: no event)."""
    Note.objects.all()._raw_delete(Note.objects.db)
    Note._base_manager.bulk_create([Note(pk=1, owner_id=1, title="plan x 0", body="")])


def _change(change: str, step: int) -> None:
    note = Note.objects.get(pk=1)
    if change == "delete":
        note.delete()
        return
    if change == "give to u2":
        note.owner_id = 2
    else:
        note.title = f"{change.split()[1]} {step}"
    note.save()


async def _run(subscribers: list[Subscriber], steps: list[str]) -> list[list[str]]:
    """Every frame each subscriber received, in order: all subscribe, then ``steps``."""
    await database_sync_to_async(_reset)()

    async def step(change: str, number: int) -> None:
        await database_sync_to_async(_change)(change, number)

    return await serve(support.application(), subscribers, steps, step)


#: One viewer with two words (two contexts the hook made for the same user) and
#: another word: each sees the note while its own word lets it through.
TWO_WORDS = (
    HOOKS[1],
    "wordNote",
    [
        Subscriber(
            viewer,
            None,
            "subscription Watch($pk: ID!, $rid: JSON) { wordNote(pk: $pk, requestId: $rid)"
            " { act: action st: responseStatus requestId data { title } } }",
            {"pk": "1", "rid": rid},
            word,
        )
        for viewer, word, rid in (("u1", "plan", 1), ("u1", "x", 2), ("anonymous", "pl", 3))
    ],
    ["title x", "title plan"],
)


async def _together_as_alone(
    observer_settings: Callable[..., Any],
    hook: str,
    subscribers: list[Subscriber],
    steps: Any,
    run: Callable[[list[Subscriber], Any], Awaitable[list[list[str]]]],
) -> None:
    """Served together (shared), each subscriber's frames equal those it gets
    served alone through strawberry (nothing shared), under the context ``hook``."""
    observer_settings(
        CONTEXT_GETTER=hook, COHORTS=True, PLANNED_RESULTS=True, SUBSCRIBE_RATE=10_000
    )
    together = await run(subscribers, steps)
    observer_settings(
        CONTEXT_GETTER=hook, COHORTS=False, PLANNED_RESULTS=False, SUBSCRIBE_RATE=10_000
    )
    alone = [(await run([subscriber], steps))[0] for subscriber in subscribers]
    for subscriber, shared, own in zip(subscribers, together, alone, strict=True):
        assert shared == own, subscriber


@hunt(25)
@example(scenario=TWO_WORDS)
@given(scenario=scenarios())
async def test_every_subscriber_gets_the_frames_it_gets_alone_whatever_its_hooks_context(
    users: list[User],
    observer_settings: Callable[..., Any],
    scenario: tuple[str, str, list[Subscriber], list[str]],
) -> None:
    hook, _field, subscribers, steps = scenario
    await _together_as_alone(observer_settings, hook, subscribers, steps, _run)


# -- live lists ---------------------------------------------------------------------------

#: Filters of ``wordNotes`` a subscriber may send (``None``: none).
LIST_FILTERS: list[dict[str, Any] | None] = [
    None,
    {"title": {"contains": "a"}},
    {"title": {"startsWith": "plan"}},
]
#: Steps on the notes: a new one (its title), a retitle of note 1, 2 or 3, a delete.
LIST_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.sampled_from(["plan a", "x a", "plan x", "other"])),
        st.tuples(st.just("retitle"), st.integers(1, 3), st.sampled_from(["plan", "x", "pl a"])),
        st.tuples(st.just("delete"), st.integers(1, 3)),
    ),
    min_size=1,
    max_size=5,
)


@st.composite
def _list_subscriber(draw: Any) -> Subscriber:
    envelope = ["act: action", "st: responseStatus", "pk"]
    if draw(st.booleans()):
        envelope.append("data { title }")
    if draw(st.booleans()):
        envelope.append("requestId")
    variables: dict[str, Any] = {"f": draw(st.sampled_from(LIST_FILTERS)), "rid": draw(REQUEST_IDS)}
    document = (
        "subscription Watch($f: WordNoteFilter, $rid: JSON) {"
        f" wordNotes(filters: $f, requestId: $rid) {{ {' '.join(envelope)} }} }}"
    )
    return Subscriber(
        draw(st.sampled_from(VIEWERS)), None, document, variables, draw(st.sampled_from(WORDS))
    )


@st.composite
def list_scenarios(draw: Any) -> tuple[str, list[Subscriber], list[tuple[Any, ...]]]:
    subscribers = draw(st.lists(_list_subscriber(), min_size=1, max_size=4))
    return draw(st.sampled_from(HOOKS)), subscribers, draw(LIST_STEPS)


def _list_reset() -> None:
    """Notes 1-3 (made through the base manager: no event)."""
    Note.objects.all()._raw_delete(Note.objects.db)
    Note._base_manager.bulk_create(
        [
            Note(pk=pk, owner_id=1, title=title, body="")
            for pk, title in ((1, "plan a 0"), (2, "x 0"), (3, "plan x 0"))
        ]
    )


def _list_step(step: tuple[Any, ...], number: int) -> None:
    if step[0] == "create":
        Note.objects.create(pk=100 + number, owner_id=1, title=f"{step[1]} {number}")
        return
    note = Note.objects.filter(pk=step[1]).first()
    if note is None:
        return
    if step[0] == "delete":
        note.delete()
    else:
        note.title = f"{step[2]} {number}"
        note.save()


async def _list_run(subscribers: list[Subscriber], steps: list[tuple[Any, ...]]) -> list[list[str]]:
    """Every frame each list subscriber received, in order: all subscribe (each
    one's first frame read), each step is handled in turn (the runtime settles
    after each), then every frame written before a ping's pong."""
    await database_sync_to_async(_list_reset)()
    application = support.application()
    clients = [await connect(application, s) for s in subscribers]
    frames: list[list[str]] = []
    for client, subscriber in zip(clients, subscribers, strict=True):
        await client.subscribe(subscriber.document, subscriber.variables, operation_name="Watch")
        frames.append([await frame(client)])  # its first frame (201, 401 or 400)
    for number, step in enumerate(steps, start=1):
        await database_sync_to_async(_list_step)(step, number)
        await settle()
    for client, got in zip(clients, frames, strict=True):
        await client.send({"type": "ping"})
        while (text := await frame(client)) != json.dumps(PONG, separators=(",", ":")):
            got.append(text)
        await client.disconnect()
    return frames


#: One viewer with two words, one filter: two sets, since each word is its own.
LIST_TWO_WORDS = (
    HOOKS[0],
    [
        Subscriber(
            "u1",
            None,
            "subscription Watch($f: WordNoteFilter, $rid: JSON) {"
            " wordNotes(filters: $f, requestId: $rid) { act: action st: responseStatus pk"
            " requestId data { title } } }",
            {"f": {"title": {"contains": "a"}}, "rid": rid},
            word,
        )
        for word, rid in (("plan", 1), ("x", 2))
    ],
    [("create", "x a"), ("retitle", 1, "pl a"), ("create", "plan a")],
)


@hunt(25)
@example(scenario=LIST_TWO_WORDS)
@given(scenario=list_scenarios())
async def test_every_list_subscriber_gets_the_frames_it_gets_alone_whatever_its_hooks_context(
    users: list[User],
    observer_settings: Callable[..., Any],
    scenario: tuple[str, list[Subscriber], list[tuple[Any, ...]]],
) -> None:
    hook, subscribers, steps = scenario
    await _together_as_alone(observer_settings, hook, subscribers, steps, _list_run)
