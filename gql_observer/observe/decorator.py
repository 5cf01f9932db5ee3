"""``observe``: the decorator that puts a strawberry-django type on the live API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db.models import Field, Model

from gql_observer.observe import registry
from gql_observer.observe.definition import ObservedDefinition

__all__ = ["observe"]

T = TypeVar("T", bound=type[Any])


def _lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def plural(name: str) -> str:
    """``User`` -> ``users``, ``Category`` -> ``categories``, ``Box`` -> ``boxes``:
    the default name of a model's list fields."""
    word = _lower_camel(name)
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return f"{word}es"
    if len(word) > 1 and word.endswith("y") and word[-2] not in "aeiou":
        return f"{word[:-1]}ies"
    return f"{word}s"


def _filter_type(model: type[Model], filters: type[Any] | None) -> type[Any] | None:
    if filters is None:
        return None
    django = getattr(filters, "__strawberry_django_definition__", None)
    if django is None or not getattr(filters, "__strawberry_definition__", None):
        raise ImproperlyConfigured(
            f"observe({model.__name__}, filters=...) takes a strawberry-django filter type "
            f"(@strawberry_django.filter_type({model.__name__})), not {filters!r}."
        )
    if django.model is not model:
        raise ImproperlyConfigured(
            f"observe({model.__name__}, filters={filters.__qualname__}): the filter type is "
            f"for {django.model.__name__}, not {model.__name__}."
        )
    return filters


def _exposed_fields(model: type[Model], type_: type[Any]) -> tuple[Field[Any, Any], ...]:
    definition = type_.__strawberry_definition__
    names = {getattr(f, "django_name", None) or f.python_name for f in definition.fields}
    exposed: list[Field[Any, Any]] = []
    for field in model._meta.concrete_fields:
        if field.name in names or field.attname in names or field.primary_key:
            exposed.append(field)
    return tuple(exposed)


def _exposed_many_to_many(model: type[Model], type_: type[Any]) -> tuple[Any, ...]:
    """The many-to-many relations of ``model`` the type has a field for: forward
    fields by name, reverse ones by accessor (``user_set``) or query name."""
    definition = type_.__strawberry_definition__
    names = {getattr(f, "django_name", None) or f.python_name for f in definition.fields}
    relations: list[Any] = []
    for relation in model._meta.get_fields(include_hidden=False):
        if not relation.many_to_many:
            continue
        known = {relation.name}
        accessor = getattr(relation, "get_accessor_name", None)
        if not relation.concrete and accessor is not None:
            known.add(str(accessor()))
        if known & names:
            relations.append(relation)
    return tuple(relations)


def _permission_hook(
    permission: str | Callable[[Any, Model], bool] | None,
) -> Callable[[Any, Model], bool] | None:
    if permission is None or callable(permission):
        return permission
    if isinstance(permission, str):
        codename = permission

        def has_perm(user: Any, instance: Model) -> bool:
            return bool(user is not None and user.has_perm(codename, instance))

        has_perm.__qualname__ = f"has_perm({codename!r})"
        return has_perm
    raise ImproperlyConfigured(
        "observe(permission=...) takes a permission name ('app.view_model') or a "
        f"callable (user, instance) -> bool, not {permission!r}."
    )


def observe(
    model: type[Model],
    *,
    name: str | None = None,
    lookup: str = "pk",
    permission: str | Callable[[Any, Model], bool] | None = None,
    login_required: bool = False,
    filters: type[Any] | None = None,
    list_name: str | None = None,
) -> Callable[[T], T]:
    """Expose ``model`` through the decorated strawberry(-django) type, live.

    Adds a Query field and a Subscription field, both named ``name`` (default:
    the model's name in lowerCamelCase), taking ``pk: ID!`` (matched against the
    model field ``lookup``) and ``requestId: JSON``, returning the envelope
    ``{action errors responseStatus requestId data}``.

    Who may see an instance: the type's ``get_queryset`` (strawberry-django's
    hook), then ``permission`` — a permission name checked with
    ``user.has_perm(name, instance)`` (object permission backends such as
    django-guardian answer it) or a callable ``(user, instance) -> bool``.
    ``login_required`` answers 401 to anonymous viewers. Every event is checked
    again; a viewer who may no longer see the instance gets one last envelope
    without data and the subscription completes. Put it above
    ``@strawberry_django.type``::

        @gql_observer.observe(User)
        @strawberry_django.type(User, fields=["id", "username", "email"])
        class UserType: ...

    ``filters`` (a ``@strawberry_django.filter_type`` of the model) adds the
    list fields, named ``list_name`` (default: the model's name in plural
    lowerCamelCase, ``users``): a Query ``users(filters, pagination,
    requestId)`` of the visible rows, ordered by primary key, and a
    Subscription ``users(filters, requestId)`` that reports every row entering
    (``create``), changing in (``update``) or leaving (``delete``) the viewer's
    set (docs/lists.md).
    """
    if not (isinstance(model, type) and issubclass(model, Model)):
        raise ImproperlyConfigured(f"observe() takes a Django model class, not {model!r}.")
    if lookup != "pk":
        try:
            field = model._meta.get_field(lookup)
        except FieldDoesNotExist:
            raise ImproperlyConfigured(
                f"observe({model.__name__}, lookup={lookup!r}): {model.__name__} has no field "
                f"{lookup!r}."
            ) from None
        if not getattr(field, "unique", False):
            raise ImproperlyConfigured(
                f"observe({model.__name__}, lookup={lookup!r}): the lookup field must be "
                "unique (unique=True), or one pk could name several instances."
            )

    hook = _permission_hook(permission)
    filter_type = _filter_type(model, filters)
    if list_name is not None and filter_type is None:
        raise ImproperlyConfigured(
            f"observe({model.__name__}, list_name={list_name!r}) needs filters=: the list "
            "fields exist only for a model observed with a filter type."
        )

    def decorate(type_: T) -> T:
        if not hasattr(type_, "__strawberry_definition__"):
            raise ImproperlyConfigured(
                f"observe() must decorate a strawberry type; put @observe({model.__name__}) "
                f"above @strawberry_django.type({model.__name__}) on {type_.__qualname__}."
            )
        definition = ObservedDefinition(
            model=model,
            type_=type_,
            field_name=name or _lower_camel(model.__name__),
            lookup=lookup,
            exposed=_exposed_fields(model, type_),
            many_to_many=_exposed_many_to_many(model, type_),
            permission=hook,
            login_required=login_required,
            filters=filter_type,
            list_name=(list_name or plural(model.__name__)) if filter_type else None,
        )
        type_.__gql_observer_definition__ = definition
        registry.register(definition)
        return type_

    return decorate
