"""Who is looking: a :class:`Viewer` per connection (or request), with everything
that can revoke it, and the check that it still is who it was (one query for
every viewer asked about at once)."""

from __future__ import annotations

import datetime
import decimal
import time
import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping
from importlib import import_module
from typing import Any, Final

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.db.models import Model, QuerySet
from django.db.models.base import ModelState
from django.utils import timezone
from strawberry import Info

from gql_observer.core.auth import Credential
from gql_observer.graphql.context import hooked, request_of
from gql_observer.graphql.rows import has_get_queryset
from gql_observer.observe.definition import ObservedDefinition

__all__ = [
    "CHECK_KEY",
    "CREDENTIAL_KEY",
    "EXPIRES_KEY",
    "UserRows",
    "Viewer",
    "check_many",
    "checks_with_users",
    "checks_without_users",
    "set_credential",
    "viewer_from_scope",
    "viewer_of",
]

#: Scope key where token authentication records when its credential expires.
EXPIRES_KEY: Final = "gql_observer.expires"
#: Scope key of the credential's own per-event check (``Credential.still_valid``).
CHECK_KEY: Final = "gql_observer.still_valid"
#: Scope key of what identifies the credential's validity (``Credential.key``).
CREDENTIAL_KEY: Final = "gql_observer.credential"


class Viewer:
    """Who is looking, as the connection authenticated them.

    Two viewers are equal when nothing can revoke one without the other: the
    same user, the same session, the same expiry and the same credential check
    (a token's password fingerprint). Equal viewers share a verdict.
    ``own`` sets one apart from every other (an operation whose context the
    context hook made, for a ``get_queryset`` that may read it).
    """

    __slots__ = (
        "_hash",
        "credential",
        "expires",
        "identity",
        "session_key",
        "still_valid",
        "user",
    )

    def __init__(
        self,
        user: Any,
        session_key: str | None,
        expires: float | None,
        still_valid: Callable[[Any], bool] | None = None,
        credential: Hashable = None,
        own: Hashable = None,
    ) -> None:
        self.user = user
        self.session_key = session_key
        self.expires = expires
        self.still_valid = still_valid
        if credential is None and still_valid is not None:
            # A check nobody named: only this very check is the same credential.
            credential = still_valid
        self.credential = credential
        self.identity: Hashable = (self.user_pk, session_key, expires, credential)
        if own is not None:
            self.identity = (*self.identity, own)
        # Viewers are dictionary keys on every event: hashed once.
        self._hash = hash(self.identity)

    @property
    def user_pk(self) -> Any:
        return self.user.pk if getattr(self.user, "is_authenticated", False) else None

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, Viewer) and other.identity == self.identity)

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"Viewer(user_pk={self.user_pk!r}, session={self.session_key is not None})"


def _scope(info: Info) -> dict[str, Any]:
    request = request_of(info.context)
    consumer = getattr(request, "consumer", request)
    scope: dict[str, Any] = getattr(consumer, "scope", {}) or {}
    return scope


def viewer_of(info: Info, definition: ObservedDefinition | None = None) -> Viewer:
    """The viewer of an operation, from its connection's scope; its own for a
    ``definition`` with a ``get_queryset`` when the context hook made its context
    (the rows may depend on what the hook put there)."""
    context = info.context
    own = None
    if definition is not None and hooked(context) and has_get_queryset(definition):
        own = id(context)  # alive as long as the operation: no other context has it
    return viewer_from_scope(_scope(info), own)


def set_credential(scope: dict[str, Any], credential: Credential) -> None:
    """Make ``credential`` (a token's) the viewer of the connection or request
    whose scope this is: what :func:`viewer_from_scope` reads back."""
    scope["user"] = credential.user
    scope[EXPIRES_KEY] = credential.expires
    scope[CHECK_KEY] = credential.still_valid
    scope[CREDENTIAL_KEY] = credential.key


def viewer_from_scope(scope: dict[str, Any], own: Hashable = None) -> Viewer:
    """The viewer of a connection (an ASGI scope after authentication); ``own``:
    see :class:`Viewer`."""
    user = scope.get("user")
    session = scope.get("session")
    session_key = None
    # A token viewer is checked by the token's expiry; a session viewer by the
    # session still naming them.
    token = scope.get(EXPIRES_KEY) is not None
    if not token and session is not None and getattr(user, "is_authenticated", False):
        session_key = session.session_key
    return Viewer(
        user=user,
        session_key=session_key,
        expires=scope.get(EXPIRES_KEY),
        still_valid=scope.get(CHECK_KEY),
        credential=scope.get(CREDENTIAL_KEY),
        own=own,
    )


def _sessions(keys: set[str]) -> dict[str, dict[str, Any]]:
    """The data of each session, as ``SessionStore(key).load()`` gives it; one query
    for every database-backed session (``db``, ``cached_db``)."""
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    if not keys:
        return {}
    if isinstance(store_class, type) and issubclass(store_class, DatabaseSessionStore):
        model = store_class.get_model_class()
        decoder = store_class()
        rows = model._default_manager.filter(
            session_key__in=keys, expire_date__gt=timezone.now()
        ).only("session_key", "session_data")
        found = {row.session_key: decoder.decode(row.session_data) for row in rows}
        return {key: found.get(key, {}) for key in keys}
    return {key: store_class(key).load() for key in keys}


