"""Owned notes: ``note(pk)`` is visible to its owner only, on every event."""

from __future__ import annotations

from typing import Any

import strawberry
import strawberry_django
from asgiref.sync import sync_to_async
from django.contrib.auth import authenticate, get_user_model
from strawberry import Info

import gql_observer
from gql_observer import ClientError

from .models import Note


def is_owner(user: Any, note: Note) -> bool:
    return bool(getattr(user, "is_authenticated", False)) and note.owner_id == user.pk


@strawberry_django.filter_type(Note, lookups=True)
class NoteFilter:
    """``notes(filters: {title: {contains: "plan"}})``: among your own notes."""

    id: strawberry.auto
    title: strawberry.auto


# notes(...) lists only the viewer's own notes: the permission hook decides it,
# as it does for note(pk).
@gql_observer.observe(Note, permission=is_owner, login_required=True, filters=NoteFilter)
@strawberry_django.type(Note, fields=["id", "title", "body"])
class NoteType:
    pass


def _user(info: Info) -> Any:
    user = info.context.get("user")
    if not getattr(user, "is_authenticated", False):
        raise ClientError("Authentication required: log in or send a token.")
    return user


def _owned(user: Any, pk: strawberry.ID) -> Note:
    note = Note.objects.filter(pk=pk).first() if str(pk).isdigit() else None
    if note is None or not is_owner(user, note):
        raise ClientError(f"No note with pk {pk!r}.")
    return note


@sync_to_async
def _login(username: str, password: str) -> str:
    user = authenticate(username=username, password=password)
    if user is None:
        raise ClientError("Wrong username or password.")
    return gql_observer.issue_token(user)


@sync_to_async
def _create(user: Any, title: str, body: str) -> Note:
    return Note.objects.create(owner=user, title=title, body=body)


@sync_to_async
def _update(user: Any, pk: strawberry.ID, title: str | None, body: str | None) -> Note:
    note = _owned(user, pk)
    if title is not None:
        note.title = title
    if body is not None:
        note.body = body
    note.save()
    return note


@sync_to_async
def _transfer(user: Any, pk: strawberry.ID, new_owner: strawberry.ID) -> Note:
    note = _owned(user, pk)
    owner = get_user_model()._default_manager.filter(pk=new_owner).first()
    if owner is None:
        raise ClientError(f"No user with pk {new_owner!r}.")
    note.owner = owner
    note.save()
    return note


@sync_to_async
def _delete(user: Any, pk: strawberry.ID) -> Note:
    note = _owned(user, pk)
    pk_value = note.pk
    note.delete()
    note.pk = pk_value
    return note


@strawberry.type
class NoteMutation:
    @strawberry.mutation(description="A token for connection_init or Authorization: Bearer.")
    async def login(self, username: str, password: str) -> str:
        return await _login(username, password)

    @strawberry.mutation(description="Create a note owned by the current user.")
    async def create_note(self, info: Info, title: str, body: str = "") -> NoteType:
        return await _create(_user(info), title, body)  # type: ignore[return-value]

    @strawberry.mutation(description="Edit one of your notes.")
    async def update_note(
        self, info: Info, pk: strawberry.ID, title: str | None = None, body: str | None = None
    ) -> NoteType:
        return await _update(_user(info), pk, title, body)  # type: ignore[return-value]

    @strawberry.mutation(description="Give one of your notes to another user.")
    async def transfer_note(
        self, info: Info, pk: strawberry.ID, new_owner: strawberry.ID
    ) -> NoteType:
        return await _transfer(_user(info), pk, new_owner)  # type: ignore[return-value]

    @strawberry.mutation(description="Delete one of your notes.")
    async def delete_note(self, info: Info, pk: strawberry.ID) -> NoteType:
        return await _delete(_user(info), pk)  # type: ignore[return-value]
