"""A schema whose resolvers read what a context hook puts in ``info.context``: a
DataLoader of usernames (counting what it loads), a word from the connection's
``connection_params`` that a ``get_queryset`` filters by, and the hook itself
(``CONTEXT_GETTER = "tests.support.context.get_context"``, or its async twin)."""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
import strawberry_django
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from strawberry.dataloader import DataLoader

import gql_observer
from gql_observer import Context
from gql_observer.graphql.schema import default_extensions
from schema_examples.notes.models import Note

__all__ = [
    "CALLS",
    "LOADED",
    "application",
    "async_get_context",
    "bad_get_context",
    "get_context",
    "schema",
]

#: Usernames the loaders read, by user pk (a row read twice counts twice).
LOADED: Counter[int] = Counter()
#: Calls of the hook, by what the context was made for ("http", "ws").
CALLS: Counter[str] = Counter()


def _usernames(pks: list[int]) -> list[str]:
    LOADED.update(pks)
    found = dict(User.objects.filter(pk__in=pks).values_list("pk", "username"))
    return [found.get(pk, "?") for pk in pks]


async def _load_usernames(pks: list[int]) -> list[str]:
    return await sync_to_async(_usernames)(pks)


class Loaders:
    """The DataLoaders of one context, numbered."""

    made = itertools.count(1)

    def __init__(self) -> None:
        self.serial = next(self.made)
        self.usernames: DataLoader[int, str] = DataLoader(load_fn=_load_usernames)


def _word(context: Context) -> str:
    params = context.connection_params or {}
    word = params.get("word")
    return word if isinstance(word, str) else ""


def get_context(context: Context) -> None:
    """The hook: a fresh set of loaders, and the connection's word."""
    CALLS["ws" if context.ws is not None else "http"] += 1
    context.loaders = Loaders()
    context.word = _word(context)


async def async_get_context(context: Context) -> dict[str, Any]:
    """The same, async, answering a dict to merge."""
    CALLS["ws" if context.ws is not None else "http"] += 1
    return {"loaders": Loaders(), "word": _word(context)}


@gql_observer.observe(Note, name="loadedNote")
@strawberry_django.type(Note, name="LoadedNoteType", fields=["id", "title"])
class LoadedNoteType:
    """A note with its owner's username read through the context's DataLoader."""

    @strawberry_django.field(only=["owner_id"])
    async def owner_name(self, info: strawberry.Info) -> str:
        loaders: Loaders = info.context.loaders
        return await loaders.usernames.load(self.owner_id)  # type: ignore[attr-defined]


@strawberry_django.filter_type(Note, lookups=True)
class WordNoteFilter:
    id: strawberry.auto
    title: strawberry.auto


@gql_observer.observe(Note, name="wordNote", list_name="wordNotes", filters=WordNoteFilter)
@strawberry_django.type(Note, name="WordNoteType", fields=["id", "title"])
class WordNoteType:
    """A note whose rows are those whose title holds the context's word (its
    live list too: ``wordNotes``)."""

    @classmethod
    def get_queryset(cls, queryset: Any, info: strawberry.Info, **kwargs: Any) -> Any:
        word = info.context.word
        return queryset.filter(title__contains=word) if word else queryset.none()


@strawberry.type
class ContextQuery:
    @strawberry.field
    def context_seen(self, info: strawberry.Info) -> str:
        """What the context holds, by attribute and by item."""
        context = info.context
        user = gql_observer.get_current_user(info)
        name = user.username if user.is_authenticated else "anonymous"
        return (
            f"{type(context.request).__name__}|{context['word']}|"
            f"{isinstance(context.loaders, Loaders)}|{name}"
        )


@strawberry.type
class Tick:
    """One event of :class:`ContextSubscription`."""

    n: int

    @strawberry.field
    def loaders(self, info: strawberry.Info) -> int:
        """The serial number of the loaders of the context this event ran with."""
        serial: int = info.context.loaders.serial
        return serial


@strawberry.type
class ContextSubscription:
    @strawberry.subscription
    async def ticks(self, count: int) -> AsyncGenerator[Tick, None]:
        """``count`` events of a subscription of the user's own."""
        for n in range(count):
            yield Tick(n=n)


schema = gql_observer.build_schema(
    query=ContextQuery, subscription=ContextSubscription, extensions=default_extensions()
)


@functools.cache
def application() -> Any:
    """The ASGI application of this schema (the one-call helper)."""
    from gql_observer.asgi import application as build
    from schema_examples.asgi import django_application

    return build(schema, django_application=django_application)


def bad_get_context(context: Context) -> int:
    """A hook that answers what a hook may not."""
    return 42