#: Field values a user row may hold for its instance to be rebuilt from a copy of
#: another's ``__dict__`` (nothing a hook could change in place and so share).
_IMMUTABLE = (
    str,
    int,
    float,
    bool,
    bytes,
    decimal.Decimal,
    uuid.UUID,
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    type(None),
)


class UserRows:
    """The users of the viewers asked about, as the database has them now: one
    query for all of them, and a new instance of each on every call.

    Building 1,000 users through the ORM costs more than reading them; a user
    whose row is what it was last time is rebuilt from the values of the last
    build (a new object, so nothing a hook cached on last event's user, such as
    ``has_perm``'s caches, survives). Only the users asked about in the last
    call are remembered, and the query of the last call's users: the viewers of
    one watch are the same from one event to the next, and so is their query
    (Django prepares a thousand parameters for each new one)."""

    __slots__ = ("_asked", "_known", "_queryset")

    def __init__(self) -> None:
        self._known: dict[Any, tuple[tuple[Any, ...], dict[str, Any] | None]] = {}
        self._asked: tuple[Any, ...] | None = None
        self._queryset: QuerySet[Any] | None = None

    def __call__(self, pks: Iterable[Any]) -> dict[Any, Any]:
        queryset = self.queryset(pks)
        # A copy: the kept query must never answer from rows it read before.
        return self.build(queryset.db, queryset.all())

    def queryset(self, pks: Iterable[Any]) -> QuerySet[Any]:
        """The users ``pks`` name, as the rows :meth:`build` takes (the last
        call's query again when it asked for the same users)."""
        asked = tuple(pks)
        if asked == self._asked and self._queryset is not None:
            return self._queryset
        model = get_user_model()
        names = [f.attname for f in model._meta.concrete_fields]
        queryset = model._default_manager.filter(pk__in=asked).values_list(*names)
        self._asked, self._queryset = asked, queryset
        return queryset

    def build(self, db: str | None, found: Iterable[tuple[Any, ...]]) -> dict[Any, Any]:
        """The users of ``found`` (rows of :meth:`queryset`), by pk."""
        model = get_user_model()
        names = [f.attname for f in model._meta.concrete_fields]
        pk_index = names.index(model._meta.pk.attname)
        known, self._known = self._known, {}
        users: dict[Any, Any] = {}
        for row in found:
            pk = row[pk_index]
            last = known.get(pk)
            if last is not None and last[0] == row and last[1] is not None:
                user = _rebuilt(model, db, last[1])
                self._known[pk] = last
            else:
                user = model.from_db(db, names, row)
                plain = all(isinstance(v, _IMMUTABLE) for v in row)
                values = {k: v for k, v in user.__dict__.items() if k != "_state"}
                self._known[pk] = (row, values if plain else None)
            users[pk] = user
        return users


def _rebuilt(model: type[Model], db: str | None, values: dict[str, Any]) -> Model:
    # What Model.from_db gives for these values, without Model.__init__.
    user = model.__new__(model)
    user.__dict__.update(values)
    state = ModelState()
    state.db = db
    state.adding = False
    user._state = state
    return user


#: The viewers of one check whose users must be read: by user pk.
Waiting = dict[Any, list[Viewer]]


def check_many(viewers: list[Viewer], users: UserRows | None = None) -> dict[Viewer, Any]:
    """Each viewer's user as the database has it now; ``None`` for a viewer who is
    no longer who they were (deactivated, deleted, logged out, token expired or
    revoked). One query for all the users, one for all database sessions."""
    checked, waiting = checks_without_users(viewers)
    if not waiting:
        return checked
    return checks_with_users(checked, waiting, (users or UserRows())(waiting))


def checks_without_users(viewers: Iterable[Viewer]) -> tuple[dict[Viewer, Any], Waiting]:
    """What a check of ``viewers`` decides without reading: expired tokens and
    anonymous viewers; and the viewers whose users it must read, by user pk."""
    now = time.time()
    checked: dict[Viewer, Any] = {}
    waiting: Waiting = {}
    for viewer in viewers:
        if viewer.expires is not None and viewer.expires <= now:
            checked[viewer] = None
        elif not getattr(viewer.user, "is_authenticated", False):
            checked[viewer] = viewer.user  # anonymous stays anonymous
        else:
            waiting.setdefault(viewer.user.pk, []).append(viewer)
    return checked, waiting


def checks_with_users(
    checked: dict[Viewer, Any], waiting: Waiting, fresh: Mapping[Any, Any]
) -> dict[Viewer, Any]:
    """The check of ``waiting``'s viewers, given their ``fresh`` users (by pk):
    added to ``checked``. Reads the database sessions of session viewers."""
    sessions = _sessions({v.session_key for vs in waiting.values() for v in vs if v.session_key})
    for pk, group in waiting.items():
        user = fresh.get(pk)
        for viewer in group:
            checked[viewer] = _judged(viewer, user, sessions)
    return checked


def _judged(viewer: Viewer, fresh: Any, sessions: Mapping[str, dict[str, Any]]) -> Any:
    if fresh is None or not fresh.is_active:
        return None
    if viewer.still_valid is not None and not viewer.still_valid(fresh):
        return None  # e.g. the password changed since the token was issued
    if viewer.session_key is not None:
        data = sessions.get(viewer.session_key, {})
        if str(data.get(SESSION_KEY)) != str(fresh.pk) or BACKEND_SESSION_KEY not in data:
            return None
        session_hash = data.get(HASH_SESSION_KEY)
        if session_hash and session_hash != fresh.get_session_auth_hash():
            return None  # the password changed: Django logs such sessions out
    return fresh
