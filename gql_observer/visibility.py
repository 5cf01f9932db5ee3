"""Who may see what: one rule for the Query, the subscribe and every event.

An instance is visible to a viewer when the viewer is still who they were
(active user, session not logged out, token not expired), the type's
``get_queryset`` contains it, and the ``permission`` hook of ``observe``
allows it. Every event re-checks all of it, once per permission context.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from asgiref.sync import sync_to_async
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Field, Model, QuerySet
from strawberry import Info

from .auth import Credential
from .db import retrying, unit_of_work
from .definition import ObservedDefinition
from .settings import get_settings

__all__ = [
    "CHECK_KEY",
    "EXPIRES_KEY",
    "READ_TASK",
    "Verdict",
    "Viewer",
    "deleted_instance",
    "may_see_deleted",
    "normalize_pk",
    "read",
    "set_credential",
    "viewer_from_scope",
    "viewer_of",
]

#: Scope key where token authentication records when its credential expires.
EXPIRES_KEY: Final = "gql_observer.expires"
#: Scope key of the credential's own per-event check (``Credential.still_valid``).
CHECK_KEY: Final = "gql_observer.still_valid"
OK: Final = 200
UNAUTHORIZED: Final = 401
NOT_FOUND: Final = 404


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking, as the connection authenticated them."""

    user: Any
    session_key: str | None
    expires: float | None
    still_valid: Callable[[Any], bool] | None = dataclasses.field(default=None, compare=False)

    @property
    def user_pk(self) -> Any:
        return self.user.pk if getattr(self.user, "is_authenticated", False) else None

    def key(self, definition: ObservedDefinition) -> Hashable:
        """Viewers with the same key see the same rows: one read serves them all."""
        if not definition.scoped:
            return (definition.field_name, None)
        return (definition.field_name, self.user_pk, self.session_key, self.expires)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one read: a status and, when it is 200, the instance."""

    status: int
    instance: Model | None = None


def _scope(info: Info) -> dict[str, Any]:
    context = info.context
    request = context.get("request") if isinstance(context, dict) else None
    consumer = getattr(request, "consumer", request)
    scope: dict[str, Any] = getattr(consumer, "scope", {}) or {}
    return scope


def viewer_of(info: Info) -> Viewer:
    """The viewer of an operation, from its connection's scope."""
    return viewer_from_scope(_scope(info))


def set_credential(scope: dict[str, Any], credential: Credential) -> None:
    """Make ``credential`` (a token's) the viewer of the connection or request
    whose scope this is: what :func:`viewer_from_scope` reads back."""
    scope["user"] = credential.user
    scope[EXPIRES_KEY] = credential.expires
    scope[CHECK_KEY] = credential.still_valid


def viewer_from_scope(scope: dict[str, Any]) -> Viewer:
    """The viewer of a connection (an ASGI scope after authentication)."""
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
    )


def _still_valid(viewer: Viewer) -> Any | None:
    """The viewer's user as the database has it now; ``None`` once they are no
    longer who they were (deactivated, deleted, logged out, token expired)."""
    if viewer.expires is not None and viewer.expires <= time.time():
        return None
    user = viewer.user
    if not getattr(user, "is_authenticated", False):
        return user  # anonymous stays anonymous
    fresh = get_user_model()._default_manager.filter(pk=user.pk).first()
    if fresh is None or not fresh.is_active:
        return None
    if viewer.still_valid is not None and not viewer.still_valid(fresh):
        return None  # e.g. the password changed since the token was issued
    if viewer.session_key is not None:
        from importlib import import_module

        from django.conf import settings

        store = import_module(settings.SESSION_ENGINE).SessionStore(viewer.session_key)
        data = store.load()
        if str(data.get(SESSION_KEY)) != str(fresh.pk) or BACKEND_SESSION_KEY not in data:
            return None
        session_hash = data.get(HASH_SESSION_KEY)
        if session_hash and session_hash != fresh.get_session_auth_hash():
            return None  # the password changed: Django logs such sessions out
    return fresh


def _allowed(definition: ObservedDefinition, user: Any) -> bool:
    return not definition.login_required or bool(getattr(user, "is_authenticated", False))


def queryset(definition: ObservedDefinition, info: Info) -> QuerySet[Any]:
    base: QuerySet[Any] = definition.model._default_manager.all()
    get_queryset = getattr(definition.type_, "get_queryset", None)
    if callable(get_queryset):
        base = get_queryset(base, info)
    return base


def normalize_pk(definition: ObservedDefinition, value: object) -> object | None:
    """``value`` as the lookup field's Python value; ``None`` when malformed."""
    meta = definition.model._meta
    field = meta.pk if definition.lookup == "pk" else meta.get_field(definition.lookup)
    assert isinstance(field, Field), "observe() checked the lookup field"
    try:
        python_value: object = field.to_python(value)
        return python_value
    except (ValidationError, ValueError, TypeError):
        return None


def _read_many(
    definition: ObservedDefinition, info: Info, viewer: Viewer, values: list[object], lookup: str
) -> dict[object, Verdict]:
    """The verdicts on several instances for one viewer: one query."""
    user = viewer.user
    if definition.scoped:
        user = _still_valid(viewer)
        if user is None or not _allowed(definition, user):
            return dict.fromkeys(values, Verdict(UNAUTHORIZED))
    verdicts = dict.fromkeys(values, Verdict(NOT_FOUND))
    try:
        found = list(queryset(definition, info).filter(**{f"{lookup}__in": values}))
    except (ValidationError, ValueError, TypeError):
        found = []
    for obj in found:
        # Existence is secret: not allowed answers as not found does.
        if definition.permission is None or definition.permission(user, obj):
            verdicts[getattr(obj, lookup)] = Verdict(OK, obj)
    return verdicts


