"""The seed's User example: ``UserType`` observed, plus mutations to change users
from GraphiQL without a shell. ``password`` is write-only: in no type."""

from __future__ import annotations

import strawberry
import strawberry_django
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError

import gql_observer
from gql_observer import ClientError


@strawberry_django.type(Group, fields=["id", "name"])
class UserGroupType:
    """A group a user is in."""


@strawberry_django.filter_type(User, lookups=True)
class UserFilter:
    """``users(filters: {username: {startsWith: "live-"}})``."""

    id: strawberry.auto
    username: strawberry.auto
    email: strawberry.auto


# groups is many-to-many: user.groups.add(g), group.user_set.add(user),
# remove, clear and set reach user(pk) subscribers (m2m_changed).
@gql_observer.observe(User, filters=UserFilter)
@strawberry_django.type(User, fields=["id", "username", "email"])
class UserType:
    groups: list[UserGroupType]


def _get(pk: strawberry.ID) -> User:
    try:
        return User.objects.get(pk=pk)
    except (User.DoesNotExist, ValueError, ValidationError):
        raise ClientError(f"No user with pk {pk!r}.") from None


def _validated(user: User, fields: set[str]) -> User:
    """Validate the fields being written. Usernames may hold spaces, as the
    seed's do ("test 1", "edited user name"): the character rule of Django's
    username validator is left out, its length and uniqueness are not."""
    exclude = [f.name for f in User._meta.fields if f.name not in fields or f.name == "username"]
    try:
        user.full_clean(exclude=exclude, validate_unique=False)
        if "username" in fields:
            if not user.username or len(user.username) > 150:
                raise ValidationError("A username has 1 to 150 characters.")
            if User.objects.filter(username=user.username).exclude(pk=user.pk).exists():
                raise ValidationError("A user with that username already exists.")
    except ValidationError as error:
        raise ClientError("; ".join(error.messages)) from None
    return user


@sync_to_async
def _create(username: str, email: str, password: str) -> User:
    user = User(username=username, email=email)
    user.set_password(password)
    _validated(user, {"username", "email"}).save()
    return user


@sync_to_async
def _update(pk: strawberry.ID, username: str | None, email: str | None) -> User:
    user = _get(pk)
    changed = set()
    if username is not None:
        user.username, changed = username, changed | {"username"}
    if email is not None:
        user.email, changed = email, changed | {"email"}
    _validated(user, changed).save()
    return user


@sync_to_async
def _delete(pk: strawberry.ID) -> User:
    user = _get(pk)
    pk_value = user.pk
    user.delete()
    user.pk = pk_value  # Django clears it; the answer still names the user
    return user


@strawberry.type
class UserMutation:
    @strawberry.mutation(description="Create a user; the password is stored hashed.")
    async def create_user(self, username: str, email: str, password: str) -> UserType:
        return await _create(username, email, password)  # type: ignore[return-value]

    @strawberry.mutation(description="Change a user's username and/or email.")
    async def update_user(
        self, pk: strawberry.ID, username: str | None = None, email: str | None = None
    ) -> UserType:
        return await _update(pk, username, email)  # type: ignore[return-value]

    @strawberry.mutation(description="Delete a user; answers with its last values.")
    async def delete_user(self, pk: strawberry.ID) -> UserType:
        return await _delete(pk)  # type: ignore[return-value]
