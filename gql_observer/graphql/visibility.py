"""Who may see what: one rule for the Query, the subscribe and every event.

An instance is visible to a viewer when the viewer is still who they were
(active user, session not logged out, token neither expired nor revoked), the
type's ``get_queryset`` contains it, and the ``permission`` hook of ``observe``
allows it. Every event re-checks all of it.

The work is split so that it can be shared without sharing a verdict that
could differ: the *rows* (one query per type, window and row scope: everybody
for a type without ``get_queryset``, else each distinct viewer), the *viewer
checks* (one query for every viewer asked about in a window, whatever their
number), and the verdict itself, decided per viewer in Python from those two.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from importlib import import_module
from typing import Any, Final, Generic, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.core.exceptions import ValidationError
from django.db import connections, router
from django.db.models import Field, IntegerField, Model, QuerySet
from django.utils import timezone
from strawberry import Info

from gql_observer.core.auth import Credential
from gql_observer.core.conf import get_settings
from gql_observer.core.db import retrying, unit_of_work
from gql_observer.observe.definition import ObservedDefinition

__all__ = [
    "CHECK_KEY",
    "CREDENTIAL_KEY",
    "EXPIRES_KEY",
    "READ_TASK",
    "Verdict",
    "Viewer",
    "deleted_instance",
    "deleted_verdicts",
    "may_see_deleted",
    "normalize_pk",
    "read",
    "set_credential",
    "verdicts",
    "viewer_from_scope",
    "viewer_of",
]

#: Scope key where token authentication records when its credential expires.
EXPIRES_KEY: Final = "gql_observer.expires"
#: Scope key of the credential's own per-event check (``Credential.still_valid``).
CHECK_KEY: Final = "gql_observer.still_valid"
#: Scope key of what identifies the credential's validity (``Credential.key``).
CREDENTIAL_KEY: Final = "gql_observer.credential"
OK: Final = 200
UNAUTHORIZED: Final = 401
NOT_FOUND: Final = 404

V = TypeVar("V")


class Viewer:
    """Who is looking, as the connection authenticated them.

    Two viewers are equal when nothing can revoke one without the other: the
    same user, the same session, the same expiry and the same credential check
    (a token's password fingerprint). Equal viewers share a verdict.
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
    scope[CREDENTIAL_KEY] = credential.key


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
        credential=scope.get(CREDENTIAL_KEY),
    )


# ---- viewer checks ------------------------------------------------------------------


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


def _check_many(viewers: list[Viewer]) -> dict[Viewer, Any]:
    """Each viewer's user as the database has it now; ``None`` for a viewer who is
    no longer who they were (deactivated, deleted, logged out, token expired or
    revoked). One query for all the users, one for all database sessions."""
    now = time.time()
    checked: dict[Viewer, Any] = {}
    waiting: dict[Any, list[Viewer]] = {}
    for viewer in viewers:
        if viewer.expires is not None and viewer.expires <= now:
            checked[viewer] = None
        elif not getattr(viewer.user, "is_authenticated", False):
            checked[viewer] = viewer.user  # anonymous stays anonymous
        else:
            waiting.setdefault(viewer.user.pk, []).append(viewer)
    if not waiting:
        return checked
    fresh = {u.pk: u for u in get_user_model()._default_manager.filter(pk__in=list(waiting))}
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


# ---- rows ---------------------------------------------------------------------------


def queryset(definition: ObservedDefinition, info: Info | None) -> QuerySet[Any]:
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
    except (ValidationError, ValueError, TypeError):
        return None
    if isinstance(field, IntegerField) and isinstance(python_value, int):
        # A number no row can hold names nothing (the database would refuse it).
        alias = router.db_for_read(definition.model)
        low, high = connections[alias].ops.integer_field_range(field.get_internal_type())
        if (low is not None and python_value < low) or (high is not None and python_value > high):
            return None
    return python_value


def _rows(
    definition: ObservedDefinition, info: Info | None, lookup: str, values: list[object]
) -> dict[object, Model | None]:
    """The instances whose ``lookup`` field is one of ``values``, as the type's
    queryset holds them: one query."""
    rows: dict[object, Model | None] = dict.fromkeys(values)
    try:
        found = list(queryset(definition, info).filter(**{f"{lookup}__in": values}))
    except (ValidationError, ValueError, TypeError):
        found = []
    for obj in found:
        rows[getattr(obj, lookup)] = obj
    return rows


def has_get_queryset(definition: ObservedDefinition) -> bool:
    """Whether which rows exist depends on the viewer (the type's ``get_queryset``)."""
    return callable(getattr(definition.type_, "get_queryset", None))


# ---- coalescing ---------------------------------------------------------------------

#: The name of a coalesced read's task (one per kind of read while reads go on).
READ_TASK: Final = "gql_observer.read"


