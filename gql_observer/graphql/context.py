"""``info.context``: what resolvers get, and the user's hook that shapes it.

A :class:`Context` answers attribute access (``info.context.request``,
``.connection_params``, ``.ws``, as strawberry's Channels integration documents
it) and item access (``info.context["request"]``, as strawberry's consumers'
dict context), so resolvers written for either keep working.

The context hook (``GQL_OBSERVER["CONTEXT_GETTER"]``, or ``context_getter=`` of
the ASGI apps) is called with a fresh default :class:`Context` per HTTP request,
per websocket operation and, for subscriptions, once more per pushed event (so
a DataLoader made in it never serves a row read for an earlier event). It may
add attributes to the context and return nothing, return a mapping (merged into
it) or return a :class:`Context` of its own (a subclass, say); sync or async.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias

from django.utils.module_loading import import_string

from gql_observer.core.conf import get_settings

__all__ = [
    "Context",
    "ContextGetter",
    "configured_getter",
    "event_context",
    "get_current_user",
    "hooked",
    "make_context",
    "request_of",
]

#: The hook: called with the default context; returns ``None``, a mapping or a
#: :class:`Context` (or an awaitable of one of them).
ContextGetter: TypeAlias = Callable[["Context"], Any]


class Context(dict[str, Any]):
    """``info.context``: ``request``, ``response``, ``ws``, ``user`` and
    ``connection_params`` (``None`` where they do not apply), plus whatever the
    context hook adds, as items and as attributes (a dict, as strawberry's
    consumers' context is: ``isinstance(info.context, dict)`` holds)."""

    __slots__ = ("_renew",)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__} has no attribute or item {name!r}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_renew":
            object.__setattr__(self, name, value)
        else:
            self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(sorted(self))})"


def _shaped(context: Context, result: Any, getter: ContextGetter) -> Context:
    if result is None:
        return context
    if isinstance(result, Context):
        for key, value in context.items():  # request, ws, user... stay there
            result.setdefault(key, value)
        return result
    if isinstance(result, Mapping):
        context.update(result)
        return context
    raise TypeError(
        f"The context getter {getter!r} returned a {type(result).__name__}: return None "
        "(after setting attributes on the context it was given), a dict to merge into "
        "it, or a gql_observer.Context (subclass it for a context class of your own)."
    )


def make_context(
    defaults: Mapping[str, Any], getter: ContextGetter | None
) -> Context | Awaitable[Context]:
    """The context of one request or operation: ``defaults`` shaped by ``getter``
    (an awaitable when ``getter`` is async). The context remembers how it was
    made: :func:`event_context` makes a fresh one per event the same way."""
    context = Context(**defaults)
    if getter is None:
        return context

    def renew() -> Context | Awaitable[Context]:
        return make_context(defaults, getter)

    result = getter(context)
    if inspect.isawaitable(result):
        awaited = result

        async def shaped() -> Context:
            made = _shaped(context, await awaited, getter)
            made._renew = renew
            return made

        return shaped()
    made = _shaped(context, result, getter)
    made._renew = renew
    return made


def event_context(context: Any) -> Any:
    """The context of one pushed event of a subscription whose operation has
    ``context``: a fresh one made by the context hook (an awaitable when the hook
    is async), or ``context`` itself when no hook made it."""
    renew = getattr(context, "_renew", None) if isinstance(context, Context) else None
    return context if renew is None else renew()


def hooked(context: Any) -> bool:
    """Whether the context hook made ``context`` (so it may hold anything)."""
    return isinstance(context, Context) and getattr(context, "_renew", None) is not None


def request_of(context: Any) -> Any:
    """``context``'s ``request`` (a dict's item, or an attribute), or ``None``."""
    if isinstance(context, Mapping):
        return context.get("request")
    return getattr(context, "request", None)


def configured_getter() -> ContextGetter | None:
    """The hook ``GQL_OBSERVER["CONTEXT_GETTER"]`` names, or ``None``."""
    path = get_settings().context_getter
    return None if path is None else _imported(path)


@functools.cache
def _imported(path: str) -> ContextGetter:
    getter: ContextGetter = import_string(path)
    return getter


def get_current_user(info: Any) -> Any:
    """The user of the request or connection an operation runs for (anonymous:
    Django's ``AnonymousUser``), whatever the context: ours, a dict, or an
    object with ``request``. strawberry-django's own ``get_current_user`` works
    too."""
    context = info.context
    user = context.get("user") if isinstance(context, Mapping) else getattr(context, "user", None)
    if user is not None:
        return user
    from strawberry_django.auth.utils import get_current_user as strawberry_django_user

    return strawberry_django_user(info)
