"""Observed types whose fields may or may not be shared between viewers, for the
sharing tests: plain columns, fields behind permission classes (strawberry's and
strawberry-django's), resolvers that read the context, and a type whose
``get_queryset`` depends on the viewer, a live list (``members``) with
gated fields, and an owner-only list whose hook a test can break (``ledger``).
``application()`` serves them all; with ``counting=True`` its schema also has
an extension that counts operations."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Iterator
from typing import Any

import strawberry
import strawberry_django
from django.contrib.auth.models import User
from django.db import OperationalError
from django.db.models import Q
from strawberry.extensions import SchemaExtension
from strawberry.permission import BasePermission
from strawberry_django.auth.utils import get_current_user
from strawberry_django.permissions import IsAuthenticated, IsStaff

import gql_observer
from gql_observer.graphql.schema import default_extensions
from schema_examples.notes.models import Note
from schema_examples.notes.schema import NoteFilter, is_owner


class SignedIn(BasePermission):
    message = "User is not authenticated"

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return bool(get_current_user(info).is_authenticated)


def _username(info: strawberry.Info) -> str:
    user = get_current_user(info)
    return str(user.username) if user.is_authenticated else "anonymous"


def _locale(info: strawberry.Info) -> str | None:
    params = info.context["connection_params"] or {}
    value = params.get("locale")
    return value if isinstance(value, str) else None


@gql_observer.observe(User, name="profile")
@strawberry_django.type(User, name="ProfileType")
class ProfileType:
    id: strawberry.auto
    username: strawberry.auto
    email: str = strawberry_django.field(permission_classes=[SignedIn])
    first_name: str | None = strawberry_django.field(extensions=[IsAuthenticated()])
    last_name: str = strawberry_django.field(extensions=[IsStaff(fail_silently=False)])

    @strawberry_django.field
    def viewer(self, info: strawberry.Info) -> str:
        return _username(info)

    @strawberry_django.field
    def locale(self, info: strawberry.Info) -> str | None:
        return _locale(info)


@gql_observer.observe(Note, name="ownNote", list_name="ownNotes", filters=NoteFilter)
@strawberry_django.type(Note, name="OwnNoteType", fields=["id", "title", "body"])
class OwnNoteType:
    """A note as its owner's queryset holds it: other viewers' querysets are empty
    (and the list of one's own notes, ``ownNotes``)."""

    @classmethod
    def get_queryset(cls, queryset: Any, info: strawberry.Info, **kwargs: Any) -> Any:
        user = get_current_user(info)
        if not user.is_authenticated:
            return queryset.none()
        return queryset.filter(owner_id=user.pk)

    @strawberry_django.field
    def viewer(self, info: strawberry.Info) -> str:
        return _username(info)


@gql_observer.observe(Note, name="penNote", list_name="penNotes", filters=NoteFilter)
@strawberry_django.type(Note, name="PenNoteType", fields=["id", "title", "body"])
class PenNoteType:
    """``ownNote`` again, its viewer's notes found through a join (the owner's
    username), as a ``get_queryset`` that names another table does."""

    @classmethod
    def get_queryset(cls, queryset: Any, info: strawberry.Info, **kwargs: Any) -> Any:
        user = get_current_user(info)
        if not user.is_authenticated:
            return queryset.none()
        return queryset.filter(owner__username=user.username)


def anybody(user: Any, note: Note) -> bool:
    """A permission hook that allows every viewer (its cost is what is measured)."""
    return True


@gql_observer.observe(Note, name="openNote", permission=anybody)
@strawberry_django.type(Note, name="OpenNoteType", fields=["id", "title", "body"])
class OpenNoteType:
    """A note any viewer may see, through a ``permission`` hook, with its owner as a
    nested object (whose fields are gated and read the context)."""

    owner: ProfileType


@strawberry_django.type(Note, name="ShelfNoteType", fields=["id", "title"])
class ShelfNoteType:
    """A note on its owner's shelf, with its owner again (a relation of a list)."""

    owner: AuthorType


@strawberry_django.type(User, name="AuthorType", fields=["id", "username"])
class AuthorType:
    """A user as the author of notes: their notes as a list (reverse foreign key),
    and the same list as each viewer's ``get_queryset`` holds it."""

    notes: list[ShelfNoteType]
    own_notes: list[OwnNoteType] = strawberry_django.field(field_name="notes")


@gql_observer.observe(Note, name="book")
@strawberry_django.type(Note, name="BookType", fields=["id", "title"])
class BookType:
    """A note as a book: its author, and the author's books (the optimizer's case)."""

    owner: AuthorType


@gql_observer.observe(User, name="named", lookup="username")
@strawberry_django.type(User, name="NamedType", fields=["id", "username"])
class NamedType:
    """A user found by username (a text lookup): ``named(pk: "test 1")``."""


@strawberry_django.filter_type(User, lookups=True)
class MemberFilter:
    """``members(filters: {username: {startsWith: "s-"}})``, and ``{me: true}``: a
    filter method of the application's own that reads who asks (``info``)."""

    username: strawberry.auto

    @strawberry_django.filter_field
    def me(self, info: strawberry.Info, value: bool, prefix: str) -> Q:
        """Only the viewer's own row (``true``), as a page for that viewer holds it."""
        user = get_current_user(info)
        return Q(**{f"{prefix}pk": user.pk if user.is_authenticated else None}) if value else Q()


class Gate:
    """Holds ``MemberType.gated``'s resolver while a test keeps it closed
    (:meth:`close`): a frame stopped half-way through its execution."""

    entered: asyncio.Event | None = None
    opened: asyncio.Event | None = None

    @classmethod
    def close(cls) -> None:
        """Hold every ``gated`` until :meth:`open` (events of the running loop)."""
        cls.entered, cls.opened = asyncio.Event(), asyncio.Event()

    @classmethod
    def open(cls) -> None:
        """Let every held ``gated`` go on, and hold none from now on."""
        if cls.opened is not None:
            cls.opened.set()
        cls.entered = cls.opened = None


@gql_observer.observe(User, name="member", list_name="members", filters=MemberFilter)
@strawberry_django.type(User, name="MemberType")
class MemberType:
    """A user in a live list: plain columns, one behind a permission class,
    one behind a staff-only permission extension, resolvers that read the
    context (the viewer, its ``connection_params``) and one that a test can
    hold (:class:`Gate`)."""

    id: strawberry.auto
    username: strawberry.auto
    email: str = strawberry_django.field(permission_classes=[SignedIn])
    last_name: str = strawberry_django.field(extensions=[IsStaff(fail_silently=False)])

    @strawberry_django.field
    def viewer(self, info: strawberry.Info) -> str:
        return _username(info)

    @strawberry_django.field
    def locale(self, info: strawberry.Info) -> str | None:
        return _locale(info)

    @strawberry_django.field
    async def gated(self) -> str:
        entered, opened = Gate.entered, Gate.opened
        if entered is not None and opened is not None:
            entered.set()
            await opened.wait()
        return "open"


class Hook:
    """What ``ledger``'s permission hook does besides allowing a note's owner:
    raise for one viewer (``broken_for``, a username: a bug in the hook), or
    raise once per note in ``blips`` as a database that is out of reach for a
    moment does (``OperationalError``)."""

    broken_for: str | None = None
    blips: set[int] = set()
    blipped = 0  # how many times it raised for a blip

    @classmethod
    def reset(cls) -> None:
        cls.broken_for, cls.blips, cls.blipped = None, set(), 0


def owned(user: Any, note: Note) -> bool:
    """``ledger``'s permission hook: the owner's, unless :class:`Hook` says otherwise."""
    if Hook.broken_for is not None and getattr(user, "username", None) == Hook.broken_for:
        raise RuntimeError("a bug in a permission hook")
    if note.pk in Hook.blips:
        Hook.blips.discard(note.pk)
        Hook.blipped += 1
        raise OperationalError("the database is out of reach for a moment")
    return is_owner(user, note)


@gql_observer.observe(
    Note, name="ledgerNote", list_name="ledger", permission=owned, filters=NoteFilter
)
@strawberry_django.type(Note, name="LedgerNoteType", fields=["id", "title"])
class LedgerNoteType:
    """An owner-only note list through a hook a test can break (:class:`Hook`)."""


#: Operations the counting extension saw, by the viewer's username.
EXECUTED: Counter[str] = Counter()


class CountingExtension(SchemaExtension):
    """Counts ``on_execute`` per operation, as strawberry runs it."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context.context
        user = context.get("user") if isinstance(context, dict) else None
        EXECUTED[getattr(user, "username", "") or "anonymous"] += 1
        yield


@strawberry.type
class Query:
    @strawberry.field
    def ping(self) -> str:
        return "pong"

    @strawberry.field
    def broken(self) -> str:
        """The server's own failure (a bug in a resolver)."""
        raise RuntimeError("a bug in a resolver")


@functools.cache
def application(*, counting: bool = False) -> Any:
    """The ASGI application of every observed type (the demo's and these), built once."""
    from gql_observer.asgi import application as build
    from schema_examples.asgi import django_application

    extensions = [*default_extensions(), *([CountingExtension] if counting else [])]
    schema = gql_observer.build_schema(query=Query, extensions=extensions)
    return build(schema, django_application=django_application)