class _Batch(Generic[V]):
    """Asks of one kind, coalesced.

    The first ask after a quiet spell is fetched at once. After that, fetches of
    this kind start at most once per ``READ_BATCH_WINDOW`` (counted from the
    start of the previous one): what is asked meanwhile waits and is fetched
    together by one query. A burst of changes to many instances costs a query
    per window, not one per change. Every query starts after each ask it
    answers, so an answer is never older than its ask.

    An ask names one value (:meth:`ask`) or many (:meth:`ask_all`, one future
    for all of them: a thousand viewers of one event cost one future, not a
    thousand)."""

    __slots__ = ("_task", "fetch", "key", "label", "pending", "running", "waiting")

    def __init__(
        self, key: Hashable, fetch: Callable[[list[Any]], dict[Any, V]], label: str
    ) -> None:
        self.key = key
        self.fetch = sync_to_async(unit_of_work(fetch), thread_sensitive=True)
        self.label = label
        #: The values the next fetch reads (an ordered set).
        self.pending: dict[Any, None] = {}
        #: Who waits for the next fetch: (the values, whether it asked for many, future).
        self.waiting: list[tuple[Any, bool, asyncio.Future[Any]]] = []
        self.running = False
        self._task: asyncio.Task[None] | None = None

    def ask(self, value: Any) -> asyncio.Future[V]:
        """The answer for ``value``."""
        self.pending[value] = None
        return self._wait(value, False)

    def ask_all(self, values: Iterable[Any]) -> asyncio.Future[dict[Any, V]]:
        """The answers for every one of ``values``, by value."""
        values = list(values)
        self.pending.update(dict.fromkeys(values))
        return self._wait(values, True)

    def _wait(self, values: Any, many: bool) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.waiting.append((values, many, future))
        if not self.running:
            self.running = True
            loop.call_soon(self._start)
        return future

    def _start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        self._task.set_name(READ_TASK)

    async def _run(self) -> None:
        options = get_settings()
        window, retry_window = options["READ_BATCH_WINDOW"], options["READ_RETRY_WINDOW"]
        loop = asyncio.get_running_loop()
        try:
            while self.waiting:
                started = loop.time()
                values, waiting = list(self.pending), self.waiting
                self.pending, self.waiting = {}, []
                try:
                    # While the database cannot be reached the batch waits; what is
                    # asked meanwhile is read by the next query.
                    answers = await retrying(
                        partial(self.fetch, values), retry_window, "read", self.label
                    )
                except BaseException as error:
                    for _, _, future in waiting:
                        if not future.done():
                            future.set_exception(error)
                    if isinstance(error, asyncio.CancelledError):
                        raise
                    continue
                for asked, many, future in waiting:
                    if not future.done():
                        future.set_result(
                            {v: answers[v] for v in asked} if many else answers[asked]
                        )
                # Linger: in a burst, what is asked during the window is read together.
                wait = started + window - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
        finally:
            self.running = False
            if _readers.get(self.key) is self and not self.waiting:
                del _readers[self.key]


_readers: dict[Hashable, _Batch[Any]] = {}


def _batch(
    key: Hashable, fetch: Callable[[], Callable[[list[Any]], dict[Any, V]]], label: str
) -> _Batch[V]:
    full_key = (id(asyncio.get_running_loop()), key)
    batch = _readers.get(full_key)
    if batch is None:
        batch = _readers[full_key] = _Batch(full_key, fetch(), label)
    return batch


def _ask_rows(
    definition: ObservedDefinition, info: Info | None, viewer: Viewer, lookup: str, value: object
) -> asyncio.Future[Model | None]:
    # Rows depend on the viewer only through get_queryset: without one, every
    # viewer's event is answered by the same query and the same instance.
    scope = viewer.identity if has_get_queryset(definition) else None
    batch: _Batch[Model | None] = _batch(
        ("rows", definition.field_name, lookup, scope),
        lambda: partial(_rows, definition, info, lookup),
        definition.model._meta.label,
    )
    return batch.ask(value)


def _checks() -> _Batch[Any]:
    batch: _Batch[Any] = _batch(("viewers",), lambda: _check_many, "viewers of")
    return batch


def _ask_check(viewer: Viewer) -> asyncio.Future[Any]:
    return _checks().ask(viewer)


def _ask_checks(viewers: Iterable[Viewer]) -> asyncio.Future[dict[Viewer, Any]]:
    """Each of ``viewers``' users as the database has them now (one future)."""
    return _checks().ask_all(viewers)


# ---- verdicts -----------------------------------------------------------------------


def _allowed(definition: ObservedDefinition, user: Any) -> bool:
    return not definition.login_required or bool(getattr(user, "is_authenticated", False))