_read_many_async = sync_to_async(unit_of_work(_read_many), thread_sensitive=True)


#: The name of a coalesced read's task (one per type and viewer while reads go on).
READ_TASK: Final = "gql_observer.read"


class _Reads:
    """Reads of one type for one viewer, coalesced.

    The first ask after a quiet spell is read at once. After that, reads of
    this key start at most once per ``READ_BATCH_WINDOW`` (counted from the
    start of the previous one): the instances asked for meanwhile wait and are
    read together by one query. A burst of changes to many instances costs a
    query per window, not one per change. Every query starts after each ask
    it answers, so a read never answers with a state older than the ask."""

    __slots__ = ("_task", "definition", "info", "key", "lookup", "pending", "running", "viewer")

    def __init__(
        self,
        key: Hashable,
        definition: ObservedDefinition,
        info: Info,
        viewer: Viewer,
        lookup: str,
    ) -> None:
        self.key, self.definition, self.info, self.viewer = key, definition, info, viewer
        self.lookup = lookup
        self.pending: dict[object, list[asyncio.Future[Verdict]]] = {}
        self.running = False
        self._task: asyncio.Task[None] | None = None

    def ask(self, value: object) -> asyncio.Future[Verdict]:
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self.pending.setdefault(value, []).append(future)
        if not self.running:
            self.running = True
            asyncio.get_running_loop().call_soon(self._start)
        return future

    def _start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        self._task.set_name(READ_TASK)

    async def _run(self) -> None:
        options = get_settings()
        window, retry_window = options["READ_BATCH_WINDOW"], options["READ_RETRY_WINDOW"]
        loop = asyncio.get_running_loop()
        label = self.definition.model._meta.label
        try:
            while self.pending:
                started = loop.time()
                batch, self.pending = self.pending, {}
                read = partial(
                    _read_many_async,
                    self.definition,
                    self.info,
                    self.viewer,
                    list(batch),
                    self.lookup,
                )
                try:
                    # While the database cannot be reached the batch waits; what is
                    # asked meanwhile is read by the next query.
                    verdicts = await retrying(read, retry_window, "read", label)
                except BaseException as error:
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(error)
                    if isinstance(error, asyncio.CancelledError):
                        raise
                    continue
                for value, futures in batch.items():
                    for future in futures:
                        if not future.done():
                            future.set_result(verdicts[value])
                # Linger: in a burst, what is asked during the window is read together.
                wait = started + window - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
        finally:
            self.running = False
            if _readers.get(self.key) is self and not self.pending:
                del _readers[self.key]


_readers: dict[Hashable, _Reads] = {}


async def read(
    definition: ObservedDefinition,
    info: Info,
    viewer: Viewer,
    value: object,
    *,
    by_pk: bool = False,
) -> Verdict:
    """Read the instance whose lookup field (or pk, ``by_pk``) equals ``value``,
    as ``viewer`` may see it."""
    lookup = "pk" if by_pk else definition.lookup
    key = (id(asyncio.get_running_loop()), viewer.key(definition), lookup)
    reads = _readers.get(key)
    if reads is None:
        reads = _readers[key] = _Reads(key, definition, info, viewer, lookup)
    return await reads.ask(value)


def _may_see_deleted(definition: ObservedDefinition, viewer: Viewer, instance: Model) -> Verdict:
    if not definition.scoped:
        return Verdict(OK, instance)
    user = _still_valid(viewer)
    if user is None or not _allowed(definition, user):
        return Verdict(UNAUTHORIZED)
    if definition.permission is not None:
        return (
            Verdict(OK, instance) if definition.permission(user, instance) else Verdict(NOT_FOUND)
        )
    if callable(getattr(definition.type_, "get_queryset", None)):
        # A queryset cannot be asked about a row that is gone: say that it is
        # gone, show nothing of it.
        return Verdict(OK, None)
    return Verdict(OK, instance)


_may_see_deleted_async = sync_to_async(unit_of_work(_may_see_deleted), thread_sensitive=True)


async def may_see_deleted(
    definition: ObservedDefinition, viewer: Viewer, instance: Model
) -> Verdict:
    """Whether ``viewer`` may see a deleted instance's last values; retried for
    ``READ_RETRY_WINDOW`` while the database cannot be reached, as reads are."""
    return await retrying(
        partial(_may_see_deleted_async, definition, viewer, instance),
        get_settings()["READ_RETRY_WINDOW"],
        "check the viewer of a deleted",
        definition.model._meta.label,
    )


def deleted_instance(definition: ObservedDefinition, last: dict[str, str | None]) -> Model:
    """An unsaved instance holding a deleted row's last values."""
    values: dict[str, Any] = {}
    for field in definition.model._meta.concrete_fields:
        if field.attname in last:
            raw = last[field.attname]
            values[field.attname] = None if raw is None else field.to_python(raw)
    instance = definition.model(**values)
    instance._state.adding = False
    return instance
