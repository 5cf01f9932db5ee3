"""The frozen record ``observe`` stores on an observed strawberry type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.db.models import Field, Model

__all__ = ["ObservedDefinition"]


@dataclass(frozen=True, slots=True, eq=False)
class ObservedDefinition:
    """What gql_observer knows about one observed type.

    ``field_name`` is the GraphQL name of both the Query and the Subscription
    field; ``lookup`` is the model field the ``pk`` argument is matched against.
    ``filters`` and ``list_name``: the list fields (``users(filters: ...)``),
    when ``observe`` was given a filter type.
    ``exposed`` lists the concrete model fields the GraphQL type shows: only
    those travel in a delete event, so a field the schema hides (a password
    hash) never crosses the channel layer.
    """

    model: type[Model]
    type_: type[Any]
    field_name: str
    lookup: str
    exposed: tuple[Field[Any, Any], ...]
    #: The many-to-many relations the type exposes, forward fields
    #: (``ManyToManyField``) or reverse ones (``ManyToManyRel``): a change of
    #: one (``m2m_changed``) is a change of the instance.
    many_to_many: tuple[Any, ...] = ()
    #: ``(user, instance) -> bool``; ``None``: everything the queryset holds.
    permission: Callable[[Any, Model], bool] | None = None
    login_required: bool = False
    #: The strawberry-django filter type of the list fields; ``None``: no list.
    filters: type[Any] | None = None
    #: The GraphQL name of the list Query and Subscription fields (``users``).
    list_name: str | None = None

    @property
    def type_name(self) -> str:
        """The GraphQL name of the observed type (``UserType``)."""
        definition = self.type_.__strawberry_definition__
        return str(definition.name)

    @property
    def model_label(self) -> str:
        """``app_label.model_name`` of the observed model."""
        return str(self.model._meta.label_lower)

    @property
    def scoped(self) -> bool:
        """Whether what a viewer sees depends on who they are."""
        return (
            self.login_required
            or self.permission is not None
            or callable(getattr(self.type_, "get_queryset", None))
        )