def _decide(definition: ObservedDefinition, user: Any, row: Model | None) -> Verdict:
    """The verdict on ``row`` for a viewer whose check gave ``user`` (scoped types)."""
    if user is None or not _allowed(definition, user):
        return Verdict(UNAUTHORIZED)
    if row is None:
        return Verdict(NOT_FOUND)
    # Existence is secret: not allowed answers as not found does.
    if definition.permission is not None and not definition.permission(user, row):
        return Verdict(NOT_FOUND)
    return Verdict(OK, row)


def _decide_each(
    definition: ObservedDefinition, cases: list[tuple[Any, Model | None]]
) -> list[Verdict]:
    return [_decide(definition, user, row) for user, row in cases]


_decide_each_async = sync_to_async(unit_of_work(_decide_each), thread_sensitive=True)


async def _decided(
    definition: ObservedDefinition, cases: list[tuple[Any, Model | None]]
) -> list[Verdict]:
    """The verdicts on ``cases`` (checked user, row); a ``permission`` hook runs on
    Django's sync thread (it may query: ``user.has_perm`` does), all in one call."""
    if definition.permission is None:
        return _decide_each(definition, cases)
    return await _decide_each_async(definition, cases)


def _public(row: Model | None) -> Verdict:
    return Verdict(NOT_FOUND) if row is None else Verdict(OK, row)


async def read(
    definition: ObservedDefinition,
    info: Info | None,
    viewer: Viewer,
    value: object,
    *,
    by_pk: bool = False,
) -> Verdict:
    """Read the instance whose lookup field (or pk, ``by_pk``) equals ``value``,
    as ``viewer`` may see it."""
    lookup = "pk" if by_pk else definition.lookup
    rows = _ask_rows(definition, info, viewer, lookup, value)
    if not definition.scoped:
        return _public(await rows)
    user, row = await asyncio.gather(_ask_check(viewer), rows)
    (verdict,) = await _decided(definition, [(user, row)])
    return verdict


async def verdicts(
    definition: ObservedDefinition,
    viewers: Mapping[Viewer, Info | None],
    pk: object,
) -> dict[Viewer, Verdict]:
    """The verdict of each of ``viewers`` (with an ``Info`` of one of its operations,
    for ``get_queryset``) on the instance ``pk``: one read for every viewer (one
    per distinct viewer for a type with ``get_queryset``), one check of them all."""
    if not viewers:
        return {}
    if not definition.scoped:
        viewer, info = next(iter(viewers.items()))
        verdict = _public(await _ask_rows(definition, info, viewer, "pk", pk))
        return dict.fromkeys(viewers, verdict)
    checks = _ask_checks(viewers)
    if has_get_queryset(definition):
        rows = {
            viewer: _ask_rows(definition, info, viewer, "pk", pk)
            for viewer, info in viewers.items()
        }
    else:
        viewer, info = next(iter(viewers.items()))
        shared = _ask_rows(definition, info, viewer, "pk", pk)
        rows = dict.fromkeys(viewers, shared)
    await asyncio.gather(checks, *set(rows.values()))
    users = checks.result()
    order = list(viewers)
    decided = await _decided(definition, [(users[v], rows[v].result()) for v in order])
    return dict(zip(order, decided, strict=True))


def _decide_deleted_each(
    definition: ObservedDefinition, users: list[Any], instance: Model
) -> list[Verdict]:
    return [_decide_deleted(definition, user, instance) for user in users]


_decide_deleted_each_async = sync_to_async(
    unit_of_work(_decide_deleted_each), thread_sensitive=True
)


def _decide_deleted(definition: ObservedDefinition, user: Any, instance: Model) -> Verdict:
    if user is None or not _allowed(definition, user):
        return Verdict(UNAUTHORIZED)
    if definition.permission is not None:
        return (
            Verdict(OK, instance) if definition.permission(user, instance) else Verdict(NOT_FOUND)
        )
    if has_get_queryset(definition):
        # A queryset cannot be asked about a row that is gone: say that it is
        # gone, show nothing of it.
        return Verdict(OK, None)
    return Verdict(OK, instance)


async def may_see_deleted(
    definition: ObservedDefinition, viewer: Viewer, instance: Model
) -> Verdict:
    """Whether ``viewer`` may see a deleted instance's last values."""
    return (await deleted_verdicts(definition, [viewer], instance))[viewer]


async def deleted_verdicts(
    definition: ObservedDefinition, viewers: Iterable[Viewer], instance: Model
) -> dict[Viewer, Verdict]:
    """Whether each of ``viewers`` may see a deleted instance's last values: one
    check of them all (none for a type that does not depend on the viewer)."""
    viewers = list(viewers)
    if not definition.scoped:
        return dict.fromkeys(viewers, Verdict(OK, instance))
    checked = await _ask_checks(viewers)
    users = [checked[viewer] for viewer in viewers]
    if definition.permission is None:
        decided = _decide_deleted_each(definition, users, instance)
    else:
        decided = await _decide_deleted_each_async(definition, users, instance)
    return dict(zip(viewers, decided, strict=True))


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
