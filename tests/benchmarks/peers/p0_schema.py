"""P0's schema in the benchmark: the demo's (``schema_examples.schema``: its observed ``user``
and ``note`` and their mutations, built the same way) plus two more observed types of User for
the logged-in viewers' scenarios:

``userP`` (W1p)  observed with a ``permission`` callable, asked for every viewer and change;
                 it allows every signed-in viewer.
``userX`` (W1x)  no hook, but one field behind a strawberry permission class: ``email`` is
                 ``strawberry_django.field(permission_classes=[SignedIn])``, as
                 tests/support/schema.py declares it.

An anonymous viewer gets a refusal on ``userP`` and no email on ``userX``, so the load worker
can tell that its token viewers are signed in.
"""

from __future__ import annotations

from typing import Any

import strawberry
import strawberry_django
from django.contrib.auth.models import User
from strawberry.permission import BasePermission
from strawberry.tools import merge_types
from strawberry_django.auth.utils import get_current_user

import gql_observer
from schema_examples.notes.schema import NoteMutation
from schema_examples.users.schema import UserMutation


def allow_all(user: Any, instance: User) -> bool:
    """W1p's permission hook: every signed-in viewer may see every user."""
    return bool(user is not None and user.is_authenticated)


@gql_observer.observe(User, name="userP", permission=allow_all)
@strawberry_django.type(User, name="UserPType", fields=["id", "username", "email"])
class UserPType:
    pass


class SignedIn(BasePermission):
    message = "User is not authenticated"

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return bool(get_current_user(info).is_authenticated)


@gql_observer.observe(User, name="userX")
@strawberry_django.type(User, name="UserXType")
class UserXType:
    id: strawberry.auto
    username: strawberry.auto
    email: str = strawberry_django.field(permission_classes=[SignedIn])


schema = gql_observer.build_schema(mutation=merge_types("Mutation", (UserMutation, NoteMutation)))
